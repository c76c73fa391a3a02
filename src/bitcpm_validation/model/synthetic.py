"""A synthetic checkpoint at a model directory's real shape, written once into a cache and reused.

The real 0.5B config (models/bitcpm4-0.5b, or any MiniCPM directory: other shapes and RoPE settings work the
same way) with seeded weights laid out as BitCPM4 stores them: every projection fake-quantized ternary
(absmean scale per group of 32 along the input dimension, values {-1, 0, +1} x scale), stored in BF16; the
embedding dense; RMSNorm weights 1; tied embeddings (no lm_head.weight) unless the config unties them. The
directory's own tokenizer and remote code are copied; config.json declares `"bitcpm_validation_weights":
"synthetic"` (model.weights_kind), so nothing mistakes it for the real model.

    d = full_shape_dir(Path("models/bitcpm4-0.5b"))   # ~/.cache/bitcpm-validation/full-shape-<hash>/

The name's hash covers the source config, the seed and FORMAT: a changed config writes a new directory.
Writing the 0.5B directory takes ~10-30 s on two cores and ~0.9 GB (BF16); later calls return at once.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Optional

import torch

from .config import read_config
from .reference import MiniCPM
from .weights_kind import WEIGHTS_KEY

FORMAT = 1  # bump when the weights written for the same config change
GROUP = 32  # BitCPM's scale group (quantization chapter: g32)
COMPLETE = ".complete"  # written last: a directory without it is an interrupted write
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".index.json")


def cache_root() -> Path:
    """$BITCPM_VALIDATION_CACHE, else $XDG_CACHE_HOME/bitcpm-validation, else ~/.cache/bitcpm-validation."""
    env = os.environ.get("BITCPM_VALIDATION_CACHE")
    if env:
        return Path(env).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache").expanduser() / "bitcpm-validation"


def key_of(source: Path, seed: int = 0) -> str:
    cfg = (Path(source) / "config.json").read_bytes()
    return hashlib.sha256(cfg + f"\nseed={seed}\nformat={FORMAT}".encode()).hexdigest()[:12]


def ternary(w: torch.Tensor, group: int = GROUP) -> torch.Tensor:
    """Fake-quantized ternary (absmean per group of `group` along the last dimension), as BitCPM4 stores it."""
    rows, cols = w.shape
    g = group if cols % group == 0 else cols
    x = w.reshape(rows, cols // g, g)
    s = x.abs().mean(-1, keepdim=True).clamp_min(1e-8)
    return (torch.clamp(torch.round(x / s), -1, 1) * s).reshape(rows, cols)


def state_dict(cfg: dict, seed: int = 0) -> dict[str, torch.Tensor]:
    """HF-named BF16 tensors for a MiniCPM config (names and shapes from the project's reference module)."""
    with torch.device("meta"):
        m = MiniCPM(cfg)
    gen = torch.Generator().manual_seed(seed)
    std = float(cfg.get("initializer_range", 0.02))
    out: dict[str, torch.Tensor] = {}
    for name, p in m.named_parameters():
        if p.dim() == 1:
            out[name] = torch.ones(p.shape, dtype=torch.bfloat16)
            continue
        w = torch.empty(p.shape, dtype=torch.float32).normal_(0.0, std, generator=gen)
        out[name] = (w if "embed_tokens" in name else ternary(w)).to(torch.bfloat16)
        del w
    if not m.tied:
        out.pop("lm_head.weight", None)
    return out


def full_shape_path(source: Path, root: Optional[Path] = None, seed: int = 0) -> Path:
    """Where the synthetic checkpoint of `source`'s config lives (written or not: is_written says)."""
    source = Path(source)
    if not (source / "config.json").is_file():
        raise FileNotFoundError(f"{source}: no config.json: point model.dummy_config at a model directory")
    return (root or cache_root()) / f"full-shape-{key_of(source, seed)}"


def is_written(out: Path) -> bool:
    return (Path(out) / COMPLETE).is_file()


def full_shape_dir(source: Path, root: Optional[Path] = None, seed: int = 0) -> Path:
    """The synthetic checkpoint of `source`'s config (written on first use, reused after)."""
    from safetensors.torch import save_file

    source = Path(source)
    out = full_shape_path(source, root, seed)
    if is_written(out):
        return out
    tmp = out.with_name(out.name + f".tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for f in source.iterdir():  # tokenizer, remote code, generation config: as the source has them
        if f.is_file() and f.name != "config.json" and not f.name.endswith(WEIGHT_SUFFIXES):
            shutil.copy2(f, tmp / f.name)
    (tmp / "README.md").write_text(
        f"# SYNTHETIC checkpoint at the shape of {source.name}\n\nSeeded ternary weights (seed {seed}), written by "
        f"`bitcpm_validation.model.synthetic` for numerical comparisons at the real shape. Not a trained model: "
        f"its text output means nothing. Tokenizer and remote code copied from {source}.\n", encoding="utf-8")
    raw = json.loads((source / "config.json").read_text(encoding="utf-8"))
    raw[WEIGHTS_KEY] = "synthetic"
    raw["synthetic_note"] = (f"SYNTHETIC: seeded ternary weights (seed {seed}, format {FORMAT}) written by "
                             f"bitcpm_validation.model.synthetic at the shape of {source.name}; not a trained model")
    (tmp / "config.json").write_text(json.dumps(raw, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    sd = state_dict(read_config(tmp), seed)
    save_file(sd, str(tmp / "model.safetensors"), metadata={"format": "pt"})
    del sd
    (tmp / COMPLETE).write_text(json.dumps({"source": str(source), "seed": seed, "format": FORMAT}) + "\n")
    try:
        tmp.rename(out)
    except OSError:  # another process finished first: use its directory
        shutil.rmtree(tmp, ignore_errors=True)
        if not (out / COMPLETE).is_file():
            raise
    return out


def tokenizer_reach(model_dir: Path) -> Optional[int]:
    """How many token ids the directory's tokenizer can produce (its SentencePiece pieces plus added tokens),
    None when unknown: a stand-in tokenizer in a 73,448-id directory reaches only its first ~2,008 ids."""
    try:
        tok = json.loads((Path(model_dir) / "tokenizer.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    ids = list((tok.get("model") or {}).get("vocab") or [])
    n = len(ids)
    added = [a.get("id", -1) for a in tok.get("added_tokens") or []]
    return max([n - 1, *added]) + 1 if n or added else None
