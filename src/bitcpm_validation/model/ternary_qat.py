"""Ternary quantization-aware training as BitCPM4 describes it (facts sheet §4).

Absmean scale per group of `group` consecutive weights along the input dimension:
s = max(mean|W_g|, eps), W_q = clamp(round(W/s), -1, 1) * s, with a straight-through estimator.
Scales are rounded to BF16 so that code * scale is exactly representable in BF16: the exported
fake-quantized BF16 weights are exactly ternary per group. The seven projections per layer are
ternary; embeddings (tied head) and norms stay dense.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .config import PROJECTIONS

GROUP = 32
EPS = 1e-5


def ternary_quantize(w: torch.Tensor, group: int = GROUP, eps: float = EPS):
    """(W_q, codes int8, scales fp32 [out, in/group]) for a 2-D weight [out, in]."""
    o, i = w.shape
    if i % group:
        raise ValueError(f"input dim {i} is not a multiple of the group size {group}")
    g = w.float().reshape(o, i // group, group)
    s = g.abs().mean(-1, keepdim=True).clamp_min(eps)
    s = s.to(torch.bfloat16).float()  # BF16-representable scales: code * s is exact in BF16
    q = torch.clamp(torch.round(g / s), -1, 1)
    return (q * s).reshape(o, i).to(w.dtype), q.reshape(o, i).to(torch.int8), s.squeeze(-1)


class TernaryLinear(nn.Linear):
    """nn.Linear whose forward uses the ternary fake-quantized weight (STE for the gradient)."""

    group = GROUP

    def forward(self, x):
        w = self.weight
        wq = w + (ternary_quantize(w, self.group)[0] - w).detach()
        return F.linear(x, wq, self.bias)


def ternarize(model: nn.Module, group: int = GROUP) -> nn.Module:
    """Swap every projection (q,k,v,o,gate,up,down) of the model for a TernaryLinear, in place."""
    for name, mod in list(model.named_modules()):
        for child_name, child in list(mod.named_children()):
            if child_name in PROJECTIONS and type(child) is nn.Linear:
                t = TernaryLinear(child.in_features, child.out_features, bias=child.bias is not None)
                t.group = group
                t.weight = child.weight
                if child.bias is not None:
                    t.bias = child.bias
                setattr(mod, child_name, t)
    return model


def export_state_dict(model: nn.Module, group: int = GROUP) -> dict[str, torch.Tensor]:
    """HF-named BF16 tensors: projections fake-quantized (exactly code*scale), the rest rounded."""
    out = {}
    for k, v in model.state_dict().items():
        leaf = k.split(".")[-2] if k.endswith(".weight") else ""
        if leaf in PROJECTIONS and v.dim() == 2:
            wq, _, _ = ternary_quantize(v.float(), group)
            out[k] = wq.to(torch.bfloat16)
        else:
            out[k] = v.detach().to(torch.bfloat16)
    return out


def check_ternary(w: torch.Tensor, group: int = GROUP) -> dict:
    """Is every group of `group` input-dim weights in {-a, 0, +a} for one a per group?"""
    o, i = w.shape
    g = w.float().reshape(o, i // group, group)
    a = g.abs().amax(-1, keepdim=True)
    ok_vals = (g == 0) | (g.abs() == a)
    bad = int((~ok_vals).sum())
    zero_share = float((g == 0).float().mean())
    return {"ok": bad == 0, "bad_values": bad, "groups": o * (i // group), "zero_share": zero_share}
