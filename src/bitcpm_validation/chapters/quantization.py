"""Which tensors of a checkpoint are ternary, at which scale granularity, and what they would really weigh.

BitCPM4 ships *fake-quantized* weights (facts sheet §4): each ternarised value is code × scale with
code ∈ {−1, 0, +1}, stored in BF16. The scale granularity is not published, so it is detected from the
data: for a 2-D weight W [out, in] the candidates are, coarsest first,

    tensor   one scale for the whole tensor
    row      one scale per output row (a group = the whole input dim)
    g<N>     one scale per N consecutive input-dim values of a row (N from params.quantization.group_sizes)

and the granularity reported is the coarsest one whose every group holds only {−s, 0, +s} (s > 0; an
all-zero group is allowed). The test is exact on the stored values: code × s is exactly ±s in any
float format, so a fake-quantized tensor passes with no tolerance and one perturbed value fails.
Tensors that pass no candidate are dense (embeddings, norms, or a broken ternary tensor: then the
finest candidate's violations are counted so that "one value off" is visible).

Honest size (`size_report`): stored bytes vs. information (log2 3 = 1.585 bit per ternary weight),
packed at 2 bits per weight and at base 3 (5 trits per byte = 1.6 bit), plus one scale per group (in
the stored dtype, BF16 = 2 bytes: lossless because s is itself a stored value) and the dense tensors
at their stored size. `verify_roundtrip` packs, unpacks and rebuilds the tensor bit-exactly.

    rep = analyze_dir("models/stand-in", group_sizes=[32, 64, 128, 256])
    sizes = size_report(rep)
    full = analytic_sizes(full_size_config(), group_size=32)   # the real 0.5B shape, from the config
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable, Optional, Sequence

import torch

from bitcpm_validation.files import safetensors_files

from bitcpm_validation.report.display import T
from bitcpm_validation.report.results import Check
from bitcpm_validation.chapters import registered_checks

LOG2_3 = math.log2(3)  # 1.58496...: information of one ternary digit
TRITS_PER_BYTE = 5  # 3**5 = 243 <= 256
GB = 1e9
GIB = 2**30


@dataclass
class TensorInfo:
    name: str
    shape: list[int]
    dtype: str
    numel: int
    stored_bytes: int
    role: str  # projection | embedding | lm_head | norm | other (from the name, for the table only)
    ternary: bool  # decided from the data
    granularity: Optional[str] = None  # tensor | row | g<N> (ternary tensors)
    group_size: Optional[int] = None  # values per scale
    n_groups: int = 0  # scales needed
    zero_share: Optional[float] = None
    scale_min: Optional[float] = None
    scale_median: Optional[float] = None
    scale_max: Optional[float] = None
    scale_mean: Optional[float] = None
    distinct_values: Optional[int] = None  # for dense tensors (capped count)
    violations: Optional[dict[str, Any]] = None  # near-ternary diagnosis of a dense 2-D tensor
    roundtrip: Optional[bool] = None  # packing round trip verified bit-exact (2-bit and base 3)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def role_of(name: str, ndim: int) -> str:
    n = name.lower()
    if "embed" in n:
        return "embedding"
    if n.startswith("lm_head") or ".lm_head" in n:
        return "lm_head"
    if ndim == 1 or "norm" in n:
        return "norm"
    if any(p in n for p in ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")):
        return "projection"
    return "other"


# a tensor's role and a scale granularity as the tables show them (report/glossary.yaml); "g32" is a name
_WORDS = {"embedding": T("嵌入层", "embedding"), "lm_head": T("输出头", "lm_head"), "norm": T("归一化层", "norm"),
          "projection": T("投影层", "projection"), "other": T("其他", "other"), "tensor": T("整张量", "tensor"),
          "row": T("按行", "row"), "dense": T("稠密", "dense"), "none": T("无", "none")}


def word(label: Any) -> T:
    """A role (role_of) or granularity (tensor, row, g32, dense) in both languages; any other label as it is."""
    return _WORDS.get(label) or T(str(label), str(label))


def candidates(in_dim: int, group_sizes: Iterable[int]) -> list[tuple[str, int]]:
    """(label, group size along the input dim), coarsest first; 'tensor' has group size 0 (= all)."""
    out: list[tuple[str, int]] = [("tensor", 0), ("row", in_dim)]
    for g in sorted({int(g) for g in group_sizes}, reverse=True):
        if 0 < g < in_dim and in_dim % g == 0:
            out.append((f"g{g}", g))
    return out


def _groups(w: torch.Tensor, label: str, g: int) -> torch.Tensor:
    """[n_groups, group] view of |w| for a candidate granularity."""
    if label == "tensor":
        return w.reshape(1, -1)
    return w.reshape(-1, g)


def _group_ok(a: torch.Tensor) -> torch.Tensor:
    """Per group: every |value| is 0 or the group's max |value| (so the group is in {−s, 0, +s})."""
    m = a.amax(dim=1, keepdim=True)
    return ((a == 0) | (a == m)).all(dim=1)


def detect(w: torch.Tensor, group_sizes: Sequence[int]) -> tuple[Optional[str], int, Optional[dict[str, Any]]]:
    """Coarsest ternary granularity of a 2-D tensor: (label, group size, None), or (None, 0, violations)
    where violations describe the finest candidate (groups and values off {−s, 0, +s})."""
    if w.dim() != 2:
        return None, 0, None
    a = w.detach().abs()
    if not torch.isfinite(a).all():
        return None, 0, {"reason": "non-finite values"}
    cands = candidates(w.shape[1], group_sizes)
    for label, g in cands:
        if bool(_group_ok(_groups(a, label, g)).all()):
            return label, (w.numel() if label == "tensor" else g), None
    label, g = cands[-1]
    ga = _groups(a, label, g)
    ok = _group_ok(ga)
    m = ga.amax(dim=1, keepdim=True)
    off = ~((ga == 0) | (ga == m))
    # A value that is off is either the max itself (then every other nonzero is "off") or not; count
    # against the group's most common nonzero magnitude instead, which is robust to one outlier.
    bad = int((~ok).sum())
    off_values = 0
    for idx in torch.nonzero(~ok).flatten()[:4096].tolist():
        row = ga[idx]
        nz = row[row != 0]
        mode = torch.mode(nz).values
        off_values += int((nz != mode).sum())
    return None, 0, {"granularity": label, "group_size": g, "groups": int(ga.shape[0]), "groups_off": bad,
                     "values_off": off_values if bad <= 4096 else int(off.sum()),
                     "share_groups_off": bad / ga.shape[0]}


def codes_and_scales(w: torch.Tensor, label: str, g: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Ternary codes (int8, same shape) and per-group scales (stored dtype) of a ternary tensor."""
    ga = _groups(w.detach(), label, g)
    s = ga.abs().amax(dim=1)
    codes = torch.sign(ga).to(torch.int8)
    return codes.reshape(w.shape), s


def rebuild(codes: torch.Tensor, scales: torch.Tensor, label: str, g: int, dtype: torch.dtype) -> torch.Tensor:
    c = _groups(codes, label, g).to(dtype)
    return (c * scales.to(dtype)[:, None]).reshape(codes.shape)


# -- packing ------------------------------------------------------------------------------------------------
def pack_2bit(codes: torch.Tensor) -> bytes:
    """Codes in {−1, 0, 1} → 2 bits each (code + 1), 4 per byte, little end first."""
    c = (codes.reshape(-1).to(torch.int16) + 1).to(torch.uint8)
    pad = (-c.numel()) % 4
    if pad:
        c = torch.cat([c, torch.zeros(pad, dtype=torch.uint8)])
    c = c.reshape(-1, 4)
    b = c[:, 0] | (c[:, 1] << 2) | (c[:, 2] << 4) | (c[:, 3] << 6)
    return b.numpy().tobytes()


def unpack_2bit(data: bytes, n: int) -> torch.Tensor:
    b = torch.frombuffer(bytearray(data), dtype=torch.uint8)
    c = torch.stack([(b >> s) & 3 for s in (0, 2, 4, 6)], dim=1).reshape(-1)[:n]
    return c.to(torch.int8) - 1


def pack_base3(codes: torch.Tensor) -> bytes:
    """Codes in {−1, 0, 1} → base 3, 5 trits per byte (value = Σ (code+1)·3^i < 243)."""
    c = (codes.reshape(-1).to(torch.int16) + 1)
    pad = (-c.numel()) % TRITS_PER_BYTE
    if pad:
        c = torch.cat([c, torch.zeros(pad, dtype=torch.int16)])
    c = c.reshape(-1, TRITS_PER_BYTE)
    w = torch.tensor([1, 3, 9, 27, 81], dtype=torch.int16)
    return (c * w).sum(dim=1).to(torch.uint8).numpy().tobytes()


def unpack_base3(data: bytes, n: int) -> torch.Tensor:
    v = torch.frombuffer(bytearray(data), dtype=torch.uint8).to(torch.int16)
    out = []
    for _ in range(TRITS_PER_BYTE):
        out.append(v % 3)
        v = v // 3
    return (torch.stack(out, dim=1).reshape(-1)[:n] - 1).to(torch.int8)


PACKERS = ((pack_2bit, unpack_2bit), (pack_base3, unpack_base3))


def verify_roundtrip(w: torch.Tensor, label: str, g: int, packers: Sequence = PACKERS) -> bool:
    """Pack at 2 bits and at base 3 (`packers`: (pack, unpack) pairs), unpack, rebuild with the scales: bit-exact
    equal to w?"""
    codes, s = codes_and_scales(w, label, g)
    n = codes.numel()
    for pack, unpack in packers:
        back = unpack(pack(codes), n).reshape(codes.shape)
        if not torch.equal(back, codes):
            return False
        if not torch.equal(rebuild(back, s, label, g, w.dtype), w):
            return False
    return True


# -- one tensor, one directory ---------------------------------------------------------------------------------
def analyze_tensor(name: str, w: torch.Tensor, group_sizes: Sequence[int], roundtrip: bool = True,
                   packers: Sequence = PACKERS) -> TensorInfo:
    info = TensorInfo(name=name, shape=list(w.shape), dtype=str(w.dtype).replace("torch.", ""), numel=w.numel(),
                      stored_bytes=w.numel() * w.element_size(), role=role_of(name, w.dim()), ternary=False)
    label, g, viol = detect(w, group_sizes)
    if label is not None:
        codes, s = codes_and_scales(w, label, g)
        sf = s.float()
        nz = sf[sf > 0]
        info.ternary = True
        info.granularity, info.group_size, info.n_groups = label, g, int(s.numel())
        info.zero_share = float((codes == 0).float().mean())
        if nz.numel():
            info.scale_min, info.scale_max = float(nz.min()), float(nz.max())
            info.scale_median, info.scale_mean = float(nz.median()), float(nz.mean())
        if roundtrip:
            info.roundtrip = verify_roundtrip(w, label, g, packers)
    else:
        info.violations = viol
        flat = w.detach().reshape(-1)
        info.distinct_values = int(torch.unique(flat[: 1 << 22]).numel())
        info.zero_share = float((flat == 0).float().mean())
    return info


def iter_tensors(path: str | Path):
    """(name, tensor) for every tensor of a model directory's safetensors, one file at a time."""
    from safetensors import safe_open

    files = safetensors_files(path)
    if not files:
        raise FileNotFoundError(f"{path}: no *.safetensors weights")
    for f in files:
        with safe_open(str(f), framework="pt") as fh:
            for k in sorted(fh.keys()):
                yield k, fh.get_tensor(k)


def weight_files_bytes(path: str | Path) -> int:
    return sum(p.stat().st_size for p in Path(path).glob("*.safetensors"))


@dataclass
class Report:
    path: str
    tensors: list[TensorInfo] = field(default_factory=list)
    file_bytes: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "file_bytes": self.file_bytes, "tensors": [t.to_dict() for t in self.tensors]}


def analyze_dir(path: str | Path, group_sizes: Sequence[int] = (32, 64, 128, 256), roundtrip: bool = True) -> Report:
    rep = Report(path=str(path), file_bytes=weight_files_bytes(path))
    for name, w in iter_tensors(path):
        rep.tensors.append(analyze_tensor(name, w, group_sizes, roundtrip))
    return rep


# -- sizes -------------------------------------------------------------------------------------------------------
def _scale_bytes(t: TensorInfo) -> int:
    return t.n_groups * (2 if t.dtype in ("bfloat16", "float16") else 4)


def size_report(rep: Report | Iterable[TensorInfo]) -> dict[str, Any]:
    """Sizes in bytes and bits per weight: stored, information, packed 2-bit, packed base 3."""
    ts = list(rep.tensors if isinstance(rep, Report) else rep)
    tern = [t for t in ts if t.ternary]
    dense = [t for t in ts if not t.ternary]
    n_t = sum(t.numel for t in tern)
    n_all = sum(t.numel for t in ts)
    stored = sum(t.stored_bytes for t in ts)
    dense_b = sum(t.stored_bytes for t in dense)
    scales_b = sum(_scale_bytes(t) for t in tern)
    p2 = sum(math.ceil(t.numel / 4) for t in tern)
    p3 = sum(math.ceil(t.numel / TRITS_PER_BYTE) for t in tern)
    info_b = n_t * LOG2_3 / 8
    out = {
        "params": n_all, "ternary_params": n_t, "dense_params": n_all - n_t,
        "ternary_share": n_t / n_all if n_all else None,
        "stored_bytes": stored, "dense_bytes": dense_b, "scale_bytes": scales_b, "n_scales": sum(t.n_groups for t in tern),
        "ternary_stored_bytes": sum(t.stored_bytes for t in tern),
        "ternary_info_bytes": info_b, "ternary_2bit_bytes": p2, "ternary_base3_bytes": p3,
        "total_info_bytes": info_b + scales_b + dense_b,
        "total_2bit_bytes": p2 + scales_b + dense_b,
        "total_base3_bytes": p3 + scales_b + dense_b,
        "bits_per_weight_stored": 8 * stored / n_all if n_all else None,
        "bits_per_ternary_weight_stored": 8 * sum(t.stored_bytes for t in tern) / n_t if n_t else None,
        "bits_per_ternary_weight_info": LOG2_3 if n_t else None,
        "bits_per_ternary_weight_2bit": 8 * (p2 + scales_b) / n_t if n_t else None,
        "bits_per_ternary_weight_base3": 8 * (p3 + scales_b) / n_t if n_t else None,
    }
    for k in ("info", "2bit", "base3"):
        tot = out[f"total_{k}_bytes"]
        out[f"bits_per_weight_{k}"] = 8 * tot / n_all if n_all else None
        out[f"compression_{k}"] = 1 - tot / stored if stored else None
    # The "~90%" figure arises only from the ternary weights' information vs 16 bit, ignoring the rest.
    out["compression_ternary_only_info_vs_bf16"] = 1 - LOG2_3 / 16
    return out


def analytic_tensors(cfg: dict, group_size: Optional[int] = 32, dtype: str = "bfloat16") -> list[TensorInfo]:
    """TensorInfo rows for a MiniCPM config, assuming the seven projections per layer are ternary at
    `group_size` (None = per row) and embeddings / norms dense (facts sheet §4: an assumption)."""
    h, i, L = cfg["hidden_size"], cfg["intermediate_size"], cfg["num_hidden_layers"]
    nh, nkv = cfg["num_attention_heads"], cfg.get("num_key_value_heads") or cfg["num_attention_heads"]
    hd = cfg.get("head_dim") or h // nh
    el = 2 if dtype in ("bfloat16", "float16") else 4
    rows: list[TensorInfo] = []

    def add(name: str, shape: list[int], ternary: bool) -> None:
        n = math.prod(shape)
        t = TensorInfo(name=name, shape=shape, dtype=dtype, numel=n, stored_bytes=n * el,
                       role=role_of(name, len(shape)), ternary=ternary)
        if ternary:
            g = shape[1] if group_size is None else group_size
            t.granularity, t.group_size, t.n_groups = ("row" if group_size is None else f"g{g}"), g, n // g
        rows.append(t)

    add("model.embed_tokens.weight", [cfg["vocab_size"], h], False)
    if not cfg.get("tie_word_embeddings", True):
        add("lm_head.weight", [cfg["vocab_size"], h], False)
    for l in range(L):
        p = f"model.layers.{l}."
        add(p + "self_attn.q_proj.weight", [nh * hd, h], True)
        add(p + "self_attn.k_proj.weight", [nkv * hd, h], True)
        add(p + "self_attn.v_proj.weight", [nkv * hd, h], True)
        add(p + "self_attn.o_proj.weight", [h, nh * hd], True)
        add(p + "mlp.gate_proj.weight", [i, h], True)
        add(p + "mlp.up_proj.weight", [i, h], True)
        add(p + "mlp.down_proj.weight", [h, i], True)
        add(p + "input_layernorm.weight", [h], False)
        add(p + "post_attention_layernorm.weight", [h], False)
    add("model.norm.weight", [h], False)
    return rows


def summary_rows(rep: Report | Iterable[TensorInfo]) -> list[dict[str, Any]]:
    """Tensors grouped by (role, kind of tensor, ternary, granularity): counts, params, zero share, scales."""
    ts = list(rep.tensors if isinstance(rep, Report) else rep)
    groups: dict[tuple, list[TensorInfo]] = {}
    for t in ts:
        kind = t.name.split(".")[-2] if t.name.count(".") >= 1 else t.name
        if ".layers." in t.name:
            kind = t.name.split(".layers.", 1)[1].split(".", 1)[1].rsplit(".", 1)[0]
        else:
            kind = t.name.rsplit(".", 1)[0]
        groups.setdefault((kind, t.role, t.ternary, t.granularity), []).append(t)
    rows = []
    for (kind, role, tern, gran), lst in groups.items():
        n = sum(t.numel for t in lst)
        zs = [t.zero_share for t in lst if t.zero_share is not None]
        sc = [t for t in lst if t.scale_mean is not None]
        rows.append({
            "tensor": kind, "role": role, "count": len(lst), "params": n, "ternary": tern,
            "granularity": gran or "dense", "group_size": lst[0].group_size if tern else None,
            "zero_share": (sum(t.zero_share * t.numel for t in lst if t.zero_share is not None) / n) if zs else None,
            "scale_min": min((t.scale_min for t in sc), default=None),
            "scale_median": (sorted(t.scale_median for t in sc)[len(sc) // 2] if sc else None),
            "scale_max": max((t.scale_max for t in sc), default=None),
            "roundtrip": (all(t.roundtrip for t in lst) if tern and all(t.roundtrip is not None for t in lst) else None),
            "stored_bytes": sum(t.stored_bytes for t in lst),
        })
    return rows


# -- checks ------------------------------------------------------------------------------------------------
CHAPTER = "10_quantization"
CHECKS = registered_checks("10_quantization")  # this chapter's entries of chapters/checks.yaml


def judge_projections(tensors: Sequence[TensorInfo]) -> Check:
    proj = [t for t in tensors if t.role == "projection"]
    bad = [t for t in proj if not t.ternary]
    if not proj:
        return CHECKS["projections_ternary"].row("fail", "no projection weights found (q/k/v/o/gate/up/down)", "未找到投影权重（q/k/v/o/gate/up/down）")
    if bad:
        return CHECKS["projections_ternary"].row("fail", f"{len(proj) - len(bad)}/{len(proj)} projections ternary; first not ternary: "
                                                         f"{bad[0].name} {bad[0].violations}",
                                                 f"{len(proj) - len(bad)}/{len(proj)} 个投影为三值；首个非三值：{bad[0].name}")
    return CHECKS["projections_ternary"].row("pass", f"{len(proj)}/{len(proj)} projections ternary", f"{len(proj)}/{len(proj)} 个投影为三值")


def judge_granularity(tensors: Sequence[TensorInfo]) -> Check:
    grans = sorted({t.granularity for t in tensors if t.ternary and t.granularity})
    if not grans:
        return CHECKS["granularity"].row("fail", "no ternary tensor: no granularity detected", "没有三值张量：未检测到粒度")
    if len(grans) > 1:
        return CHECKS["granularity"].row("warn", f"mixed granularities: {', '.join(grans)}", f"粒度不一致：{'、'.join(word(g).zh for g in grans)}")
    return CHECKS["granularity"].row("pass", f"detected: {grans[0]}", f"检测到：{word(grans[0]).zh}")


def judge_roundtrip(tensors: Sequence[TensorInfo]) -> Check:
    rt = [t.roundtrip for t in tensors if t.ternary]
    if not rt or any(r is None for r in rt):
        return CHECKS["roundtrip"].not_run("no ternary tensor to pack", "没有可打包的三值张量")
    if not all(rt):
        bad = [t.name for t in tensors if t.ternary and not t.roundtrip]
        return CHECKS["roundtrip"].row("fail", f"{len(bad)}/{len(rt)} tensors do not rebuild bit-exactly, e.g. {bad[0]}",
                                       f"{len(bad)}/{len(rt)} 个张量无法逐位还原，例如 {bad[0]}")
    return CHECKS["roundtrip"].row("pass", f"{len(rt)}/{len(rt)} ternary tensors rebuild bit-exactly", f"{len(rt)}/{len(rt)} 个三值张量逐位还原")


def judge_claims(sizes: dict[str, Any], item: str) -> list[Check]:
    """The original document's "~1.58 bit" and "~90% compression" claims on one size report.
    item: what the sizes describe ("checkpoint" = this model's files, "full-0.5b" = the full shape, analytic)."""
    label_en = {"checkpoint": "this checkpoint", "full-0.5b": "full 0.5B shape, analytic"}[item]
    label_zh = {"checkpoint": "本检查点", "full-0.5b": "完整 0.5B 形状，解析计算"}[item]
    rows = []
    bpw3 = sizes.get("bits_per_ternary_weight_base3")
    if not sizes.get("ternary_params"):
        rows.append(CHECKS["claim_bits"].row("fail", f"{label_en}: no ternary weights", f"{label_zh}：没有三值权重", item=item))
    else:
        stored = sizes["bits_per_ternary_weight_stored"]
        en = (f"{label_en}: 1.585 bit is the information of one ternary weight; stored at {stored:.1f} bit; packable at "
              f"{sizes['bits_per_ternary_weight_2bit']:.2f} (2-bit) / {bpw3:.2f} (base 3) bit incl. scales; whole model incl. "
              f"dense tensors {sizes['bits_per_weight_base3']:.2f} bit per weight")
        zh = (f"{label_zh}：1.585 bit 是单个三值权重的信息量；实际以 {stored:.1f} bit 存储；打包后（含缩放因子）2-bit 为 "
              f"{sizes['bits_per_ternary_weight_2bit']:.2f} bit、三进制为 {bpw3:.2f} bit；含稠密张量的整模型为 "
              f"{sizes['bits_per_weight_base3']:.2f} bit/权重")
        rows.append(CHECKS["claim_bits"].row("pass" if stored <= 2 else "warn", en, zh, item=item))
    c3 = sizes["compression_base3"]
    en = (f"{label_en}: packed (base 3 + scales + dense) {100 * c3:.1f}% smaller than stored (2-bit: "
          f"{100 * sizes['compression_2bit']:.1f}%); 90% = 1 - 1.585/16 holds only for the ternary weights' information, "
          f"ignoring scales and the dense tensors ({100 * (1 - sizes['ternary_share']):.1f}% of the parameters)")
    zh = (f"{label_zh}：打包后（三进制 + 缩放因子 + 稠密张量）比存储小 {100 * c3:.1f}%（2-bit：{100 * sizes['compression_2bit']:.1f}%）；"
          f"90% = 1 − 1.585/16 只对三值权重的信息量成立，忽略了缩放因子和稠密张量（占参数 {100 * (1 - sizes['ternary_share']):.1f}%）")
    rows.append(CHECKS["claim_compression"].row("pass" if c3 is not None and c3 >= 0.85 else "fail", en, zh, item=item))
    return rows


def judge_size_claim(sizes_full: dict[str, Any]) -> Check:
    """The "~0.3 GB" claim against the full 0.5B shape's packed sizes (analytic)."""
    b2, b3 = sizes_full["total_2bit_bytes"] / GB, sizes_full["total_base3_bytes"] / GB
    st = sizes_full["stored_bytes"] / GB
    en = (f"full 0.5B shape (analytic): packed {b2:.3f} GB at 2 bit / {b3:.3f} GB at base 3 incl. scales and the BF16 "
          f"embeddings ({sizes_full['dense_bytes'] / GB:.3f} GB); as released it is {st:.3f} GB (fake-quantized BF16), "
          f"and no file of that size ships")
    zh = (f"完整 0.5B 形状（解析计算）：打包后 2-bit 为 {b2:.3f} GB、三进制为 {b3:.3f} GB（含缩放因子和 BF16 词嵌入 "
          f"{sizes_full['dense_bytes'] / GB:.3f} GB）；发布的文件是 {st:.3f} GB（伪量化的 BF16），并不存在该大小的文件")
    return CHECKS["claim_size_03gb"].row("pass" if 0.2 <= b2 <= 0.35 else "fail", en, zh)


# -- the size picture ---------------------------------------------------------------------------------------
SIZE_PARTS = (("ternary", T("三值权重", "ternary weights")), ("scales", T("缩放因子", "scales")),
              ("dense", T("稠密张量（嵌入层、归一化层）", "dense tensors (embedding, norms)")))


def size_bars(s: dict[str, Any], per: float = GB) -> list[tuple[T, dict[str, float]]]:
    """(form, {ternary, scales, dense} in units of `per` bytes) of a size_report: as stored (the scales are inside
    the stored values), the information, packed at 2 bit and at base 3."""
    dense, scales = s["dense_bytes"] / per, s["scale_bytes"] / per
    return [(T("存储", "stored"), {"ternary": s["ternary_stored_bytes"] / per, "dense": dense}),
            (T("信息量", "information"), {"ternary": s["ternary_info_bytes"] / per, "scales": scales, "dense": dense}),
            (T("2-bit 打包", "2-bit packed"), {"ternary": s["ternary_2bit_bytes"] / per, "scales": scales, "dense": dense}),
            (T("三进制打包", "base-3 packed"), {"ternary": s["ternary_base3_bytes"] / per, "scales": scales, "dense": dense})]


def size_unit(s: dict[str, Any]) -> tuple[str, float]:
    """("GB", 1e9), or ("MB", 1e6) for a checkpoint under 0.1 GB (the stand-in), so that its bars read as numbers."""
    return ("GB", GB) if s["stored_bytes"] >= 0.1 * GB else ("MB", 1e6)


def plot_sizes(panels: Sequence[tuple[Any, Optional[dict[str, Any]]]], lang: str = "en",
               path: Optional[str | Path] = None):
    """Stored vs packed size as stacked bars, one panel per (title, size_report) given, each in GB or MB (size_unit)
    (report.plots)."""
    from bitcpm_validation.report import plots

    return plots.stacked_bars([(title, size_bars(s, size_unit(s)[1]), size_unit(s)[0]) for title, s in panels if s],
                              SIZE_PARTS, "GB", lang, path)
