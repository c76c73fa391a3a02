"""Model directories in the layout of openbmb/BitCPM4-0.5B (and MiniCPM4-0.5B).

config.json without model_type, auto_map to configuration_minicpm.py / modeling_minicpm.py (written
by the project, copied from remote_code/), tied embeddings by default (no lm_head.weight), the
tokenizer files of the real repository (tokenizer.model, tokenizer.json, tokenizer_config.json,
special_tokens_map.json, added_tokens.json), generation_config.json, and single or sharded
safetensors (model.safetensors or model-0000N-of-0000M.safetensors + model.safetensors.index.json)
in BF16 or FP32.
"""
from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import Optional

import torch

from . import corpus
from .config import CONFIG_DEFAULTS
from .reference import MiniCPM
from .tokenizer import train_sentencepiece, write_tokenizer_files
from .weights_kind import WEIGHTS_KEY

REMOTE_CODE = Path(__file__).parent / "remote_code"

AUTO_MAP = {
    "AutoConfig": "configuration_minicpm.MiniCPMConfig",
    "AutoModel": "modeling_minicpm.MiniCPMModel",
    "AutoModelForCausalLM": "modeling_minicpm.MiniCPMForCausalLM",
}

LONG_FACTOR = [
    1.0004360675811768, 1.0668443441390991, 1.1631425619125366, 1.3025742769241333,
    1.5040205717086792, 1.7941505908966064, 2.2101221084594727, 2.802666664123535,
    3.6389970779418945, 4.804192543029785, 6.39855432510376, 8.527148246765137,
    11.277542114257812, 14.684998512268066, 18.69317054748535, 23.13019371032715,
    27.72362518310547, 32.1606559753418, 36.168827056884766, 39.57627868652344,
    42.32667541503906, 44.45526885986328, 46.04962921142578, 47.21482849121094,
    48.05115509033203, 48.64370346069336, 49.05967712402344, 49.34980392456055,
    49.551246643066406, 49.69068145751953, 49.78697967529297, 49.85338592529297,
]


def full_size_config() -> dict:
    """config.json of openbmb/BitCPM4-0.5B exactly as in the facts sheet §1 (key order kept)."""
    return {
        "architectures": ["MiniCPMForCausalLM"],
        "auto_map": dict(AUTO_MAP),
        "bos_token_id": 1,
        "eos_token_id": [2, 73440],
        "hidden_act": "silu",
        "hidden_size": 1024,
        "initializer_range": 0.1,
        "intermediate_size": 4096,
        "max_position_embeddings": 32768,
        "num_attention_heads": 16,
        "num_hidden_layers": 24,
        "num_key_value_heads": 2,
        "rms_norm_eps": 1e-05,
        "rope_scaling": {
            "rope_type": "longrope",
            "long_factor": list(LONG_FACTOR),
            "short_factor": list(LONG_FACTOR),
            "original_max_position_embeddings": 32768,
        },
        "torch_dtype": "bfloat16",
        "use_cache": True,
        "vocab_size": 73448,
        "scale_emb": 12,
        "dim_model_base": 256,
        "scale_depth": 1.4,
    }


def small_config(vocab_size: int, **overrides) -> dict:
    """A small MiniCPM with the real config's keys, LongRoPE and scales (head_dim 64)."""
    cfg = full_size_config()
    cfg.update(
        hidden_size=256, intermediate_size=768, num_attention_heads=4, num_key_value_heads=2,
        num_hidden_layers=4, vocab_size=vocab_size, eos_token_id=[2, vocab_size - 8], dim_model_base=64,
    )
    for k, v in overrides.items():
        if v is None:
            cfg.pop(k, None)
        else:
            cfg[k] = v
    return cfg


def generation_config(cfg: dict) -> dict:
    eos = cfg.get("eos_token_id", 2)
    return {
        "bos_token_id": cfg.get("bos_token_id", 1),
        "do_sample": True,
        "eos_token_id": eos,
        "pad_token_id": 2,
        "temperature": 0.8,
        "top_p": 0.8,
    }


def _to_dtype(sd: dict[str, torch.Tensor], dtype: str) -> dict[str, torch.Tensor]:
    dt = {"bfloat16": torch.bfloat16, "float32": torch.float32, "float16": torch.float16}[dtype]
    return {k: v.detach().to(dt).contiguous() for k, v in sd.items()}


def save_weights(out: Path, sd: dict[str, torch.Tensor], shards: int = 1) -> list[str]:
    """model.safetensors, or `shards` files + model.safetensors.index.json (as HF names them)."""
    from safetensors.torch import save_file

    meta = {"format": "pt"}
    names = sorted(sd)
    if shards <= 1:
        save_file(sd, str(out / "model.safetensors"), metadata=meta)
        return ["model.safetensors"]
    total = sum(t.numel() * t.element_size() for t in sd.values())
    per = -(-total // shards)
    groups: list[list[str]] = [[]]
    size = 0
    for n in names:
        b = sd[n].numel() * sd[n].element_size()
        if groups[-1] and size + b > per and len(groups) < shards:
            groups.append([])
            size = 0
        groups[-1].append(n)
        size += b
    files, wmap = [], {}
    for i, g in enumerate(groups):
        fn = f"model-{i + 1:05d}-of-{len(groups):05d}.safetensors"
        save_file({n: sd[n] for n in g}, str(out / fn), metadata=meta)
        files.append(fn)
        wmap.update({n: fn for n in g})
    index = {"metadata": {"total_size": total}, "weight_map": wmap}
    (out / "model.safetensors.index.json").write_text(json.dumps(index, indent=2) + "\n")
    return files


def write_model_dir(
    path: str | Path,
    cfg: dict,
    state_dict: Optional[dict[str, torch.Tensor]] = None,
    sp_model: Optional[str | Path] = None,
    dtype: str = "bfloat16",
    shards: int = 1,
    modeling_code: bool = True,
    readme: Optional[str] = None,
) -> Path:
    """Write a model directory in the real repository's layout.

    cfg: config.json content (written as given: no model_type unless cfg has one). state_dict:
    HF-named tensors (an lm_head.weight in it is kept only if the config unties the embeddings);
    None writes no weights (architecture-only directory). sp_model: a SentencePiece model for the
    tokenizer files. dtype: stored dtype ("bfloat16" or "float32"); config torch_dtype follows it."""
    out = Path(path)
    out.mkdir(parents=True, exist_ok=True)
    cfg = dict(cfg)
    if "torch_dtype" in cfg:
        cfg["torch_dtype"] = dtype
    (out / "config.json").write_text(json.dumps(cfg, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    shutil.copyfile(REMOTE_CODE / "configuration_minicpm.py", out / "configuration_minicpm.py")
    if modeling_code:
        shutil.copyfile(REMOTE_CODE / "modeling_minicpm.py", out / "modeling_minicpm.py")
    (out / "generation_config.json").write_text(json.dumps(generation_config(cfg), indent=2) + "\n")
    if sp_model is not None:
        added = write_tokenizer_files(out, sp_model, model_max_length=cfg.get("max_position_embeddings", 32768))
        if not cfg.get("_skip_vocab_check") and max(added.values()) >= cfg["vocab_size"]:
            raise ValueError(f"tokenizer has {max(added.values()) + 1} ids but vocab_size is {cfg['vocab_size']}")
    if state_dict is not None:
        sd = dict(state_dict)
        if cfg.get("tie_word_embeddings", True):
            sd.pop("lm_head.weight", None)
        for old in list(out.glob("*.safetensors")) + list(out.glob("model.safetensors.index.json")):
            old.unlink()
        save_weights(out, _to_dtype(sd, dtype), shards)
    if readme:
        (out / "README.md").write_text(readme, encoding="utf-8")
    return out


_SP_CACHE: dict[int, bytes] = {}


def corpus_sp_model(path: str | Path, vocab_size: int = 2000) -> Path:
    """Train (once per process) the project's SentencePiece model on the corpus and write it."""
    if vocab_size not in _SP_CACHE:
        with tempfile.TemporaryDirectory() as td:
            p = train_sentencepiece(corpus.tokenizer_lines(), Path(td) / "sp.model", vocab_size)
            _SP_CACHE[vocab_size] = p.read_bytes()
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(_SP_CACHE[vocab_size])
    return p


def sp_piece_count(sp_model: str | Path) -> int:
    import sentencepiece as spm

    return spm.SentencePieceProcessor(model_file=str(sp_model)).get_piece_size()


def write_tiny_random_model(
    path: str | Path,
    dtype: str = "float32",
    seed: int = 0,
    shards: int = 1,
    lm_head: bool = False,
    model_type: Optional[str] = None,
    std: float = 0.05,
    sp_vocab_size: int = 2000,
    **overrides,
) -> Path:
    """A small MiniCPM with random weights in the real layout, for tests.

    Defaults: hidden 256, 4 heads (head_dim 64), 2 KV heads, 4 layers, intermediate 768, the real
    LongRoPE config, vocab = the corpus tokenizer's pieces + 8 added tokens (override vocab_size to
    make it larger). Any config key can be overridden (a value None removes the key). lm_head=True
    sets tie_word_embeddings false and writes a separate lm_head.weight. model_type adds that key."""
    out = Path(path)
    out.mkdir(parents=True, exist_ok=True)
    sp = corpus_sp_model(out / "tokenizer.model", sp_vocab_size)
    n = sp_piece_count(sp)
    overrides.setdefault("vocab_size", n + 8)
    overrides.setdefault("eos_token_id", [2, n])
    cfg = small_config(**overrides)
    if WEIGHTS_KEY not in overrides:  # random weights: the directory says so (model.weights_kind)
        cfg[WEIGHTS_KEY] = "synthetic"
    if model_type:
        cfg = {"model_type": model_type, **cfg}
    if lm_head:
        cfg["tie_word_embeddings"] = False
    full = read_config_from_dict(cfg)
    torch.manual_seed(seed)
    m = MiniCPM(full)
    if lm_head:
        m.untie()
    sd = {}
    g = torch.Generator().manual_seed(seed)
    for k, v in m.state_dict().items():
        if v.dim() == 2:
            sd[k] = torch.randn(v.shape, generator=g) * std
        else:
            sd[k] = 1.0 + 0.1 * torch.randn(v.shape, generator=g)
    return write_model_dir(out, cfg, sd, sp_model=sp, dtype=dtype, shards=shards)


def read_config_from_dict(cfg: dict) -> dict:
    """read_config's defaults applied to an in-memory config dict."""
    full = dict(CONFIG_DEFAULTS)
    full.update(cfg)
    if full.get("num_key_value_heads") is None:
        full["num_key_value_heads"] = full["num_attention_heads"]
    if full.get("head_dim") is None:
        full["head_dim"] = full["hidden_size"] // full["num_attention_heads"]
    return full


FULL_SIZE_README = """# BitCPM4-0.5B architecture (no weights)

The architecture of openbmb/BitCPM4-0.5B, for loading and performance measurements at the real shape
with dummy weights (`load_format="dummy"`). No weights are shipped.

- `config.json`: exactly the real repository's (no `model_type`, `auto_map` to the remote code,
  LongRoPE with short == long factors, `vocab_size` 73448, tied embeddings by the class default).
- `configuration_minicpm.py`, `modeling_minicpm.py`: written by this project (vLLM needs only the
  configuration class; it runs its own native `MiniCPMForCausalLM`).
- Tokenizer files: **not the real 73,448-piece tokenizer** (it cannot be downloaded here). They are
  the project's stand-in tokenizer ({pieces} SentencePiece pieces + the 8 added tokens at ids
  {first_added}..{last_added}), shipped only because vLLM needs a tokenizer to start an engine. The
  embedding and head are sized by `vocab_size` 73448 in config.json, not by the tokenizer; token
  ids above {last_added} are never produced by this tokenizer, and `eos_token_id` [2, 73440] refers
  to the real tokenizer's `<|im_end|>`. Do not read any text output of a dummy-weight engine.
- Regenerate: `python -m bitcpm_validation.model.writer --full-size models/bitcpm4-0.5b`.
"""


def write_full_size_dir(path: str | Path) -> Path:
    """models/bitcpm4-0.5b: the real config + remote code + the stand-in tokenizer, no weights."""
    out = Path(path)
    sp = corpus_sp_model(out / "tokenizer.model")
    n = sp_piece_count(sp)
    cfg = full_size_config()
    return write_model_dir(out, cfg, None, sp_model=sp, readme=FULL_SIZE_README.format(
        pieces=n, first_added=n, last_added=n + 7))


def main(argv=None):
    import argparse

    ap = argparse.ArgumentParser(description="write model directories in the BitCPM4 layout")
    ap.add_argument("--full-size", metavar="DIR", help="write the full-size architecture directory")
    ap.add_argument("--tiny-random", metavar="DIR", help="write a tiny random-weight model")
    a = ap.parse_args(argv)
    if a.full_size:
        print(write_full_size_dir(a.full_size))
    if a.tiny_random:
        print(write_tiny_random_model(a.tiny_random))


if __name__ == "__main__":
    main()
