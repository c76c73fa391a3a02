"""Validation of a model directory, before an engine sees it: the one check (engine.base.model_facts calls check_once).

vLLM reports a damaged model directory late and obscurely (a Rust panic from safetensors, a shape
mismatch deep in a weight loader, a CUDA/NPU assert on an out-of-range token id). Everything here
reads only file headers and JSON, never the tensors, so it is cheap even for large checkpoints:

    check_model_dir(path, need_weights=True, max_model_len=None, params_source=None)
    check_once(path, ..., run_dir=run_dir)   # the same, at most once per run (run_dir/model-checks.json)
    check_params(params)                  # the profile's model (and dummy config) against its params
    check_safetensors(file) -> header     # truncated / corrupt safetensors
    check_config(config, config_path, tokenizer_size=None, weight_shapes=None)
    tokenizer_size(model_dir) -> int | None

Each problem raises ModelCheckError with one line naming the file, what is wrong and what to do.
"""
from __future__ import annotations

import contextlib
import json
import math
import os
import re
import struct
from pathlib import Path
from typing import Any, Optional

# Bytes per element of every safetensors dtype.
DTYPE_SIZE = {
    "BOOL": 1, "U8": 1, "I8": 1, "F8_E5M2": 1, "F8_E4M3": 1, "F8_E8M0": 1,
    "I16": 2, "U16": 2, "F16": 2, "BF16": 2,
    "I32": 4, "U32": 4, "F32": 4,
    "I64": 8, "U64": 8, "F64": 8,
}
MAX_HEADER = 100 * 2**20  # the safetensors library's own limit
REQUIRED_INT = ("hidden_size", "num_attention_heads", "num_hidden_layers", "intermediate_size", "vocab_size",
                "max_position_embeddings")
REDOWNLOAD = "re-download it (git lfs pull / huggingface-cli download)"


class ModelCheckError(ValueError):
    """A model directory is damaged or inconsistent; the message is one line with the fix."""


# -- safetensors -----------------------------------------------------------------------------------------
def check_safetensors(path: str | Path) -> dict[str, Any]:
    """Validate a safetensors file's header against its size. Returns the header's tensor entries
    ({name: {dtype, shape, data_offsets}}); raises ModelCheckError for a truncated or corrupt file."""
    p = Path(path)
    size = p.stat().st_size
    if size < 8:
        raise ModelCheckError(f"{p}: truncated safetensors file ({size} bytes, no header): {REDOWNLOAD}")
    with p.open("rb") as f:
        head = f.read(8)
        (n,) = struct.unpack("<Q", head)
        if n > MAX_HEADER or n > size - 8:
            if head.startswith(b"version "):
                raise ModelCheckError(f"{p}: this is a Git LFS pointer, not the weights: run `git lfs pull` in the "
                                      f"model directory")
            raise ModelCheckError(f"{p}: corrupt or truncated safetensors file (header length {n} bytes but the file "
                                  f"has {size} bytes): {REDOWNLOAD}")
        raw = f.read(n)
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        why = getattr(e, "msg", None) or type(e).__name__
        raise ModelCheckError(f"{p}: corrupt safetensors header (not JSON: {why}): {REDOWNLOAD}") from None
    if not isinstance(header, dict):
        raise ModelCheckError(f"{p}: corrupt safetensors header (not a JSON object): {REDOWNLOAD}")
    data_len = size - 8 - n
    tensors = {k: v for k, v in header.items() if k != "__metadata__"}
    end_max = 0
    for name, t in tensors.items():
        if not isinstance(t, dict) or not {"dtype", "shape", "data_offsets"} <= set(t):
            raise ModelCheckError(f"{p}: corrupt safetensors header (entry {name!r} lacks dtype/shape/data_offsets): "
                                  f"{REDOWNLOAD}")
        dtype, shape, offs = t["dtype"], t["shape"], t["data_offsets"]
        if dtype not in DTYPE_SIZE:
            raise ModelCheckError(f"{p}: tensor {name!r} has unknown dtype {dtype!r}: {REDOWNLOAD}")
        if (not isinstance(shape, list) or not all(isinstance(d, int) and d >= 0 for d in shape)
                or not isinstance(offs, list) or len(offs) != 2 or not all(isinstance(o, int) for o in offs)):
            raise ModelCheckError(f"{p}: corrupt safetensors header (tensor {name!r}: bad shape or offsets): "
                                  f"{REDOWNLOAD}")
        begin, end = offs
        want = math.prod(shape) * DTYPE_SIZE[dtype]
        if begin < 0 or end < begin or end - begin != want:
            raise ModelCheckError(f"{p}: corrupt safetensors header (tensor {name!r}: offsets {offs} do not hold "
                                  f"{dtype}{shape} = {want} bytes): {REDOWNLOAD}")
        if end > data_len:
            raise ModelCheckError(f"{p}: truncated safetensors file (tensor {name!r} ends at data byte {end}, the file "
                                  f"holds {data_len}): {REDOWNLOAD}")
        end_max = max(end_max, end)
    return tensors


def check_weights(model_dir: Path) -> dict[str, list[int]]:
    """Every *.safetensors file, and the shard index if present. Returns {tensor name: shape}."""
    shapes: dict[str, list[int]] = {}
    files = sorted(model_dir.glob("*.safetensors"))  # every file present, not only those an index names
    for f in files:
        for name, t in check_safetensors(f).items():
            shapes[name] = t["shape"]
    index = model_dir / "model.safetensors.index.json"
    if index.is_file():
        try:
            wmap = json.loads(index.read_text(encoding="utf-8"))["weight_map"]
            assert isinstance(wmap, dict)
        except (ValueError, KeyError, TypeError, AssertionError):
            raise ModelCheckError(f"{index}: not a valid shard index (needs a JSON object with weight_map): "
                                  f"{REDOWNLOAD}") from None
        missing = sorted({v for v in wmap.values() if not (model_dir / str(v)).is_file()})
        if missing:
            raise ModelCheckError(f"{index}: lists shard {missing[0]} which is not in {model_dir}"
                                  f"{f' (and {len(missing) - 1} more)' if len(missing) > 1 else ''}: "
                                  f"finish the download (git lfs pull)")
        absent = sorted(k for k, v in wmap.items() if k not in shapes)
        if absent:
            raise ModelCheckError(f"{index}: tensor {absent[0]!r} is mapped to {wmap[absent[0]]} but that file does "
                                  f"not hold it: {REDOWNLOAD}")
    return shapes


# -- tokenizer ------------------------------------------------------------------------------------------
def tokenizer_size(model_dir: str | Path) -> Optional[int]:
    """Number of token ids the tokenizer can produce (highest id + 1), from tokenizer.json or
    tokenizer.model + added_tokens.json; None when there is no tokenizer. Raises ModelCheckError
    for an unreadable tokenizer file."""
    d = Path(model_dir)
    tj, tm, added_p = d / "tokenizer.json", d / "tokenizer.model", d / "added_tokens.json"
    best: Optional[int] = None
    if tj.is_file():
        try:
            tok = json.loads(tj.read_text(encoding="utf-8"))
            vocab = (tok.get("model") or {}).get("vocab")
        except (ValueError, AttributeError):
            raise ModelCheckError(f"{tj}: not valid JSON: {REDOWNLOAD} (or copy the tokenizer files from the model "
                                  f"repository)") from None
        ids: list[int] = []
        if isinstance(vocab, dict):
            ids += [int(v) for v in vocab.values() if isinstance(v, int)]
        elif isinstance(vocab, list):  # Unigram: [[piece, score], ...]
            ids.append(len(vocab) - 1)
        ids += [int(a["id"]) for a in tok.get("added_tokens") or [] if isinstance(a, dict) and isinstance(a.get("id"), int)]
        if ids:
            best = max(ids) + 1
    if tm.is_file():
        try:
            import sentencepiece as spm

            n = spm.SentencePieceProcessor(model_file=str(tm)).get_piece_size()
        except ImportError:
            n = None
        except Exception as e:  # noqa: BLE001  (sentencepiece raises RuntimeError/OSError)
            raise ModelCheckError(f"{tm}: not a readable SentencePiece model ({type(e).__name__}): {REDOWNLOAD}") from None
        if n is not None:
            if added_p.is_file():
                try:
                    added = json.loads(added_p.read_text(encoding="utf-8"))
                    n = max([n] + [int(v) + 1 for v in added.values()])
                except (ValueError, AttributeError, TypeError):
                    raise ModelCheckError(f"{added_p}: not a JSON object of token ids: {REDOWNLOAD}") from None
            best = max(best or 0, n)
    return best


def has_tokenizer(model_dir: Path) -> bool:
    return (model_dir / "tokenizer.json").is_file() or (model_dir / "tokenizer.model").is_file()


# -- config ---------------------------------------------------------------------------------------------
def _ids(x: Any) -> list[int]:
    if isinstance(x, bool):
        return []
    if isinstance(x, int):
        return [x]
    if isinstance(x, list):
        return [v for v in x if isinstance(v, int) and not isinstance(v, bool)]
    return []


def check_config(config: dict[str, Any], config_path: str | Path, tokenizer_size: Optional[int] = None,
                 weight_shapes: Optional[dict[str, list[int]]] = None) -> None:
    """Missing or contradictory config fields, and the config against the tokenizer and weights."""
    cp = str(config_path)
    fix = "fix config.json or re-download it from the model repository"
    for k in REQUIRED_INT:
        if k not in config:
            raise ModelCheckError(f"{cp}: missing field '{k}': {fix}")
        v = config[k]
        if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
            raise ModelCheckError(f"{cp}: field '{k}' must be a positive integer, got {v!r}: {fix}")
    kv = config.get("num_key_value_heads")
    if kv is not None and (isinstance(kv, bool) or not isinstance(kv, int) or kv <= 0):
        raise ModelCheckError(f"{cp}: field 'num_key_value_heads' must be a positive integer, got {kv!r}: {fix}")
    h, heads = config["hidden_size"], config["num_attention_heads"]
    kv = kv or heads
    head_dim = config.get("head_dim")
    if head_dim is None and h % heads:
        raise ModelCheckError(f"{cp}: contradictory fields: hidden_size {h} is not divisible by num_attention_heads "
                              f"{heads}: {fix}")
    if heads % kv:
        raise ModelCheckError(f"{cp}: contradictory fields: num_attention_heads {heads} is not divisible by "
                              f"num_key_value_heads {kv}: {fix}")
    vocab = config["vocab_size"]
    if tokenizer_size is not None and vocab < tokenizer_size:
        raise ModelCheckError(f"{cp}: vocab_size {vocab} is smaller than the tokenizer ({tokenizer_size} ids): token "
                              f"ids beyond the embedding would crash the engine: use the tokenizer that belongs to "
                              f"this model, or {fix}")
    for k in ("bos_token_id", "eos_token_id", "pad_token_id"):
        bad = [i for i in _ids(config.get(k)) if i < 0 or i >= vocab]
        if bad:
            raise ModelCheckError(f"{cp}: {k} {bad[0]} is outside the vocabulary (vocab_size {vocab}): {fix}")
    rs = config.get("rope_scaling")
    if rs is not None:
        if not isinstance(rs, dict):
            raise ModelCheckError(f"{cp}: field 'rope_scaling' must be an object or null, got {type(rs).__name__}: {fix}")
        hd = head_dim or h // heads
        for k in ("long_factor", "short_factor"):
            f = rs.get(k)
            if f is not None and (not isinstance(f, list) or len(f) != hd // 2):
                n = len(f) if isinstance(f, list) else type(f).__name__
                raise ModelCheckError(f"{cp}: contradictory fields: rope_scaling.{k} has {n} entries but head_dim "
                                      f"{hd} needs {hd // 2}: {fix}")
    if weight_shapes:
        emb = weight_shapes.get("model.embed_tokens.weight")
        if emb is not None and list(emb) != [vocab, h]:
            raise ModelCheckError(f"{cp}: the weights do not match the config: model.embed_tokens.weight is {list(emb)}, "
                                  f"config says [vocab_size {vocab}, hidden_size {h}]: use the config.json that came "
                                  f"with these weights")
        layers = {int(m.group(1)) for n in weight_shapes for m in [re.match(r"model\.layers\.(\d+)\.", n)] if m}
        if layers and max(layers) + 1 != config["num_hidden_layers"]:
            raise ModelCheckError(f"{cp}: the weights do not match the config: the weights have {max(layers) + 1} "
                                  f"layers, num_hidden_layers is {config['num_hidden_layers']}: use the config.json "
                                  f"that came with these weights")


def config_json(model_dir: Path) -> dict[str, Any]:
    """config.json as written (no defaults applied: that is model.config.read_config), or a one-line error."""
    cfg = model_dir / "config.json"
    if not cfg.is_file():
        raise ModelCheckError(f"{model_dir} has no config.json: this is not a Hugging Face model directory")
    try:
        config = json.loads(cfg.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        where = f" ({err.msg} at line {err.lineno})" if isinstance(err, json.JSONDecodeError) else ""
        raise ModelCheckError(f"{cfg} is not valid JSON{where}: re-download the model") from None
    if not isinstance(config, dict):
        raise ModelCheckError(f"{cfg}: expected a JSON object, got {type(config).__name__}: re-download the model")
    return config


# -- the whole directory ------------------------------------------------------------------------------------
def check_model_dir(path: str | Path, need_weights: bool = True, max_model_len: Optional[int] = None,
                    params_source: Optional[str] = None) -> dict[str, Any]:
    """Validate a model directory (the basics, then weights, tokenizer and config consistency, then
    max_model_len against max_position_embeddings). Returns {"config", "tokenizer_size", "tensors"}."""
    d = Path(path)
    if not d.exists():
        raise ModelCheckError(f"model path {d} does not exist: set model.path in the params file to a local copy "
                              f"of the model (e.g. `git lfs clone https://huggingface.co/openbmb/BitCPM4-0.5B`)")
    if not d.is_dir():
        raise ModelCheckError(f"model path {d} is not a directory: point model.path at the model's folder")
    config = config_json(d)
    archs = config.get("architectures") or []
    if "MiniCPMForCausalLM" not in archs:
        raise ModelCheckError(f"{d / 'config.json'}: architectures is {archs!r}, not MiniCPMForCausalLM: this is not a "
                              f"MiniCPM model")
    shapes: dict[str, list[int]] = {}
    if need_weights:
        if not (list(d.glob("*.safetensors")) or list(d.glob("*.bin"))):
            raise ModelCheckError(f"{d} has no weight files (*.safetensors): finish the download (git lfs pull) or "
                                  f"use the dummy profile")
        shapes = check_weights(d)
    if not has_tokenizer(d):
        raise ModelCheckError(f"{d} has no tokenizer (tokenizer.json / tokenizer.model): copy the tokenizer files from "
                              f"the model repository")
    ntok = tokenizer_size(d)
    check_config(config, d / "config.json", ntok, shapes)
    if max_model_len is not None and max_model_len > config["max_position_embeddings"]:
        src = params_source or "params"
        raise ModelCheckError(f"{src}: key 'engine.max_model_len': {max_model_len} is beyond the model's "
                              f"max_position_embeddings {config['max_position_embeddings']} ({d / 'config.json'}): "
                              f"set it to {config['max_position_embeddings']} or less")
    return {"config": config, "tokenizer_size": ntok, "tensors": len(shapes)}


def check_params(params: Any) -> None:
    """The profile's model directory (with weights) and its dummy-config directory (without), each
    against the profile's engine.max_model_len."""
    mml = params.engine.max_model_len
    check_model_dir(params.model_path, need_weights=True, max_model_len=mml, params_source=params.source)
    if params.dummy_config_path is not None:
        check_model_dir(params.dummy_config_path, need_weights=False, max_model_len=mml, params_source=params.source)


# -- once per run -------------------------------------------------------------------------------------------
CHECKED_FILE = "model-checks.json"  # in the run directory: the model directories this run has checked


def _signature(model_dir: Path) -> list[list[Any]]:
    """What a check read: name, size and modification time of each file at the directory's top level."""
    out: list[list[Any]] = []
    with contextlib.suppress(OSError):
        for f in sorted(model_dir.iterdir()):
            with contextlib.suppress(OSError):
                st = f.stat()
                out.append([f.name, st.st_size, st.st_mtime_ns])
    return out


def check_once(path: str | Path, need_weights: bool = True, max_model_len: Optional[int] = None,
               params_source: Optional[str] = None, run_dir: Optional[str | Path] = None) -> None:
    """check_model_dir, at most once per run: with `run_dir`, a directory this run already checked (the same
    need_weights and max_model_len; its files unchanged since) is not read again (run_dir/model-checks.json,
    written after a check passed). Every engine start of every chapter calls this; only the first one reads."""
    d = Path(path)
    if run_dir is None or not Path(run_dir).is_dir():
        check_model_dir(d, need_weights, max_model_len, params_source)
        return
    key = f"{d.resolve()} need_weights={need_weights} max_model_len={max_model_len}"
    record_path = Path(run_dir) / CHECKED_FILE
    try:
        record = json.loads(record_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        record = {}
    record = record if isinstance(record, dict) else {}
    signature = _signature(d)
    if signature and record.get(key) == signature:
        return
    check_model_dir(d, need_weights, max_model_len, params_source)
    record[key] = signature
    with contextlib.suppress(OSError):
        tmp = record_path.with_suffix(f".tmp{os.getpid()}")
        tmp.write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")
        os.replace(tmp, record_path)
