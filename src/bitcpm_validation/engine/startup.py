"""How an offline engine starts (in this process or in vLLM's own processes) and where its seconds go.

vLLM's offline `LLM` on CPU runs in three processes by default: this one (the front end), an engine core and a
worker, and each imports vLLM (~11 s on a 2-core host) before it does anything. With
VLLM_ENABLE_V1_MULTIPROCESSING=0 (vllm/envs.py:1463) and world size 1 everything runs here: the engine core in
process (vllm/v1/engine/llm_engine.py:170 and :186, `multiprocess_mode` from that variable) and the
uniprocess executor (vllm/v1/executor/uniproc_executor.py:51-75), which the CPU platform keeps only when the
variable is not "1" (vllm/platforms/cpu.py:333-342). vLLM's own start-up benchmark runs that way
(vllm/benchmarks/startup.py:257).

What an in-process start does to the process that hosts it (the notebook kernel, where the reference models
run next), and what `in_process()` puts back:

- vllm/v1/worker/cpu_worker.py:139-145 replaces `torch.set_num_threads` process-wide by a no-op: the function and
  the kernel's thread count are restored after the start;
- cpu_worker.py:165 and :271 (`set_random_seed`, vllm/utils/torch_utils.py:542-553) seed Python's, numpy's and
  torch's global generators: their states are restored;
- vllm/v1/engine/core.py:253 freezes the garbage collector's heap and :258 caches vLLM's environment reads
  (vllm/envs.py:2308): both undone, so a later start here reads the environment again;
- the worker joins a torch.distributed group (cpu_worker.py:154): `InProcessLLM.shutdown` destroys it
  (vllm/distributed/parallel_state.py:2516-2543, `cleanup_dist_env_and_memory`), so the next start can join one;
- cpu_worker.py:70 binds the process's memory to the first CPU's NUMA node: in process only on a host with one
  visible node, where that binding is no restriction;
- OpenMP thread binding exists only in the multiprocess executor (vllm/v1/executor/multiproc_executor.py:189-199,
  vllm/utils/ompmultiprocessing.py:71-120: OMP_NUM_THREADS / OMP_PLACES set at the worker's spawn). In process
  the engine's calls run with the thread count that binding would give its worker (vLLM's own
  `OMPProcessManager` on the engine's config), the kernel's own count around them; the threads are not pinned.

What the engine computes is the same either way (tests/engine/test_startup.py: token ids and logprobs).
`vllm serve` always spawns its engine core: the modes are for the offline engine only; where a start's seconds go
is read from the engine's log here for both (`phases` for an offline start, `server_phases` for a `vllm serve`).
"""
from __future__ import annotations

import contextlib
import datetime as _dt
import gc
import logging
import os
import random
import re
from dataclasses import dataclass
from typing import Any, Iterator, Mapping, Optional, Sequence

MODE_ENV = "VLLM_ENABLE_V1_MULTIPROCESSING"
IN_PROCESS, MULTIPROCESS = "in-process", "multiprocess"


@dataclass(frozen=True)
class Mode:
    name: str     # IN_PROCESS | MULTIPROCESS
    reason: str


def choose_mode(platform: str, world_size: int, numa_nodes: int, env: Mapping[str, str]) -> Mode:
    """Where an offline engine runs: in this process on a CPU host with world size 1 and one NUMA node, else in
    vLLM's own processes; an explicit VLLM_ENABLE_V1_MULTIPROCESSING in the environment is obeyed as vLLM reads
    it (an integer, 0 = off)."""
    set_to = (env.get(MODE_ENV) or "").strip()
    if set_to:
        try:
            multi = bool(int(set_to))
        except ValueError:
            raise ValueError(f"{MODE_ENV}={set_to!r} is not an integer: set it to 0 (one process) or 1 "
                             f"(vLLM's engine processes), or unset it") from None
        return Mode(MULTIPROCESS if multi else IN_PROCESS, f"{MODE_ENV}={set_to} in the environment")
    if platform != "cpu":
        return Mode(MULTIPROCESS, f"vLLM's default on {platform}")
    if world_size != 1:
        return Mode(MULTIPROCESS, f"world size {world_size}: one worker process per rank")
    if numa_nodes != 1:
        return Mode(MULTIPROCESS, f"{numa_nodes} NUMA nodes: the CPU worker binds its process's memory to one node")
    return Mode(IN_PROCESS, "CPU, world size 1, one NUMA node: engine core and worker in this process")


def visible_numa_nodes() -> int:
    """The NUMA nodes the CPU worker may bind memory to (vLLM's own list; 1 where it cannot say)."""
    try:
        from vllm.utils.cpu_resource_utils import get_visible_memory_node

        return max(1, len(get_visible_memory_node()))
    except Exception:  # an older build or a platform without the helper: the usual single node
        return 1


@contextlib.contextmanager
def torch_threads(n: Optional[int]) -> Iterator[None]:
    """torch's intra-op thread count set to n for the block, the caller's own restored after (None: unchanged)."""
    import torch

    before = torch.get_num_threads()
    if n and n != before:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        if torch.get_num_threads() != before:
            torch.set_num_threads(before)


@contextlib.contextmanager
def in_process() -> Iterator[None]:
    """Start an engine in this process: VLLM_ENABLE_V1_MULTIPROCESSING=0 for the start; afterwards the process's
    own settings that the start changes (the module docstring lists them) are put back."""
    import numpy as np
    import torch

    set_num_threads, threads = torch.set_num_threads, torch.get_num_threads()
    rng = random.getstate(), np.random.get_state(), torch.get_rng_state()
    env_before = os.environ.get(MODE_ENV)
    os.environ[MODE_ENV] = "0"  # read at the start only; a `vllm serve` started later must not inherit it
    try:
        yield
    finally:
        if env_before is None:
            os.environ.pop(MODE_ENV, None)
        else:
            os.environ[MODE_ENV] = env_before
        torch.set_num_threads = set_num_threads
        if torch.get_num_threads() != threads:
            torch.set_num_threads(threads)
        random.setstate(rng[0])
        np.random.set_state(rng[1])
        torch.set_rng_state(rng[2])
        gc.unfreeze()
        with contextlib.suppress(Exception):
            import vllm.envs as vllm_envs

            vllm_envs.disable_envs_cache()


def worker_threads(vllm_config: Any) -> Optional[int]:
    """The thread count vLLM's multiprocess executor would bind its one worker to (OMPProcessManager, the same
    code: multiproc_executor.py:189); None where it would not bind (VLLM_CPU_OMP_THREADS_BIND=nobind)."""
    # its "OpenMP thread binding info ... core ids=" line would claim a binding this process does not get
    quiet = logging.getLogger("vllm.utils.ompmultiprocessing")
    was_disabled, quiet.disabled = quiet.disabled, True
    try:
        from vllm.utils.ompmultiprocessing import OMPProcessManager

        mgr = OMPProcessManager(vllm_config)
    except Exception:  # not a CPU build, or a binding vLLM itself would refuse: leave the count alone
        return None
    finally:
        quiet.disabled = was_disabled
    if getattr(mgr, "skip_setup", True) or not getattr(mgr, "cpu_lists", None):
        return None
    return len(mgr.cpu_lists[0]) or None


class InProcessLLM:
    """A `vllm.LLM` that runs in this process: its generate calls run with the worker's thread count, the caller's
    own restored after; everything else is the LLM's own."""

    def __init__(self, llm: Any, threads: Optional[int]):
        self._llm = llm
        self.threads = threads

    def __getattr__(self, name: str) -> Any:
        return getattr(self._llm, name)

    def generate(self, *args: Any, **kwargs: Any) -> Any:
        with torch_threads(self.threads):
            return self._llm.generate(*args, **kwargs)

    def shutdown(self) -> None:
        """Shut the engine down and leave the process as a next start needs it (no distributed group)."""
        with contextlib.suppress(Exception):
            self._llm.llm_engine.engine_core.shutdown()
        with contextlib.suppress(Exception):
            from vllm.distributed.parallel_state import cleanup_dist_env_and_memory

            cleanup_dist_env_and_memory()


# -- where a start's seconds go --------------------------------------------------------------------------------
# A line of the evidence log as engine.offline's logging config writes it: level, time with milliseconds, pid.
_LINE_RE = re.compile(r"^[A-Z]+ (\d\d-\d\d \d\d:\d\d:\d\d)\.(\d{3}) (\d+) \[")
# A line of a `vllm serve` log: vLLM's own format (times to the whole second) behind the prefix naming the process
# that wrote it: "(APIServer pid=6845) INFO 12-03 15:14:47 [api_utils.py:347] ..."; the engine core's is
# "(EngineCore pid=…)" (or "EngineCore_DP0"), the worker's "(VllmWorker-0 pid=…)" or "(Worker pid=…)".
SERVER_LINE_RE = re.compile(r"^\((\w[\w-]*) pid=(\d+)\) [A-Z]+ ")
# The engine's own timings (vLLM's messages; CPU, CUDA and vLLM-Ascend share them; engine.base reads them too)
MODEL_LOAD_RE = re.compile(r"Model loading took [\d.]+ ?GiB(?: memory)? and ([\d.]+) s")
WEIGHTS_LOAD_RE = re.compile(r"Loading (?:model )?weights took ([\d.]+) s")
# vllm/v1/engine/core.py: "... took %.2f s" or, after a torch.compile, "... took %.2f s (compilation: %.2f s)"
ENGINE_INIT_RE = re.compile(r"init engine \(profile, create kv cache, warmup model\) took ([\d.]+) s"
                            r"(?: \(compilation: ([\d.]+) s)?")
# vllm/compilation/monitor.py: "torch.compile took %.2f s in total" (older builds: "takes")
COMPILE_RE = re.compile(r"torch\.compile (?:take[sn]?|took) ([\d.]+) s in total")


def logged_phases(log: str) -> dict[str, float]:
    """The phases the engine times itself, as it logged them (last start in the log wins): `model_load`,
    `kv_cache_and_warmup` (profile run, KV cache, warm-up) and `compile`. The compilation runs inside vLLM's
    "init engine (profile, create kv cache, warmup model)" span: it is taken out of kv_cache_and_warmup, so
    the phases add up."""
    logged: dict[str, float] = {}
    for m in MODEL_LOAD_RE.finditer(log):
        logged["model_load"] = float(m.group(1))
    if "model_load" not in logged:  # vLLM-Ascend (and vLLM's CPU runner) log only the loader's line
        for m in WEIGHTS_LOAD_RE.finditer(log):
            logged["model_load"] = float(m.group(1))
    compile_s = None
    for m in COMPILE_RE.finditer(log):
        compile_s = float(m.group(1))
    for m in ENGINE_INIT_RE.finditer(log):
        logged["kv_cache_and_warmup"] = float(m.group(1))
        if m.group(2) is not None:  # the engine's own sum of its compilations wins over the monitor's line
            compile_s = float(m.group(2))
    if compile_s is not None:
        logged["compile"] = compile_s
        if "kv_cache_and_warmup" in logged:
            logged["kv_cache_and_warmup"] = max(0.0, logged["kv_cache_and_warmup"] - compile_s)
    return {k: round(logged[k], 2) for k in ("model_load", "kv_cache_and_warmup", "compile") if k in logged}


def first_seen(log: str, own_pid: int) -> dict[int, float]:
    """{pid: seconds after the log's first timed line} at which each other process first logged."""
    first: dict[int, float] = {}
    t0: Optional[float] = None
    for line in log.splitlines():
        m = _LINE_RE.match(line)
        if not m:
            continue
        t = _dt.datetime.strptime(m.group(1), "%m-%d %H:%M:%S").timestamp() + int(m.group(2)) / 1000
        t0 = t if t0 is None else t0
        pid = int(m.group(3))
        if pid != own_pid and pid not in first:
            first[pid] = round(t - t0, 2)
    return first


def phases(*, import_s: float, config_s: float, engine_s: float, log: str, own_pid: int, mode: str) -> dict[str, float]:
    """Seconds of each phase of one start, in order: `import` (vLLM into this process; 0 when already there),
    `config` (engine arguments: the model directory's checks, the tokenizer), then inside `vllm.LLM(...)`:
    multiprocess only, `engine_core_process` (until the engine core process logged its first line: its spawn
    and import of vLLM) and `worker_process` (from there until the worker's first line: the same for the
    worker); `model_load`, `kv_cache_and_warmup` (profile, KV cache, warm-up) and `compile` as the engine
    logged them (logged_phases); `other` (the rest of LLM(): engine configuration, tokenizer, processor)."""
    out = {"import": round(import_s, 2), "config": round(config_s, 2)}
    seen = sorted(first_seen(log, own_pid).values()) if mode == MULTIPROCESS else []
    if seen:  # vLLM's processes start one after another: the engine core, then it spawns the worker(s)
        out["engine_core_process"] = seen[0]
        if len(seen) > 1:
            out["worker_process"] = round(seen[-1] - seen[0], 2)
    out.update(logged_phases(log))
    inside = sum(v for k, v in out.items() if k not in ("import", "config"))
    out["other"] = round(max(0.0, engine_s - inside), 2)
    return out


def server_process(line: str) -> Optional[str]:
    """Which of a `vllm serve`'s processes wrote a log line: "api_server", "engine_core", "worker"; None for a
    line without vLLM's process prefix (a print, a warning from a library, a progress bar)."""
    m = SERVER_LINE_RE.match(line)
    if not m:
        return None
    name = m.group(1)
    if name.startswith("APIServer"):
        return "api_server"
    if name.startswith("EngineCore"):
        return "engine_core"
    return "worker" if "Worker" in name else None


def server_phases(lines: Sequence[tuple[float, str]], healthy_s: float) -> dict[str, float]:
    """Seconds of each phase of one `vllm serve` start, in order, from its log: `lines` are (seconds after the
    launch at which the launcher read the line, the line) and `healthy_s` the seconds to the first /health 200.

    `api_server_process` (launch until the API server's first line: its spawn, import of vLLM, arguments),
    `engine_core_process` (until the engine core's first line: the API server's engine configuration, the core's
    spawn and import of vLLM), `worker_process` (until the worker's first line: the same for the worker);
    `model_load`, `kv_cache_and_warmup`, `compile` as the engine logged them (logged_phases, as for an offline
    start); `other` (the rest until the engine reported itself initialised); `to_healthy` (from there until
    /health answered: the API server's own set-up and the HTTP server's start). A process or line that never
    appears leaves its phase out and its seconds in the next one."""
    first: dict[str, float] = {}
    ready: Optional[float] = None
    for t, line in lines:
        proc = server_process(line)
        if proc and proc not in first:
            first[proc] = t
        if ready is None and ENGINE_INIT_RE.search(line):
            ready = t
    out: dict[str, float] = {}
    before = 0.0
    for key, proc in (("api_server_process", "api_server"), ("engine_core_process", "engine_core"),
                      ("worker_process", "worker")):
        t = first.get(proc)
        if t is not None and t >= before:
            out[key] = round(t - before, 2)
            before = t
    logged = logged_phases("\n".join(line for _, line in lines))
    out.update(logged)
    end = min(ready, healthy_s) if ready is not None else healthy_s
    out["other"] = round(max(0.0, end - before - sum(logged.values())), 2)
    if ready is not None:
        out["to_healthy"] = round(max(0.0, healthy_s - end), 2)
    return out
