"""Benchmark accuracy with lm-evaluation-harness against the served endpoint.

    res = accuracy.evaluate_task(task, base_url=srv.base_url + "/completions", model=srv.model,
                                 tokenizer=params.model_path, num_fewshot=0, limit=None, out_dir=...)

`lm_eval.simple_evaluate` with `local-completions` (token ids sent as-is: tokenized_requests True, the
local tokenizer). Tasks run one at a time: a hub dataset that cannot be fetched (offline host) ends
as `skipped` with its reason, never as a failure of the model. The project's own bilingual task
(`bitcpm_probe_mc`, src/bitcpm_validation/tasks/) runs offline.

Published numbers (MiniCPM4 technical report) were measured with OpenCompass, whose prompts and
answer extraction differ from lm-eval's: the comparison uses a relative tolerance and says so.
"""
from __future__ import annotations

import contextlib
import importlib
import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Optional

import yaml

from bitcpm_validation.engine.offline import one_line
from bitcpm_validation.tasks import TASKS_DIR

# BitCPM4-0.5B, MiniCPM4 technical report (OpenCompass), facts sheet section 5. lm-eval task name -> value.
PUBLISHED = {
    "mmlu": ("MMLU", 49.88),
    "cmmlu": ("CMMLU", 55.88),
    "ceval-valid": ("CEval", 57.51),
    "ceval": ("CEval", 57.51),
    "bbh": ("BBH", 43.13),
    "gsm8k": ("GSM8K", 25.55),
    "humaneval": ("HumanEval", 29.88),
}
PUBLISHED_SOURCE = "MiniCPM4 technical report, OpenCompass (BitCPM4-0.5B column)"

LOCAL_TASKS = {"bitcpm_probe_mc"}

# Errors that mean "the dataset could not be fetched", not "the model is wrong".
_UNREACHABLE = ("ConnectionError", "offline mode", "Offline mode", "HF_HUB_OFFLINE", "Couldn't reach", "couldn't reach", "OfflineModeIsEnabled", "DatasetNotFoundError",
                "doesn't exist on the Hub", "not found", "LocalEntryNotFoundError", "HfHubHTTPError",
                "Temporary failure in name resolution", "Max retries exceeded", "ConnectTimeout")


@dataclass
class TaskResult:
    task: str
    status: str  # ok | skipped | failed
    rows: list[dict[str, Any]] = field(default_factory=list)  # {task, metric, value, stderr, n}
    reason: Optional[str] = None
    seconds: float = 0.0
    output_file: Optional[str] = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def local_include_dir(out_dir: Path) -> Path:
    """A copy of the project's task YAMLs with data_files made absolute (lm-eval resolves them from cwd)."""
    dst = Path(out_dir) / "tasks"
    dst.mkdir(parents=True, exist_ok=True)
    for y in TASKS_DIR.glob("*.yaml"):
        cfg = yaml.safe_load(y.read_text(encoding="utf-8"))
        files = (cfg.get("dataset_kwargs") or {}).get("data_files") or {}
        for split, rel in list(files.items()):
            p = Path(rel)
            if not p.is_absolute():
                p = TASKS_DIR / p.name
            files[split] = str(p.resolve())
        (dst / y.name).write_text(yaml.safe_dump(cfg, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return dst


def hub_reachable(timeout: float = 3.0) -> bool:
    """Whether the Hugging Face Hub (HF_ENDPOINT) answers a TCP connection; offline hosts fail fast."""
    import os
    import socket
    from urllib.parse import urlparse

    u = urlparse(os.environ.get("HF_ENDPOINT") or "https://huggingface.co")
    try:
        socket.create_connection((u.hostname, u.port or (443 if u.scheme == "https" else 80)), timeout=timeout).close()
        return True
    except OSError:
        return False


@contextlib.contextmanager
def hub_offline(enabled: bool):
    """Offline mode for datasets / huggingface_hub while evaluating (cached datasets still load): an
    unreachable hub then fails at once instead of after minutes of retries."""
    if not enabled:
        yield
        return
    saved = []
    for modname, attrs in (("huggingface_hub.constants", ("HF_HUB_OFFLINE",)),
                           ("datasets.config", ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"))):
        try:
            mod = importlib.import_module(modname)
        except Exception:
            continue
        for a in attrs:
            if hasattr(mod, a):
                saved.append((mod, a, getattr(mod, a)))
                setattr(mod, a, True)
    env = {k: os.environ.get(k) for k in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")}
    os.environ.update({k: "1" for k in env})
    try:
        yield
    finally:
        for mod, a, v in saved:
            setattr(mod, a, v)
        for k, v in env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _is_unreachable(err: BaseException) -> bool:
    text = f"{type(err).__name__}: {err}"
    chain = err.__cause__ or err.__context__
    if chain is not None:
        text += f" {type(chain).__name__}: {chain}"
    return any(m in text for m in _UNREACHABLE)


def model_args(base_url: str, model: str, tokenizer: str, trust_remote_code: bool = True,
               max_length: Optional[int] = None) -> dict[str, Any]:
    args = {"model": model, "base_url": base_url, "tokenizer": str(tokenizer), "tokenizer_backend": "huggingface",
            "tokenized_requests": True, "trust_remote_code": trust_remote_code, "num_concurrent": 1,
            "max_retries": 1, "timeout": 300}
    if max_length:
        args["max_length"] = max_length
    return args


def rows_from_results(results: dict[str, Any], n_samples: Optional[dict[str, Any]] = None) -> list[dict[str, Any]]:
    """lm-eval's results dict -> Task | Metric | Value | Stderr rows (groups and subtasks alike)."""
    rows = []
    for task, metrics in (results.get("results") or {}).items():
        for key, value in metrics.items():
            if "," not in key or key.split(",")[0].endswith("_stderr") or key == "alias":
                continue
            if not isinstance(value, (int, float)):
                continue
            name, flt = key.split(",", 1)
            stderr = metrics.get(f"{name}_stderr,{flt}")
            rows.append({"task": task, "metric": name if flt == "none" else f"{name} ({flt})",
                         "value": float(value),
                         "stderr": float(stderr) if isinstance(stderr, (int, float)) else None,
                         "n": (n_samples or {}).get(task, {}).get("effective")})
    return rows


def evaluate_task(task: str, *, base_url: str, model: str, tokenizer: str | Path, out_dir: Path,
                  num_fewshot: int = 0, limit: Optional[int] = None, trust_remote_code: bool = True,
                  max_length: Optional[int] = None, seed: int = 0, evidence: Optional[Path] = None) -> TaskResult:
    """One task through lm_eval.simple_evaluate(local-completions); never raises for a missing dataset.
    With `evidence`, everything lm-eval prints (progress bars, warnings) goes to that log instead."""
    if evidence is None:
        return _evaluate_task(task, base_url, model, tokenizer, out_dir, num_fewshot, limit, trust_remote_code,
                              max_length, seed)
    from bitcpm_validation.engine.offline import _to_evidence

    with _to_evidence(Path(evidence)):
        print(f"=== lm-eval {task} (local-completions, {base_url})", flush=True)
        return _evaluate_task(task, base_url, model, tokenizer, out_dir, num_fewshot, limit, trust_remote_code,
                              max_length, seed)


def _evaluate_task(task, base_url, model, tokenizer, out_dir, num_fewshot, limit, trust_remote_code, max_length,
                   seed) -> TaskResult:
    import lm_eval
    from lm_eval.tasks import TaskManager

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    try:
        tm = TaskManager(include_path=str(local_include_dir(out_dir)))
        if task not in tm.all_tasks:
            return TaskResult(task, "skipped", reason=f"task {task!r} is not known to lm-eval "
                                                      f"{getattr(lm_eval, '__version__', '')} nor a local task",
                              seconds=round(time.monotonic() - t0, 3))
        offline = task not in LOCAL_TASKS and not hub_reachable()
        with hub_offline(offline):
            res = lm_eval.simple_evaluate(
                model="local-completions",
                model_args=model_args(base_url, model, str(tokenizer), trust_remote_code, max_length),
                tasks=[task], num_fewshot=num_fewshot, limit=limit, task_manager=tm, log_samples=False,
                random_seed=seed, numpy_random_seed=seed, torch_random_seed=seed, fewshot_random_seed=seed,
                bootstrap_iters=1000,
            )
    except Exception as err:
        secs = round(time.monotonic() - t0, 3)
        if _is_unreachable(err):
            return TaskResult(task, "skipped", reason=f"dataset unreachable: {one_line(err)}", seconds=secs)
        return TaskResult(task, "failed", reason=one_line(err), seconds=secs)
    secs = round(time.monotonic() - t0, 3)
    if res is None:
        return TaskResult(task, "failed", reason="lm-eval returned no results", seconds=secs)
    keep = {k: res.get(k) for k in ("results", "groups", "configs", "versions", "n-shot", "n-samples",
                                    "config", "git_hash", "date", "lm_eval_version")}
    path = out_dir / f"results_{task}.json"
    path.write_text(json.dumps(keep, indent=2, ensure_ascii=False, default=str), encoding="utf-8")
    return TaskResult(task, "ok", rows_from_results(res, res.get("n-samples")), seconds=secs, output_file=str(path))


def headline(rows: list[dict[str, Any]], task: str) -> Optional[dict[str, Any]]:
    """The row compared with a published number: the task's own acc (or exact_match) row."""
    prefs = ("acc", "exact_match (strict-match)", "exact_match (flexible-extract)", "acc_norm", "exact_match")
    own = [r for r in rows if r["task"] == task]
    for m in prefs:
        for r in own:
            if r["metric"] == m:
                return r
    return own[0] if own else None


def compare_published(task: str, value_fraction: float, rtol: float) -> Optional[dict[str, Any]]:
    """This run's score vs BitCPM4-0.5B's published one (percent), relative tolerance rtol."""
    if task not in PUBLISHED:
        return None
    label, pub = PUBLISHED[task]
    ours = 100.0 * value_fraction
    rel = abs(ours - pub) / pub
    return {"benchmark": label, "published": pub, "measured": round(ours, 2), "rel_diff": round(rel, 4),
            "within": rel <= rtol, "rtol": rtol, "source": PUBLISHED_SOURCE}
