"""Benchmark accuracy with lm-evaluation-harness against the served endpoint.

    res = accuracy.evaluate_task(task, base_url=srv.base_url + "/completions", model=srv.model,
                                 tokenizer=params.model_path, num_fewshot=0, limit=None, out_dir=...)

`lm_eval.simple_evaluate` with `local-completions` (token ids sent as-is: tokenized_requests True, the
local tokenizer). Tasks run one at a time. Failures are failures: an unknown task name, a server error
or "not found" from the server ends as `failed` with its one-line message; only a hub dataset that
cannot be fetched because the hub is unreachable (offline host) ends as `skipped`. The project's own
bilingual task (`bitcpm_probe_mc`, src/bitcpm_validation/tasks/) runs offline.

On a model directory that declares its training corpus (model.training_corpus; the stand-in declares
the project's corpus), local task items whose question occurs verbatim in that corpus are removed
before scoring (`task_contamination`): no score from memorised items.

Checks (model scope): the task ran; its score beats chance by a margin significant given its stderr;
for the real model, the score is within a stated relative tolerance of the published number
(MiniCPM4 technical report, OpenCompass, whose prompts and answer extraction differ from lm-eval's).
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

from urllib.parse import urlparse

import yaml

from bitcpm_validation.engine.offline import one_line
from bitcpm_validation.model.training_corpus import Contamination, contamination

from bitcpm_validation.report.results import Check
from bitcpm_validation.tasks import TASKS_DIR
from bitcpm_validation.chapters import registered_checks

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

# Errors that, while the hub is unreachable (offline mode on), mean "the dataset is not in the cache".
_UNREACHABLE = ("ConnectionError", "offline mode", "Offline mode", "HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE",
                "Couldn't reach", "couldn't reach", "OfflineModeIsEnabled", "DatasetNotFoundError",
                "doesn't exist on the Hub", "LocalEntryNotFoundError", "Temporary failure in name resolution",
                "Max retries exceeded", "ConnectTimeout")


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


def local_include_dir(out_dir: Path, exclude: Optional[dict[str, set[str]]] = None) -> Path:
    """A copy of the project's task YAMLs with data_files made absolute (lm-eval resolves them from cwd).
    exclude: task -> item ids to leave out (contaminated items); that task's data is then a filtered copy."""
    dst = Path(out_dir) / "tasks"
    dst.mkdir(parents=True, exist_ok=True)
    for y in TASKS_DIR.glob("*.yaml"):
        cfg = yaml.safe_load(y.read_text(encoding="utf-8"))
        drop = (exclude or {}).get(cfg.get("task"), set())
        files = (cfg.get("dataset_kwargs") or {}).get("data_files") or {}
        for split, rel in list(files.items()):
            p = Path(rel)
            if not p.is_absolute():
                p = TASKS_DIR / p.name
            if drop:
                kept = [ln for ln in p.read_text(encoding="utf-8").splitlines()
                        if ln.strip() and json.loads(ln)["id"] not in drop]
                p = dst / p.name
                p.write_text("\n".join(kept) + "\n", encoding="utf-8")
            files[split] = str(p.resolve())
        (dst / y.name).write_text(yaml.safe_dump(cfg, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return dst


def local_items(task: str) -> list[dict[str, Any]]:
    """The items of a project task (its test data file), in file order; [] for a task that is not local."""
    y = TASKS_DIR / f"{task}.yaml"
    if not y.is_file():
        return []
    cfg = yaml.safe_load(y.read_text(encoding="utf-8"))
    rel = Path(cfg["dataset_kwargs"]["data_files"][cfg.get("test_split", "test")])
    return [json.loads(ln) for ln in (TASKS_DIR / rel.name).read_text(encoding="utf-8").splitlines() if ln.strip()]


def chance_level(task: str) -> Optional[float]:
    """Expected score of random guessing: 1/choices averaged over a local task's items; known hub tasks
    from their format; None where unknown (the above-chance check is then not made)."""
    items = local_items(task)
    if items and all(it.get("choices") for it in items):
        return sum(1.0 / len(it["choices"]) for it in items) / len(items)
    return CHANCE.get(task)


# Random-guess level of hub tasks (4-choice multiple choice; free-form exact match: 0).
CHANCE = {"mmlu": 0.25, "cmmlu": 0.25, "ceval-valid": 0.25, "ceval": 0.25, "arc_easy": 0.25, "arc_challenge": 0.25,
          "gsm8k": 0.0}


def task_contamination(model_dir: str | Path, task: str) -> Contamination:
    """Which of a local task's items the model was trained on: its questions against the training corpus
    the model directory declares (model.training_corpus; the stand-in declares the project's corpus)."""
    return contamination(model_dir, {it["id"]: it["question"] for it in local_items(task)})


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


def _error_text(err: BaseException) -> str:
    text = f"{type(err).__name__}: {err}"
    chain = err.__cause__ or err.__context__
    if chain is not None:
        text += f" {type(chain).__name__}: {chain}"
    return text


def is_unreachable(err: BaseException, *, hub_offline: bool, base_url: str = "") -> bool:
    """Whether a task's error means "the hub dataset could not be fetched": only while the hub is
    unreachable (offline mode on), and never for an error about the evaluated server itself."""
    if not hub_offline:
        return False
    text = _error_text(err)
    if base_url:
        u = urlparse(base_url)
        # requests / urllib3 / httpx name the server as host:port, "host='h', port=p" or by its URL path
        about_server = (u.netloc, f"host='{u.hostname}', port={u.port}", u.path or "/v1")
        if any(m and m in text for m in about_server):
            return False
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
                  max_length: Optional[int] = None, seed: int = 0, evidence: Optional[Path] = None,
                  exclude: Optional[set[str]] = None) -> TaskResult:
    """One task through lm_eval.simple_evaluate(local-completions); never raises (failed / skipped carry
    the reason). exclude: item ids of a local task left out (contaminated). With `evidence`, everything
    lm-eval prints (progress bars, warnings) goes to that log instead."""
    args = (task, base_url, model, tokenizer, out_dir, num_fewshot, limit, trust_remote_code, max_length, seed,
            exclude or set())
    if evidence is None:
        return _evaluate_task(*args)
    from bitcpm_validation.engine.offline import to_evidence

    with to_evidence(Path(evidence)):
        print(f"=== lm-eval {task} (local-completions, {base_url})", flush=True)
        return _evaluate_task(*args)


def _evaluate_task(task, base_url, model, tokenizer, out_dir, num_fewshot, limit, trust_remote_code, max_length,
                   seed, exclude) -> TaskResult:
    import lm_eval
    from lm_eval.tasks import TaskManager

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    offline = False
    try:
        tm = TaskManager(include_path=str(local_include_dir(out_dir, {task: exclude} if exclude else None)))
        if task not in tm.all_tasks:
            return TaskResult(task, "failed", reason=f"task {task!r} is not known to lm-eval "
                                                     f"{getattr(lm_eval, '__version__', '')} nor a local task: "
                                                     f"check accuracy.tasks in the params (`lm_eval ls tasks`)",
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
        if is_unreachable(err, hub_offline=offline, base_url=base_url):
            return TaskResult(task, "skipped", reason=f"dataset unreachable (hub offline): {one_line(err)}",
                              seconds=secs)
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


# --------------------------------------------------------------------------------------------
# checks (model scope: is the model good? a random-weight model must fail them)

CHAPTER = "09_accuracy"
SIGNIFICANCE_Z = 2.0  # the margin over chance must be at least this many standard errors (about 97.7 %, one-sided)
MIN_ITEMS = 10  # fewer scored items than this say nothing about the model

CHECKS = registered_checks("09_accuracy")  # this chapter's entries of chapters/checks.yaml


def judge_task(r: TaskResult) -> Check:
    if r.status == "ok":
        n = {row.get("n") for row in r.rows if row["task"] == r.task} - {None}
        en = f"{len(r.rows)} metric rows in {r.seconds:.0f} s" + (f", {max(n)} items" if n else "")
        zh = f"{len(r.rows)} 行指标，用时 {r.seconds:.0f} 秒" + (f"，{max(n)} 道题" if n else "")
        return CHECKS["task"].row("pass", en, zh, item=r.task)
    if r.status == "skipped":
        return CHECKS["task"].not_run(r.reason or "dataset unreachable", "数据集无法获取（Hub 不可达）：" + (r.reason or ""),
                                      item=r.task)
    return CHECKS["task"].row("fail", r.reason or "failed", r.reason or "失败", item=r.task)


def judge_above_chance(task: str, value: Optional[float], stderr: Optional[float], n: Optional[int],
                       chance: Optional[float], *, removed: int = 0, z: float = SIGNIFICANCE_Z) -> Check:
    """value/stderr/n: the task's headline score (fraction), its standard error and items scored;
    removed: contaminated items left out before scoring (said in the detail)."""
    note_en = f" ({removed} items seen in training left out)" if removed else ""
    note_zh = f"（已剔除训练中出现过的 {removed} 道题）" if removed else ""
    if value is None:
        return CHECKS["above_chance"].not_run("the task produced no score", "该任务没有得分", item=task)
    if chance is None:
        return CHECKS["above_chance"].not_run(f"chance level of {task} is not known to the project",
                                              f"项目不知道 {task} 的随机水平", item=task)
    if n is not None and n < MIN_ITEMS:
        return CHECKS["above_chance"].not_run(f"only {n} items scored (< {MIN_ITEMS}){note_en}: too few to judge",
                                              f"仅 {n} 道题计分（< {MIN_ITEMS}）{note_zh}：太少，无法判断", item=task)
    se = stderr or 0.0
    need = chance + z * se
    en = (f"score {value:.3f} ± {se:.3f} on {n if n is not None else '?'} items vs chance {chance:.3f}: "
          f"needs > {need:.3f} ({z:g} standard errors){note_en}")
    zh = (f"得分 {value:.3f} ± {se:.3f}（{n if n is not None else '?'} 道题），随机水平 {chance:.3f}："
          f"需 > {need:.3f}（{z:g} 个标准误）{note_zh}")
    return CHECKS["above_chance"].row("pass" if value > need else "fail", en, zh, item=task)


def judge_published(task: str, value: Optional[float], rtol: float, *, fail_outside: bool, is_stand_in: bool) -> Check:
    """This run's score (fraction) against BitCPM4-0.5B's published one, for the real model only."""
    if is_stand_in:
        return CHECKS["published"].not_run("stand-in model: not BitCPM4-0.5B, its scores are not comparable",
                                           "替身模型不是 BitCPM4-0.5B，得分不可比", item=task)
    if value is None:
        return CHECKS["published"].not_run("the task produced no score", "该任务没有得分", item=task)
    c = compare_published(task, value, rtol)
    if c is None:
        return CHECKS["published"].not_run(f"no published BitCPM4-0.5B number for {task}",
                                           f"{task} 没有 BitCPM4-0.5B 的公布数字", item=task)
    en = (f"{c['benchmark']}: measured {c['measured']:.2f} (lm-eval) vs published {c['published']:.2f} (OpenCompass), "
          f"relative difference {c['rel_diff']:.3f} (rtol {rtol:g})")
    zh = (f"{c['benchmark']}：实测 {c['measured']:.2f}（lm-eval），公布 {c['published']:.2f}（OpenCompass），"
          f"相对差 {c['rel_diff']:.3f}（容差 {rtol:g}）")
    status = "pass" if c["within"] else ("fail" if fail_outside else "warn")
    return CHECKS["published"].row(status, en, zh, item=task)
