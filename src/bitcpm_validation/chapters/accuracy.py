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

Sizing (report.stats, after TensorRT-LLM's accuracy suite): per task theta / alpha / beta / sigma give n; a
group (ceval-valid, cmmlu, mmlu) is sampled stratified by subtask size with a fixed seed through lm-eval's
`samples` mapping (recorded in artifacts/09_accuracy/samples/<task>.json) and scored weighted by subtask size.
Per-item results (lm-eval's logged samples) go to artifacts/09_accuracy/items/<task>.jsonl (report.items).

Checks (model scope): the task ran; its score beats chance by a margin significant given its stderr; against
a registered reference (params/accuracy-references.yaml, same harness and settings) the score reaches the
TensorRT-LLM threshold; against a baseline run, the exact McNemar test on the same items finds no significant
loss. Document scope: the score against BitCPM4-0.5B's published number (MiniCPM4 technical report,
OpenCompass, whose prompts and answer extraction differ from lm-eval's), the gap shown.
"""
from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence

from urllib.parse import urlparse

import yaml

from bitcpm_validation.engine.base import error_line
from bitcpm_validation.engine.datasets import hub_offline
from bitcpm_validation.model.training_corpus import Contamination, contamination

from bitcpm_validation.report import items, stats
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
PUBLISHED_SOURCE_ZH = "MiniCPM4 技术报告，OpenCompass（BitCPM4-0.5B 一列）"

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
    items_file: Optional[str] = None  # per-item results (report.items format)
    samples_file: Optional[str] = None  # the items chosen (lm-eval --samples JSON), when not the whole dataset
    score: Optional[dict[str, Any]] = None  # headline score from the items: points, se, ci, n, strata
    command: Optional[str] = None  # the lm_eval command line that reproduces this task

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
               max_length: Optional[int] = None, num_concurrent: int = 1) -> dict[str, Any]:
    args = {"model": model, "base_url": base_url, "tokenizer": str(tokenizer), "tokenizer_backend": "huggingface",
            "tokenized_requests": True, "trust_remote_code": trust_remote_code, "num_concurrent": int(num_concurrent),
            "max_retries": 1, "timeout": 300}
    if max_length:
        args["max_length"] = max_length
    return args


def lm_eval_command(task: str, args: dict[str, Any], *, num_fewshot: Optional[int], chat_template: bool, seed: int,
                    samples_file: Optional[str] = None, limit: Optional[int] = None,
                    include_path: Optional[str] = None, output_path: str = "lm_eval_out") -> str:
    """The `lm_eval` command line that reproduces one task of the run (same model args, items and seeds)."""
    import shlex

    margs = ",".join(f"{k}={v}" for k, v in args.items())
    cmd = ["lm_eval", "--model", "local-completions", "--model_args", margs, "--tasks", task]
    if num_fewshot is not None:
        cmd += ["--num_fewshot", str(num_fewshot)]
    if chat_template:
        cmd += ["--apply_chat_template"]
    if include_path:
        cmd += ["--include_path", include_path]
    if limit:
        cmd += ["--limit", str(limit)]
    cmd += ["--seed", str(seed), "--log_samples", "--output_path", output_path]
    line = " ".join(shlex.quote(c) for c in cmd)
    if samples_file:
        line += f' --samples "$(cat {shlex.quote(samples_file)})"'
    return line


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


# ------------------------------------------------------------------------------------------------
# sizing: which items, how many

def task_manager(out_dir: Path, exclude: Optional[dict[str, set[str]]] = None, tasks: Optional[Sequence[str]] = None):
    """lm-eval's TaskManager with the project's local tasks (include_path). lm-eval's own ~15,000 task configs are
    indexed only when `tasks` names one of them or is None (indexing them takes ~10 s on a 2-core host)."""
    from lm_eval.tasks import TaskManager

    return TaskManager(include_path=str(local_include_dir(out_dir, exclude)), include_defaults=needs_lm_evals_tasks(tasks))


def needs_lm_evals_tasks(tasks: Optional[Sequence[str]]) -> bool:
    """Whether a TaskManager for `tasks` must index lm-eval's own configs: any task not local, or no list."""
    return tasks is None or any(t not in LOCAL_TASKS for t in tasks)


def leaf_tasks(task: str, tm) -> dict[str, Any]:
    """lm-eval's Task objects of a task's leaves (a group: its subtasks; a task: itself), by name. Loads the
    data (from the datasets cache the run resolved)."""
    return dict(sorted(tm.load([task])["tasks"].items()))


def example_prompts(leaves: dict[str, Any], k: int = 4, num_fewshot: Optional[int] = None) -> list[str]:
    """A few of the task's own prompts (the first document of the first subtasks), lengthened by the few-shot
    examples, for the request-rate probe: a rate measured on prompts of the task's own size."""
    out = []
    for t in list(leaves.values())[:k]:
        try:
            doc = next(iter(t.eval_docs))
            text = str(t.doc_to_text(doc))
            shots = num_fewshot if num_fewshot is not None else (t.config.num_fewshot or 0)
            out.append("\n\n".join([text] * (int(shots) + 1)))
        except Exception:  # a task whose prompt needs more than doc_to_text: the probe's default prompt
            continue
    return out


def choose_items(sizes: dict[str, int], n: int, seed: int) -> dict[str, list[int]]:
    """n items stratified by subtask size (report.stats.allocate), drawn per subtask with a generator seeded
    by (seed, subtask name): the same choice on every host. Sorted (lm-eval maps positions back in order)."""
    import zlib

    import numpy as np

    alloc = stats.allocate(sizes, max(n, len(sizes)))
    out = {}
    for sub, k in sorted(alloc.items()):
        rng = np.random.default_rng([int(seed), zlib.crc32(sub.encode())])
        out[sub] = sorted(int(i) for i in rng.choice(sizes[sub], size=k, replace=False))
    return out


@dataclass
class TaskPlan:
    """How a task is measured: the statistics that size it and the n it gets."""
    task: str
    theta: float
    alpha: float
    beta: float
    sigma: float
    sigma_from: str  # "params" | "reference p" | "p = 0.5 (largest)"
    n_needed: int
    available: int
    n: int
    capped_by: Optional[str]  # None | "dataset" | "time" | "limit" | "params n"
    detectable_theta: float
    reference: Optional[float] = None  # points
    threshold: Optional[float] = None  # points

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def plan_task(task: str, settings: dict[str, Any], available: int, *, reference: Optional[float] = None,
              seconds_per_item: Optional[float] = None) -> TaskPlan:
    """n from theta / alpha / beta / sigma (TensorRT-LLM), capped by the dataset, accuracy.limit, the task's
    explicit n and its time limit; the theta that n can actually detect; the threshold when a reference exists."""
    th, a, b = float(settings["theta"]), float(settings["alpha"]), float(settings["beta"])
    if settings.get("sigma"):
        sigma, src = float(settings["sigma"]), "params"
    elif reference is not None:
        sigma, src = stats.sigma_of(reference), "reference p"
    else:
        sigma, src = 50.0, "p = 0.5 (largest)"
    need = stats.samples_needed(th, sigma, a, b)
    n, cap = min(need, available), ("dataset" if available < need else None)
    if settings.get("n") and settings["n"] < n:
        n, cap = settings["n"], "params n"
    if settings.get("limit") and settings["limit"] < n:
        n, cap = settings["limit"], "limit"
    if settings.get("time_limit_s") and seconds_per_item:
        fit = max(1, int(settings["time_limit_s"] / seconds_per_item))
        if fit < n:
            n, cap = fit, "time"
    thr = stats.threshold(reference, n, sigma, a) if reference is not None else None
    return TaskPlan(task, th, a, b, sigma, src, need, available, n, cap, stats.detectable_theta(n, sigma, a, b),
                    reference, thr)


def score_from_items(records: list[dict[str, Any]], sizes: dict[str, int]) -> Optional[dict[str, Any]]:
    """The headline score (points) from per-item results: a group weighted by subtask size (stratified),
    with its standard error and 95 % interval (Wilson for one task, normal for a stratified group)."""
    by_sub: dict[str, list[float]] = {}
    for r in records:
        by_sub.setdefault(r["subtask"], []).append(float(r["score"]))
    if not by_sub:
        return None
    strata = []
    for sub, xs in sorted(by_sub.items()):
        m = sum(xs) / len(xs)
        var = sum((x - m) ** 2 for x in xs) / (len(xs) - 1) if len(xs) > 1 else m * (1 - m)
        strata.append(stats.Stratum(sub, max(sizes.get(sub, len(xs)), len(xs)), len(xs), m, var))
    n = sum(s.n for s in strata)
    binary = all(x in (0.0, 1.0) for xs in by_sub.values() for x in xs)
    if len(strata) == 1:
        s = strata[0]
        score, se = 100.0 * s.mean, 100.0 * math.sqrt(s.var / n) if n else math.nan
        if binary:  # Wilson: honest at small n and near 0 or 1
            lo, hi = stats.proportion_interval(int(sum(by_sub[s.name])), n)
        else:  # a graded score (e.g. F1): normal interval on the item scores
            lo, hi = score - stats.Z95 * se, score + stats.Z95 * se
    else:
        score, se = stats.stratified(strata)
        lo, hi = score - stats.Z95 * se, score + stats.Z95 * se
    return {"points": round(score, 3), "se": round(se, 3), "ci": [round(lo, 3), round(hi, 3)], "n": n,
            "subtasks": len(strata), "weighted_by": "subtask size" if len(strata) > 1 else None,
            "strata": [{"subtask": s.name, "size": s.size, "n": s.n, "mean": round(s.mean, 4)} for s in strata]}


HEADLINE_PREFS = ("acc", "exact_match (strict-match)", "exact_match (flexible-extract)", "acc_norm", "exact_match")


def _item_metric(samples: dict[str, list[dict[str, Any]]]) -> tuple[str, Optional[str]]:
    """The per-item metric of the headline (acc; gsm8k: exact_match under strict-match)."""
    ex = next((e for xs in samples.values() for e in xs), {})
    names = ex.get("metrics") or []
    filters = {e.get("filter") for xs in samples.values() for e in xs}
    for m in ("acc", "exact_match"):
        if m in names:
            return m, ("strict-match" if "strict-match" in filters else None)
    return (names[0] if names else "acc"), None


# ------------------------------------------------------------------------------------------------
# time: a request-rate probe before a task, the actual time after

def measure_request_rate(base_url: str, model: str, *, concurrency: int, generate: bool, max_tokens: int = 256,
                         prompts: Optional[list[str]] = None, requests: Optional[int] = None) -> float:
    """Requests per second the server answers at `concurrency` in flight: a few requests shaped like the
    task's (log-likelihood: echo + logprobs, one token; generation: max_tokens greedy)."""
    from concurrent.futures import ThreadPoolExecutor

    import requests as http

    k = requests or max(4, 2 * concurrency)
    prompts = prompts or [" ".join(["The quick brown fox jumps over the lazy dog."] * 20)]
    extra = {"max_tokens": max_tokens} if generate else {"max_tokens": 1, "echo": True, "logprobs": 1}

    def one(i):
        body = {"model": model, "prompt": prompts[i % len(prompts)], "temperature": 0.0, **extra}
        r = http.post(base_url, json=body, timeout=300)
        r.raise_for_status()

    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        list(pool.map(one, range(concurrency)))  # warm-up, untimed: a fresh server's first requests are slow
        t0 = time.monotonic()
        list(pool.map(one, range(k)))
    return k / max(time.monotonic() - t0, 1e-6)


def requests_per_item(task_kind: str, choices: int = 4) -> int:
    """lm-eval requests one item costs: one per choice (log-likelihood), one (generation)."""
    return 1 if task_kind == "generate_until" else choices


def task_kind(task: str, tm) -> str:
    """output_type of a task (a group: of its first leaf)."""
    from lm_eval.tasks._index import Kind

    e = tm._entry(task)
    while e is not None and e.kind in (Kind.GROUP, Kind.TAG):
        if e.kind == Kind.TAG:
            e = next((x for x in tm.task_index.values() if task in x.tags), None)
            break
        first = (e.cfg or {}).get("task", [None])[0]
        task = first if isinstance(first, str) else (first or {}).get("task")
        e = tm._entry(task)
    return ((e.cfg if e else None) or {}).get("output_type", "multiple_choice")


def evaluate_task(task: str, *, base_url: str, model: str, tokenizer: str | Path, out_dir: Path,
                  num_fewshot: Optional[int] = 0, limit: Optional[int] = None, trust_remote_code: bool = True,
                  max_length: Optional[int] = None, seed: int = 0, evidence: Optional[Path] = None,
                  exclude: Optional[set[str]] = None, samples: Optional[dict[str, list[int]]] = None,
                  sizes: Optional[dict[str, int]] = None, concurrency: int = 1, chat_template: bool = False,
                  dataset_problem: Optional[str] = None, tm=None) -> TaskResult:
    """One task through lm_eval.simple_evaluate(local-completions); never raises (failed / skipped carry
    the reason). exclude: item ids of a local task left out (contaminated). samples: the chosen items per
    leaf task (None: all). sizes: leaf task sizes (the group score's weights). dataset_problem: the run's
    dataset resolution found this task's data missing (skipped with that line). With `evidence`, everything
    lm-eval prints goes to that log instead."""
    kw = dict(task=task, base_url=base_url, model=model, tokenizer=tokenizer, out_dir=out_dir,
              num_fewshot=num_fewshot, limit=limit, trust_remote_code=trust_remote_code, max_length=max_length,
              seed=seed, exclude=exclude or set(), samples=samples, sizes=sizes, concurrency=concurrency,
              chat_template=chat_template, tm=tm)
    if dataset_problem:
        return TaskResult(task, "skipped", reason=dataset_problem)
    if evidence is None:
        return _evaluate_task(**kw)
    from bitcpm_validation.engine.offline import to_evidence

    with to_evidence(Path(evidence)):
        print(f"=== lm-eval {task} (local-completions, {base_url})", flush=True)
        return _evaluate_task(**kw)


def _evaluate_task(*, task, base_url, model, tokenizer, out_dir, num_fewshot, limit, trust_remote_code, max_length,
                   seed, exclude, samples, sizes, concurrency, chat_template, tm=None) -> TaskResult:
    import lm_eval

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    offline = False
    args = model_args(base_url, model, str(tokenizer), trust_remote_code, max_length, concurrency)
    samples_file = None
    if samples is not None:
        sf = out_dir / "samples" / f"{task}.json"
        sf.parent.mkdir(parents=True, exist_ok=True)
        sf.write_text(json.dumps(samples, sort_keys=True), encoding="utf-8")
        samples_file = str(sf)
    include = str(out_dir / "tasks")
    command = lm_eval_command(task, args, num_fewshot=num_fewshot, chat_template=chat_template, seed=seed,
                              samples_file=samples_file, limit=limit,
                              include_path=include if task in LOCAL_TASKS else None,
                              output_path=str(out_dir / "lm_eval_out"))
    try:
        tm = tm or task_manager(out_dir, {task: exclude} if exclude else None, [task])  # seconds with lm-eval's own
        if task not in tm.all_tasks:
            return TaskResult(task, "failed", reason=f"task {task!r} is not known to lm-eval "
                                                     f"{getattr(lm_eval, '__version__', '')} nor a local task: "
                                                     f"check accuracy.tasks in the params (`lm_eval ls tasks`)",
                              seconds=round(time.monotonic() - t0, 3), command=command)
        # hub data is read from the datasets cache the run resolved (engine.datasets), never fetched mid-run
        offline = task not in LOCAL_TASKS
        with hub_offline(offline):
            res = lm_eval.simple_evaluate(
                model="local-completions", model_args=args, tasks=[task], num_fewshot=num_fewshot,
                limit=None if samples is not None else limit, samples=samples, task_manager=tm, log_samples=True,
                apply_chat_template=bool(chat_template), random_seed=seed, numpy_random_seed=seed,
                torch_random_seed=seed, fewshot_random_seed=seed, bootstrap_iters=1000,
            )
    except Exception as err:
        secs = round(time.monotonic() - t0, 3)
        if is_unreachable(err, hub_offline=offline, base_url=base_url):
            return TaskResult(task, "skipped", reason=f"dataset unreachable (hub offline): {error_line(err)}",
                              seconds=secs, command=command)
        return TaskResult(task, "failed", reason=error_line(err), seconds=secs, command=command)
    secs = round(time.monotonic() - t0, 3)
    if res is None:
        return TaskResult(task, "failed", reason="lm-eval returned no results", seconds=secs, command=command)
    keep = {k: res.get(k) for k in ("results", "groups", "configs", "versions", "n-shot", "n-samples",
                                    "config", "git_hash", "date", "lm_eval_version")}
    path = out_dir / f"results_{task}.json"
    path.write_text(json.dumps(keep, indent=2, ensure_ascii=False, default=str), encoding="utf-8")
    logged = res.get("samples") or {}
    metric, flt = _item_metric(logged)
    records = items.records_from_samples(task, logged, metric)
    ipath = items.write_items(out_dir / "items" / f"{task}.jsonl", records)
    head = [r for r in records if flt is None or r["filter"] == flt]
    if sizes is None:
        sizes = {sub: len(xs) for sub, xs in logged.items()}
    score = score_from_items(head, sizes)
    if score is not None:
        score.update({"metric": metric, "filter": flt})
    return TaskResult(task, "ok", rows_from_results(res, res.get("n-samples")), seconds=secs, output_file=str(path),
                      items_file=str(ipath), samples_file=samples_file, score=score, command=command)


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
        return CHECKS["task"].not_run(r.reason or "dataset unreachable", "数据集无法获取（Hugging Face 不可达）：" + (r.reason or ""),
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


# --------------------------------------------------------------------------------------------
# references: a registry in the repository (unpaired, TensorRT-LLM's threshold), a baseline run (paired)

def reference_key(params: Any, task: str, settings: dict[str, Any], lm_eval_version: str) -> dict[str, Any]:
    """What a registered reference must match to be comparable with this run's task."""
    src = params.model.source
    return {"model": (src.repo_id if src else params.model.name),
            "revision": (src.commit or src.revision) if src else None,
            "task": task, "dtype": params.engine.dtype, "quantization": getattr(params.engine, "quantization", None),
            "harness": f"lm-eval {lm_eval_version}", "num_fewshot": settings.get("num_fewshot"),
            "chat_template": bool(settings.get("chat_template"))}


MATCH_KEYS = ("model", "revision", "task", "dtype", "quantization", "harness", "num_fewshot", "chat_template")


def load_references(path: Optional[str | Path]) -> list[dict[str, Any]]:
    """The reference registry (a YAML list under `references:`); [] when absent."""
    if not path:
        return []
    p = Path(path)
    if not p.is_absolute():
        from bitcpm_validation.paths import PROJECT_ROOT

        p = PROJECT_ROOT / p
    if not p.is_file():
        return []
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as e:
        raise ValueError(f"{p}: not valid YAML ({error_line(e)}): fix the reference registry") from None
    entries = data.get("references") if isinstance(data, dict) else None
    if not isinstance(entries, list):
        raise ValueError(f"{p}: needs a list under `references:` (see the comment at its top)")
    for i, e in enumerate(entries):
        missing = [k for k in ("model", "task", "value", "n", "measured_on") if not isinstance(e, dict) or e.get(k) is None]
        if missing or not isinstance(e.get("value"), (int, float)) or not isinstance(e.get("n"), int):
            raise ValueError(f"{p}: entry {i + 1} needs model, task, a numeric value (points), an integer n and "
                             f"measured_on" + (f" (missing: {', '.join(missing)})" if missing else ""))
    return entries


def find_reference(entries: list[dict[str, Any]], key: dict[str, Any]) -> Optional[dict[str, Any]]:
    """The registered entry whose model, revision, task, dtype, quantisation, harness and settings equal this
    run's (an entry without a revision matches any revision of the model)."""
    for e in entries:
        if all(e.get(k) == key.get(k) for k in MATCH_KEYS if not (k == "revision" and e.get(k) is None)):
            return e
    return None


def candidate_entry(key: dict[str, Any], score: dict[str, Any], measured_on: str) -> dict[str, Any]:
    """This run's entry for the registry (written to artifacts; a person copies it in after review)."""
    return {**key, "value": score["points"], "n": score["n"], "measured_on": measured_on}


def baseline_items(baseline_dir: Optional[str | Path], task: str) -> Optional[list[dict[str, Any]]]:
    """A baseline run's per-item results of `task`; None when the run or the file is absent."""
    if not baseline_dir:
        return None
    p = Path(baseline_dir)
    if not p.is_absolute():
        from bitcpm_validation.paths import PROJECT_ROOT

        p = PROJECT_ROOT / p
    f = items.items_file(p, task)
    return items.read_items(f) if f.is_file() else None


def judge_reference(task: str, score: Optional[dict[str, Any]], reference: Optional[dict[str, Any]], plan: TaskPlan) -> Check:
    """TensorRT-LLM's unpaired test: the score (points) must reach reference + Phi^-1(alpha) sqrt(2 sigma^2 / n)."""
    if reference is None:
        return CHECKS["reference"].not_run("no reference: threshold not computed", "没有参考值：未计算阈值", item=task)
    if score is None:
        return CHECKS["reference"].not_run("the task produced no score", "该任务没有得分", item=task)
    n = int(score["n"])
    ref = float(reference["value"])
    thr = stats.threshold(ref, n, plan.sigma, plan.alpha)
    ok = score["points"] >= thr
    en = (f"{score['points']:.2f} on {n} items vs reference {ref:.2f} (n {reference.get('n', '?')}, "
          f"{reference.get('measured_on', '?')}): threshold {thr:.2f} (alpha {plan.alpha:g}, sigma {plan.sigma:.1f}, "
          f"detects a drop of {stats.detectable_theta(n, plan.sigma, plan.alpha, plan.beta):.1f} points)")
    zh = (f"{score['points']:.2f}（{n} 道题），参考值 {ref:.2f}（{reference.get('n', '?')} 道题，"
          f"{reference.get('measured_on', '?')}）：阈值 {thr:.2f}（α {plan.alpha:g}，σ {plan.sigma:.1f}，"
          f"可检出 {stats.detectable_theta(n, plan.sigma, plan.alpha, plan.beta):.1f} 分的下降）")
    return CHECKS["reference"].row("pass" if ok else "fail", en, zh, item=task)


MIN_PAIRS = 10


def judge_baseline(task: str, pairing: Optional[items.Pairing], alpha: float, baseline: str) -> Check:
    """Paired against a baseline run on the same items: fail when the exact McNemar test (one-sided: more items
    lost than won) is significant at alpha."""
    if pairing is None:
        return CHECKS["baseline"].not_run(f"baseline {baseline} has no per-item results of {task}",
                                          f"基线 {baseline} 没有 {task} 的逐题结果", item=task)
    refused = f", {len(pairing.refused)} pairs refused (doc / prompt / target differ)" if pairing.refused else ""
    refused_zh = f"，{len(pairing.refused)} 对因题面 / 提示 / 答案不同被拒绝" if pairing.refused else ""
    if pairing.n < MIN_PAIRS:
        return CHECKS["baseline"].not_run(f"only {pairing.n} items pair with {baseline}{refused}: too few",
                                          f"仅 {pairing.n} 道题与 {baseline} 配对{refused_zh}：太少", item=task)
    r = stats.mcnemar([x >= 0.5 for x in pairing.candidate], [x >= 0.5 for x in pairing.baseline])
    en = (f"{r.n} paired items vs {baseline}: {r.diff_points:+.2f} points [{r.ci[0]:+.2f}, {r.ci[1]:+.2f}], "
          f"won {r.candidate_only} / lost {r.baseline_only}, exact McNemar p(worse) {r.p_worse:.3g} (alpha {alpha:g}){refused}")
    zh = (f"与 {baseline} 配对 {r.n} 道题：{r.diff_points:+.2f} 分 [{r.ci[0]:+.2f}, {r.ci[1]:+.2f}]，"
          f"多对 {r.candidate_only} / 多错 {r.baseline_only}，精确 McNemar 检验 p(变差) {r.p_worse:.3g}（α {alpha:g}）{refused_zh}")
    return CHECKS["baseline"].row("fail" if r.p_worse < alpha else "pass", en, zh, item=task)


# --------------------------------------------------------------------------------------------
# one task measured: planned, timed, evaluated (the notebook calls this per task)

def lm_eval_version() -> str:
    from importlib.metadata import version

    return version("lm_eval")


@dataclass
class Measured:
    result: TaskResult
    plan: Optional[TaskPlan]
    settings: dict[str, Any]
    estimate_s: Optional[float]  # before: n x requests per item / measured request rate
    rate_rps: Optional[float]  # requests per second measured at the task's concurrency
    reference: Optional[dict[str, Any]] = None  # the registry entry used, if any
    key: Optional[dict[str, Any]] = None  # what a registry entry must match

    def as_dict(self) -> dict[str, Any]:
        return {"result": self.result.as_dict(), "plan": self.plan.as_dict() if self.plan else None,
                "settings": self.settings, "estimate_s": self.estimate_s, "rate_rps": self.rate_rps,
                "reference": self.reference, "key": self.key}


def measure_task(task: str, params: Any, *, base_url: str, model: str, out_dir: Path, evidence: Optional[Path],
                 exclude: Optional[set[str]] = None, references: Optional[list[dict[str, Any]]] = None,
                 dataset_problem: Optional[str] = None, rates: Optional[dict[tuple[str, int], float]] = None,
                 say=print, tm=None) -> Measured:
    """Plan (n from theta / alpha / beta / sigma, capped by dataset and time), say the estimate, evaluate
    (stratified items through lm-eval's samples mapping), say the actual time. Never raises."""
    ap = params.accuracy
    st = ap.for_task(task)
    if dataset_problem:
        return Measured(TaskResult(task, "skipped", reason=dataset_problem), None, st, None, None)
    out_dir = Path(out_dir)
    try:
        tm = tm or task_manager(out_dir, {task: exclude} if exclude else None, [task])
        if task not in tm.all_tasks:  # evaluate_task says so in one line
            raise LookupError(task)
        with hub_offline(task not in LOCAL_TASKS):
            leaves = leaf_tasks(task, tm)
        sizes = {name: len(t.eval_docs) for name, t in leaves.items()}
        kind = task_kind(task, tm)
        prompts = example_prompts(leaves, num_fewshot=st["num_fewshot"])
    except LookupError:
        return Measured(evaluate_task(task, base_url=base_url, model=model, tokenizer=params.model_path,
                                      out_dir=out_dir, tm=tm), None, st, None, None)
    except Exception as err:  # data that cannot be read: one line, the other tasks go on
        return Measured(TaskResult(task, "skipped", reason=f"{task}: its data could not be loaded: {error_line(err)}"),
                        None, st, None, None)
    choices = 1
    if kind != "generate_until":
        its = local_items(task)
        choices = round(sum(len(i["choices"]) for i in its) / len(its)) if its else 4
    per_item = requests_per_item(kind, choices)
    rate = None
    rates = {} if rates is None else rates
    rk = (task, int(st["concurrency"]))  # per task: its own prompt lengths
    try:
        if rk not in rates:
            rates[rk] = measure_request_rate(base_url, model, concurrency=int(st["concurrency"]),
                                             generate=kind == "generate_until", prompts=prompts)
        rate = rates[rk]
    except Exception as err:  # the estimate is lost, not the task
        say(f"{task}: request rate not measured ({error_line(err)}); no time estimate")
    key = reference_key(params, task, st, lm_eval_version())
    ref = find_reference(references or [], key)
    available = sum(sizes.values())
    plan = plan_task(task, st, available, reference=float(ref["value"]) if ref else None,
                     seconds_per_item=per_item / rate if rate else None)
    samples = choose_items(sizes, plan.n, ap.seed) if plan.n < available else None
    n_run = sum(len(v) for v in samples.values()) if samples else available
    estimate = round(n_run * per_item / rate, 1) if rate else None
    say(f"{task}: {n_run} of {available} items ({len(sizes)} subtask(s)), {n_run * per_item} requests at "
        f"concurrency {st['concurrency']}" + (f": about {estimate:.0f} s at {rate:.1f} requests/s" if estimate else ""))
    r = evaluate_task(task, base_url=base_url, model=model, tokenizer=params.model_path, out_dir=out_dir,
                      num_fewshot=st["num_fewshot"], limit=None, trust_remote_code=params.trust_remote_code,
                      max_length=params.engine.max_model_len, seed=ap.seed, evidence=evidence, exclude=exclude,
                      samples=samples, sizes=sizes, concurrency=int(st["concurrency"]),
                      chat_template=bool(st["chat_template"]), tm=tm)
    say(f"{task}: {r.status} in {r.seconds:.0f} s" + (f" (estimated {estimate:.0f} s)" if estimate else ""))
    return Measured(r, plan, st, estimate, round(rate, 3) if rate else None, ref, key)


def verdict_line(m: Measured) -> tuple[str, str]:
    """(en, zh) one line of what the run can tell for a task: n, the theta it detects, whether it was capped."""
    p = m.plan
    if p is None:
        return ("", "")
    n = (m.result.score or {}).get("n", p.n)
    det = stats.detectable_theta(int(n), p.sigma, p.alpha, p.beta)
    cap = {"dataset": "the dataset's size", "time": "the time limit", "limit": "accuracy.limit",
           "params n": "the task's n"}.get(p.capped_by or "", "")
    cap_zh = {"dataset": "数据集大小", "time": "时间上限", "limit": "accuracy.limit", "params n": "任务的 n"}.get(p.capped_by or "", "")
    en = f"{m.result.task}: {n} items detect a drop of {det:.1f} points (alpha {p.alpha:g}, beta {p.beta:g})"
    zh = f"{m.result.task}：{n} 道题可检出 {det:.1f} 分的下降（α {p.alpha:g}，β {p.beta:g}）"
    if det > p.theta:
        en += f", not the {p.theta:g} asked" + (f" (n capped by {cap}; {p.n_needed} needed)" if cap else "")
        zh += f"，达不到要求的 {p.theta:g} 分" + (f"（n 受{cap_zh}限制；需要 {p.n_needed} 道）" if cap_zh else "")
    if det >= 20:
        en += ": it can only detect gross breakage"
        zh += "：只能发现严重损坏"
    return (en + ".", zh + "。")
