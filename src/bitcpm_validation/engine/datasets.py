"""Benchmark datasets resolved like the model: once per run, before the first chapter, revision recorded.

lm-eval loads each subtask with `datasets.load_dataset(dataset_path, dataset_name)`. Offline
(HF_DATASETS_OFFLINE=1 or no hub), `datasets` reads only its processed cache,
HF_DATASETS_CACHE/<org>___<name>/<config>/<version>/<commit>/, and takes the newest <commit> it finds there
(datasets.packaged_modules.cache._find_hash_in_cache). So:

- `prefetch(...)` (python -m bitcpm_validation prefetch-datasets PARAMS) calls load_dataset for every config a
  profile's tasks need, on a host with network (HF_ENDPOINT honoured), and says what it stored;
- `resolve(...)` (the runner, before the first chapter) reads that cache: per dataset the commit lm-eval will
  read, checked against a pin (accuracy.datasets: {path: commit}); with the hub reachable and nothing cached
  it prefetches first. A task whose dataset is missing, needs a loading script, or is not at its pinned commit
  gets one line; the other tasks still run.
"""
from __future__ import annotations

import contextlib
import importlib
import os
import socket
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional
from urllib.parse import urlparse

from bitcpm_validation.params import DatasetResolution
from bitcpm_validation.tasks import TASKS_DIR

# Hub datasets whose repository holds a loading script, which datasets >= 4 refuses to run.
SCRIPT_DATASETS = {
    "haonan-li/cmmlu": ("cmmlu.py", "a parquet copy of the same data (pin accuracy.datasets.haonan-li/cmmlu: "
                                    "refs/convert/parquet, the hub's parquet export) or leave cmmlu out of accuracy.tasks"),
}


@dataclass
class Need:
    """One dataset config a task needs (a subtask of a group, or the task itself)."""
    task: str  # the task the profile names (a group or a leaf)
    subtask: str  # lm-eval's leaf task
    path: str  # dataset_path
    config: Optional[str]  # dataset_name
    split: Optional[str]  # the evaluation split


@dataclass
class DatasetState:
    path: str
    configs: int
    revision: Optional[str] = None  # the commit lm-eval reads
    pinned: Optional[str] = None
    status: str = "ok"  # ok | missing | script | pin_mismatch | error
    reason: Optional[str] = None
    missing_configs: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def cache_dir() -> Path:
    import datasets.config

    return Path(os.path.expanduser(str(datasets.config.HF_DATASETS_CACHE)))


def _cached_name(path: str) -> str:
    from datasets.naming import camelcase_to_snakecase

    parts = path.split("/")
    parts[-1] = camelcase_to_snakecase(parts[-1])
    return "___".join(parts)


def cached_commits(path: str, config: Optional[str], root: Optional[Path] = None) -> list[str]:
    """Commits of `path`/`config` in the processed cache, oldest first (datasets reads the last)."""
    base = Path(root or cache_dir()) / _cached_name(path) / (config or "default")
    dirs = [d for d in base.glob("*/*") if d.is_dir() and (d / "dataset_info.json").is_file()]
    return [d.name for d in sorted(dirs, key=lambda d: d.stat().st_mtime)]


def hub_online(timeout: float = 3.0) -> bool:
    """The hub (HF_ENDPOINT) answers and offline mode is off."""
    if os.environ.get("HF_DATASETS_OFFLINE", "").lower() in ("1", "true", "yes", "on") or \
            os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on"):
        return False
    return hub_reachable(timeout)


def hub_reachable(timeout: float = 3.0) -> bool:
    """Whether the Hugging Face Hub (HF_ENDPOINT) answers a TCP connection; offline hosts fail fast."""
    u = urlparse(os.environ.get("HF_ENDPOINT") or "https://huggingface.co")
    try:
        socket.create_connection((u.hostname, u.port or (443 if u.scheme == "https" else 80)), timeout=timeout).close()
        return True
    except OSError:
        return False


@contextlib.contextmanager
def hub_offline(enabled: bool):
    """Offline mode for datasets / huggingface_hub (cached datasets still load): an unreachable hub then
    fails at once instead of after a minute of retries per load. Both libraries read HF_HUB_OFFLINE when imported:
    their module constants are set too."""
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


def task_needs(tasks: list[str], include_path: Optional[str] = None, tm=None) -> dict[str, list[Need]]:
    """Per task of the profile, the hub dataset configs its leaf tasks load (lm-eval's task index, no data
    loaded). Local tasks (data files) and unknown names need none."""
    from lm_eval.tasks import TaskManager
    from lm_eval.tasks._index import Kind

    if tm is None:  # building lm-eval's task index takes seconds: pass one in where it exists
        tm = TaskManager(include_path=include_path) if include_path else TaskManager()

    def leaves(name: str) -> list[str]:
        e = tm._entry(name)
        if e is None:
            return []
        if e.kind == Kind.GROUP:
            out: list[str] = []
            for t in (e.cfg or {}).get("task", []):
                out += leaves(t if isinstance(t, str) else t.get("task"))
            return out
        if e.kind == Kind.TAG:
            return sorted(n for n, x in tm.task_index.items() if name in x.tags and x.kind in (Kind.TASK, Kind.PY_TASK))
        return [name]

    out: dict[str, list[Need]] = {}
    for task in tasks:
        needs = []
        for leaf in leaves(task):
            cfg = tm._entry(leaf).cfg or {}
            path = cfg.get("dataset_path")
            if not path or path in ("json", "csv", "parquet", "text") or (cfg.get("dataset_kwargs") or {}).get("data_files"):
                continue
            needs.append(Need(task, leaf, path, cfg.get("dataset_name"),
                              cfg.get("test_split") or cfg.get("validation_split")))
        out[task] = needs
    return out


def prefetch_hint(params_source: Optional[str]) -> str:
    return f"python -m bitcpm_validation prefetch-datasets {params_source or 'PARAMS'}"


def load_config(path: str, config: Optional[str], revision: Optional[str] = None):
    """The one load call (what lm-eval does, with the pinned revision)."""
    import datasets

    return datasets.load_dataset(path, config, revision=revision)


def _by_path(needs: dict[str, list[Need]]) -> dict[str, list[Optional[str]]]:
    out: dict[str, list[Optional[str]]] = {}
    for ns in needs.values():
        for n in ns:
            if n.config not in out.setdefault(n.path, []):
                out[n.path].append(n.config)
    return out


def prefetch(needs: dict[str, list[Need]], pins: dict[str, str], *, say: Callable[[str], None] = print,
             load: Callable = load_config, online: Optional[bool] = None) -> dict[str, DatasetState]:
    """load_dataset for every config (network needed); returns what the cache now holds per dataset. Where the
    hub does not answer (`online` False, or found so), each load reads the cache in offline mode."""
    if online is None:
        online = hub_online()
    if not online:
        say(f"the hub ({os.environ.get('HF_ENDPOINT') or 'https://huggingface.co'}) does not answer or offline mode "
            f"is on: reading what {cache_dir()} holds")
    with hub_offline(not online):
        return _prefetch(needs, pins, say, load)


def _prefetch(needs: dict[str, list[Need]], pins: dict[str, str], say: Callable[[str], None],
              load: Callable) -> dict[str, DatasetState]:
    states = {}
    for path, configs in _by_path(needs).items():
        if path in SCRIPT_DATASETS and not pins.get(path):
            script, alt = SCRIPT_DATASETS[path]
            states[path] = DatasetState(path, len(configs), status="script",
                                        reason=f"{path} needs its loading script {script}, which this datasets refuses: use {alt}")
            say(f"skip {path}: {states[path].reason}")
            continue
        err = None
        for c in configs:
            try:
                load(path, c, pins.get(path))
            except Exception as e:  # one line per dataset, the others go on
                err = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
                if "scripts are no longer supported" in str(e):
                    alt = SCRIPT_DATASETS.get(path, ("", "a copy of the data without a loading script"))[1]
                    states[path] = DatasetState(path, len(configs), status="script",
                                                reason=f"{path} needs a loading script, which this datasets refuses: use {alt}")
                    break
                states[path] = DatasetState(path, len(configs), status="error", reason=f"{path} ({c}): {err}")
                break
        if path not in states:
            states[path] = inspect_cache(path, configs, pins.get(path))
        st = states[path]
        say(f"{'stored' if st.status == 'ok' else st.status:7s} {path}: {len(configs)} config(s)"
            + (f" at commit {st.revision}" if st.revision else "") + f" in {cache_dir()}"
            + (f" ({st.reason})" if st.reason else ""))
    return states


def inspect_cache(path: str, configs: list[Optional[str]], pin: Optional[str], *, hint: str = "",
                  root: Optional[Path] = None) -> DatasetState:
    """What lm-eval will read offline for this dataset: the newest cached commit of each config."""
    st = DatasetState(path, len(configs), pinned=pin)
    newest = {}
    for c in configs:
        commits = cached_commits(path, c, root)
        if not commits:
            st.missing_configs.append(c or "default")
        else:
            newest[c] = commits[-1]
    if st.missing_configs:
        st.status = "missing"
        shown = ", ".join(st.missing_configs[:3]) + (f" and {len(st.missing_configs) - 3} more" if len(st.missing_configs) > 3 else "")
        st.reason = (f"dataset {path} is not in the datasets cache {root or cache_dir()} ({shown}): on a host with network "
                     f"run `{hint or prefetch_hint(None)}` and copy the cache here (HF_DATASETS_CACHE)")
        return st
    revs = sorted(set(newest.values()))
    st.revision = revs[0] if len(revs) == 1 else ",".join(revs)
    if pin and any(not r.startswith(pin) for r in revs):
        st.status = "pin_mismatch"
        st.reason = (f"dataset {path}: the cache's newest commit is {st.revision}, the profile pins {pin} "
                     f"(datasets reads the newest offline): run `{hint or prefetch_hint(None)}` with the pin")
    return st


def resolve(tasks: list[str], pins: dict[str, str], *, params_source: Optional[str] = None,
            include_path: Optional[str] = None, online: Optional[bool] = None,
            say: Callable[[str], None] = print, tm=None) -> dict[str, Any]:
    """The run's dataset resolution: {"datasets": {path: state}, "tasks": {task: reason or None}}."""
    needs = task_needs(tasks, include_path, tm)
    hint = prefetch_hint(params_source)
    if online is None:
        online = any(needs.values()) and hub_online()
    by_path = _by_path(needs)
    states: dict[str, DatasetState] = {}
    for path, configs in by_path.items():
        st = inspect_cache(path, configs, pins.get(path), hint=hint)
        if st.status != "ok" and online:
            st = prefetch({"_": [Need("_", "_", path, c, None) for c in configs]}, pins, say=say, online=True)[path]
            if st.status == "ok":
                st = inspect_cache(path, configs, pins.get(path), hint=hint)
        elif st.status == "missing" and path in SCRIPT_DATASETS:
            script, alt = SCRIPT_DATASETS[path]
            st.reason += f"; note: the hub's {path} needs its loading script {script}, which current datasets refuses: use {alt}"
        states[path] = st
        if st.status != "ok":
            say(f"dataset: {st.reason}")
    task_reason = {}
    for task, ns in needs.items():
        bad = next((states[n.path] for n in ns if states[n.path].status != "ok"), None)
        task_reason[task] = bad.reason if bad else None
    return {"datasets": {p: s.as_dict() for p, s in states.items()}, "tasks": task_reason}


def local_task_names() -> set[str]:
    """The project's own lm-eval tasks (data files shipped in the package: nothing to resolve)."""
    import yaml

    return {(yaml.safe_load(y.read_text(encoding="utf-8")) or {}).get("task") for y in TASKS_DIR.glob("*.yaml")}


def with_resolution(params, *, say: Callable[[str], None] = print):
    """The run's params with accuracy.resolved set (the runner calls this once, before the first chapter)."""
    ap = params.accuracy
    hub_tasks = [t for t in ap.tasks if t not in local_task_names()]
    if not hub_tasks:
        return params
    try:
        res = resolve(hub_tasks, dict(ap.datasets), params_source=params.source, say=say)
    except Exception as e:  # never stops the run: the accuracy chapter resolves again and says why
        say(f"dataset resolution failed ({type(e).__name__}: {e}); the accuracy chapter will retry")
        return params
    rec = DatasetResolution(datasets=res["datasets"], tasks=res["tasks"])
    return params.model_copy(update={"accuracy": ap.model_copy(update={"resolved": rec})})
