"""The project's fp32 MiniCPM forward pass in pure PyTorch: the golden baseline.

Arithmetic (facts sheet §2): embeddings * scale_emb; pre-norm layers with residual branches scaled
by scale_depth / sqrt(L); RMSNorm in fp32; GQA attention, scale 1/sqrt(head_dim), softmax fp32;
neox rotate-half RoPE in fp32 with LongRoPE factors and mscale; SiLU-gated MLP; no biases;
logits = lm_head(norm(h) / (hidden_size / dim_model_base)); lm_head tied to the embeddings unless
the directory has an lm_head.weight tensor. Everything runs in fp32 whatever the stored dtype.

    ref = ReferenceModel.from_pretrained("models/stand-in")
    lp = ref.logprobs(ids)                       # fp32 [T, V] log-softmax, row t predicts t+1
    new, steps = ref.greedy(ids, max_new_tokens=32, top_k=5)
    new, steps, rows = ref.greedy_with_rows(ids, 32, 5)  # and logprobs(ids + new)[:-1] from the same prefill
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from bitcpm_validation.files import safetensors_files
from .config import longrope, read_config


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x):
        dtype = x.dtype
        xf = x.float()
        xf = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * xf.to(dtype)


def rope_inv_freq(cfg: dict, max_model_len: Optional[int] = None) -> tuple[torch.Tensor, float]:
    hd = cfg["head_dim"]
    inv = 1.0 / (float(cfg["rope_theta"]) ** (torch.arange(0, hd, 2, dtype=torch.float64) / hd))
    lr = longrope(cfg, max_model_len)
    mscale = 1.0
    if lr:
        inv = inv / torch.tensor(lr["factors"], dtype=torch.float64)
        mscale = lr["mscale"]
    return inv.float(), mscale


def rotate_half(x):
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)


class Attention(nn.Module):
    def __init__(self, cfg: dict):
        super().__init__()
        h, self.nh, self.nkv, self.hd = cfg["hidden_size"], cfg["num_attention_heads"], cfg["num_key_value_heads"], cfg["head_dim"]
        self.q_proj = nn.Linear(h, self.nh * self.hd, bias=False)
        self.k_proj = nn.Linear(h, self.nkv * self.hd, bias=False)
        self.v_proj = nn.Linear(h, self.nkv * self.hd, bias=False)
        self.o_proj = nn.Linear(self.nh * self.hd, h, bias=False)

    def forward(self, x, cos, sin, cache: Optional[list] = None, mask=None):
        b, t, _ = x.shape
        q = self.q_proj(x).view(b, t, self.nh, self.hd).transpose(1, 2)
        k = self.k_proj(x).view(b, t, self.nkv, self.hd).transpose(1, 2)
        v = self.v_proj(x).view(b, t, self.nkv, self.hd).transpose(1, 2)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        if cache is not None:
            if cache[0] is not None:
                k = torch.cat([cache[0], k], dim=2)
                v = torch.cat([cache[1], v], dim=2)
            cache[0], cache[1] = k, v
        rep = self.nh // self.nkv
        if rep > 1:
            k = k.repeat_interleave(rep, dim=1)
            v = v.repeat_interleave(rep, dim=1)
        s = (q @ k.transpose(-1, -2)) / math.sqrt(self.hd)
        if mask is not None:
            s = s.masked_fill(mask, float("-inf"))
        p = torch.softmax(s.float(), dim=-1).to(q.dtype)
        return self.o_proj((p @ v).transpose(1, 2).reshape(b, t, self.nh * self.hd))


class MLP(nn.Module):
    def __init__(self, cfg: dict):
        super().__init__()
        h, i = cfg["hidden_size"], cfg["intermediate_size"]
        self.gate_proj = nn.Linear(h, i, bias=False)
        self.up_proj = nn.Linear(h, i, bias=False)
        self.down_proj = nn.Linear(i, h, bias=False)

    def forward(self, x):
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class Layer(nn.Module):
    def __init__(self, cfg: dict):
        super().__init__()
        self.self_attn = Attention(cfg)
        self.mlp = MLP(cfg)
        self.input_layernorm = RMSNorm(cfg["hidden_size"], cfg["rms_norm_eps"])
        self.post_attention_layernorm = RMSNorm(cfg["hidden_size"], cfg["rms_norm_eps"])
        self.rs = cfg["scale_depth"] / math.sqrt(cfg["num_hidden_layers"])

    def forward(self, h, cos, sin, cache=None, mask=None):
        h = h + self.self_attn(self.input_layernorm(h), cos, sin, cache, mask) * self.rs
        h = h + self.mlp(self.post_attention_layernorm(h)) * self.rs
        return h


class MiniCPM(nn.Module):
    """MiniCPM with HF parameter names (model.embed_tokens.weight, model.layers.N...., lm_head)."""

    def __init__(self, cfg: dict, max_model_len: Optional[int] = None):
        super().__init__()
        self.cfg = cfg
        self.model = nn.Module()
        self.model.embed_tokens = nn.Embedding(cfg["vocab_size"], cfg["hidden_size"])
        self.model.layers = nn.ModuleList([Layer(cfg) for _ in range(cfg["num_hidden_layers"])])
        self.model.norm = RMSNorm(cfg["hidden_size"], cfg["rms_norm_eps"])
        self.tied = bool(cfg["tie_word_embeddings"])
        self.lm_head = None if self.tied else nn.Linear(cfg["hidden_size"], cfg["vocab_size"], bias=False)
        inv, self.mscale = rope_inv_freq(cfg, max_model_len)
        self.register_buffer("inv_freq", inv, persistent=False)

    def untie(self):
        """Give the model its own lm_head (a directory with an lm_head.weight tensor)."""
        if self.lm_head is None:
            self.lm_head = nn.Linear(self.cfg["hidden_size"], self.cfg["vocab_size"], bias=False)
            self.lm_head.weight.data.copy_(self.model.embed_tokens.weight.data)
            self.tied = False

    def head_weight(self):
        return self.model.embed_tokens.weight if self.lm_head is None else self.lm_head.weight

    def cos_sin(self, positions: torch.Tensor):
        freqs = torch.outer(positions.float(), self.inv_freq)
        emb = torch.cat((freqs, freqs), dim=-1)
        return emb.cos() * self.mscale, emb.sin() * self.mscale

    def hidden(self, ids: torch.Tensor, start: int = 0, caches: Optional[list] = None):
        """ids [B, T] -> final normed hidden states [B, T, H] (cache: list of [k, v] per layer)."""
        cfg = self.cfg
        t = ids.shape[1]
        h = self.model.embed_tokens(ids) * cfg["scale_emb"]
        cos, sin = self.cos_sin(torch.arange(start, start + t))
        mask = None
        if t > 1:
            total = start + t
            mask = torch.ones(t, total, dtype=torch.bool).triu(start + 1)
        for i, layer in enumerate(self.model.layers):
            h = layer(h, cos, sin, None if caches is None else caches[i], mask)
        return self.model.norm(h)

    def head(self, h: torch.Tensor) -> torch.Tensor:
        """Final normed hidden states [..., H] -> logits [..., V]."""
        return F.linear(h / (self.cfg["hidden_size"] / self.cfg["dim_model_base"]), self.head_weight())

    def forward(self, ids: torch.Tensor, start: int = 0, caches: Optional[list] = None, last_only: bool = False):
        h = self.hidden(ids, start, caches)
        if last_only:  # a prefill that only needs the next token: the head (hidden x vocab) on one position
            h = h[:, -1:]
        return self.head(h)


def load_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """All tensors of a directory's safetensors (single, sharded with index, or several files)."""
    from safetensors.torch import load_file

    files = safetensors_files(path)
    if not files:
        raise FileNotFoundError(f"{path}: no *.safetensors weights")
    sd: dict[str, torch.Tensor] = {}
    for f in files:
        sd.update(load_file(str(f)))
    return sd


@dataclass
class GreedyStep:
    token_id: int
    logprob: float
    top_ids: list[int]
    top_logprobs: list[float]


class ReferenceModel:
    """fp32 MiniCPM on the CPU, loaded from an HF-layout directory."""

    def __init__(self, module: MiniCPM, path: Optional[Path] = None):
        self.module = module.eval()
        self.cfg = module.cfg
        self.path = path

    @classmethod
    def from_pretrained(cls, path: str | Path, max_model_len: Optional[int] = None, threads: Optional[int] = None):
        """Load a directory. `max_model_len` picks LongRoPE long/short factors the way vLLM does
        (long iff > original_max_position_embeddings); None follows the MiniCPM HF code (long iff
        max_position_embeddings > original)."""
        if threads:
            torch.set_num_threads(threads)
        d = Path(path)
        cfg = read_config(d)
        sd = load_state_dict(d)
        with torch.device("meta"):
            m = MiniCPM(cfg, max_model_len)
        if "lm_head.weight" in sd and m.lm_head is None:
            with torch.device("meta"):
                m.lm_head = nn.Linear(cfg["hidden_size"], cfg["vocab_size"], bias=False)
            m.tied = False
        own = {k for k, _ in m.named_parameters()}
        missing = own - set(sd)
        if missing:
            raise KeyError(f"{d}: weights missing {sorted(missing)[:5]}")
        extra = set(sd) - own - {"lm_head.weight"}
        if extra:
            raise KeyError(f"{d}: unexpected tensors {sorted(extra)[:5]}")
        m.load_state_dict({k: sd[k].float() for k in own}, strict=False, assign=True)
        inv, m.mscale = rope_inv_freq(cfg, max_model_len)
        m.inv_freq = inv
        return cls(m, d)

    @classmethod
    def random(cls, cfg: dict, seed: int = 0, max_model_len: Optional[int] = None, std: Optional[float] = None):
        """Random fp32 weights at a config (e.g. the full 0.5B shape, for timing)."""
        torch.manual_seed(seed)
        m = MiniCPM(cfg, max_model_len)
        std = std if std is not None else cfg.get("initializer_range", 0.02)
        with torch.no_grad():
            for name, p in m.named_parameters():
                if p.dim() == 2:
                    p.normal_(0, std)
        return cls(m)

    @torch.no_grad()
    def logits(self, token_ids) -> torch.Tensor:
        ids = torch.as_tensor(list(token_ids), dtype=torch.long)[None]
        return self.module(ids)[0].float()

    @torch.no_grad()
    def logprobs(self, token_ids) -> torch.Tensor:
        """fp32 [T, V] log-softmax; row t is the distribution of the token after position t."""
        return torch.log_softmax(self.logits(token_ids), dim=-1)

    @torch.no_grad()
    def greedy(self, token_ids, max_new_tokens: int = 32, top_k: int = 5, stop_ids=None) -> tuple[list[int], list[GreedyStep]]:
        """Greedy decode with a KV cache. Returns (new ids, per-step top-k ids and logprobs)."""
        m = self.module
        ids = torch.as_tensor(list(token_ids), dtype=torch.long)[None]
        caches = [[None, None] for _ in m.model.layers]
        logits = m(ids, 0, caches, last_only=True)[0, -1] if max_new_tokens > 0 else None
        return self._decode(logits, caches, ids.shape[1], max_new_tokens, top_k, stop_ids)

    @torch.no_grad()
    def greedy_with_rows(self, token_ids, max_new_tokens: int = 32, top_k: int = 5, stop_ids=None,
                         chunk: int = 256) -> tuple[list[int], list[GreedyStep], torch.Tensor]:
        """`greedy` plus the teacher-forced rows of its own sequence, from one prefill: (new ids, steps, rows) with
        rows the fp32 [len(seq) - 1, V] log-softmax of seq = token_ids + new, row t about seq[t + 1] (what
        `logprobs(seq)[:-1]` gives, without a second forward over the whole sequence). Rows of the prompt's
        positions but the last come from the prefill's hidden states (the head `chunk` positions at a time, so
        the only whole-sequence tensor is the result); the others are the decode steps' own log-softmax, so
        new ids and steps are exactly `greedy`'s. Not bit-equal to `logprobs(seq)`: the same arithmetic on
        different matmul shapes (a prefill plus one-token steps instead of one forward), float32 rounding apart."""
        m = self.module
        ids = torch.as_tensor(list(token_ids), dtype=torch.long)[None]
        n_prompt = ids.shape[1]
        caches = [[None, None] for _ in m.model.layers]
        h = m.hidden(ids, 0, caches)
        rows = torch.empty(n_prompt - 1 + max_new_tokens, self.cfg["vocab_size"], dtype=torch.float32)
        for a in range(0, n_prompt - 1, chunk):
            b = min(a + chunk, n_prompt - 1)
            torch.log_softmax(m.head(h[0, a:b]).float(), dim=-1, out=rows[a:b])
        logits = m.head(h[:, -1:])[0, -1] if max_new_tokens > 0 else None  # greedy's own last_only head
        del h

        def keep(j: int, lp: torch.Tensor):  # step j's distribution is the row of position n_prompt - 1 + j
            rows[n_prompt - 1 + j].copy_(lp)

        new, steps = self._decode(logits, caches, n_prompt, max_new_tokens, top_k, stop_ids, keep)
        return new, steps, rows[: n_prompt - 1 + len(new)]

    def _decode(self, logits, caches, pos: int, max_new_tokens: int, top_k: int, stop_ids,
                on_step=None) -> tuple[list[int], list[GreedyStep]]:
        """The greedy loop after a prefill whose last-position logits are `logits`; `on_step(j, logprobs)`
        sees each step's fp32 log-softmax. No forward after the last token (its logits would go unused)."""
        m = self.module
        stop = set(self._eos_ids() if stop_ids is None else stop_ids)
        new: list[int] = []
        steps: list[GreedyStep] = []
        for j in range(max_new_tokens):
            lp = torch.log_softmax(logits.float(), dim=-1)
            if on_step is not None:
                on_step(j, lp)
            v, i = lp.topk(top_k)
            tok = int(i[0])
            steps.append(GreedyStep(tok, float(v[0]), i.tolist(), v.tolist()))
            new.append(tok)
            if tok in stop or j == max_new_tokens - 1:
                break
            logits = m(torch.tensor([[tok]]), pos, caches)[0, -1]
            pos += 1
        return new, steps

    def _eos_ids(self) -> list[int]:
        e = self.cfg.get("eos_token_id", 2)
        return list(e) if isinstance(e, list) else [e]


def benchmark(cfg: dict, prompt_len: int = 128, new_tokens: int = 16, threads: int = 2, seed: int = 0) -> dict:
    """Time the reference at a config with random weights: one forward of `prompt_len` tokens
    (tokens/s) and greedy decode of `new_tokens` with the KV cache (tokens/s after the prefill)."""
    import time

    torch.set_num_threads(threads)
    t0 = time.perf_counter()
    ref = ReferenceModel.random(cfg, seed=seed, std=0.02)
    build = time.perf_counter() - t0
    ids = [1] + [(i * 7919) % (cfg["vocab_size"] - 10) + 3 for i in range(prompt_len - 1)]
    t0 = time.perf_counter()
    ref.logits(ids)
    fwd = time.perf_counter() - t0
    m = ref.module
    with torch.no_grad():
        caches = [[None, None] for _ in m.model.layers]
        t0 = time.perf_counter()
        logits = m(torch.tensor([ids]), 0, caches)[0, -1]
        prefill = time.perf_counter() - t0
        t0 = time.perf_counter()
        pos = len(ids)
        for _ in range(new_tokens):
            tok = int(logits.argmax())
            logits = m(torch.tensor([[tok]]), pos, caches)[0, -1]
            pos += 1
        dec = time.perf_counter() - t0
    return {
        "threads": threads, "prompt_len": prompt_len, "new_tokens": new_tokens, "build_s": build,
        "forward_s": fwd, "forward_tok_s": prompt_len / fwd, "prefill_s": prefill,
        "decode_s": dec, "decode_tok_s": new_tokens / dec,
    }
