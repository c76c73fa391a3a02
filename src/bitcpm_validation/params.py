"""Run parameters: one schema for every params/<profile>.yaml, validated once, with one-line errors.

A profile is a YAML mapping; every key is declared below (unknown keys are refused so that a typo
never silently falls back to a default). Relative paths are resolved against the project root.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Literal, Optional

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, computed_field, field_validator, model_validator

from bitcpm_validation.model.weights_kind import WEIGHTS_KEY, weights_kind
from bitcpm_validation.paths import PROJECT_ROOT, parse_hub_id


class ParamsError(ValueError):
    """A params or prompts file is wrong; the message is one line naming the file, key and fix."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ModelSourceRecord(_Section):
    """Where a hub model was resolved from (written by the run into its saved params.yaml; not set by hand)."""
    hub: Literal["huggingface", "modelscope"]
    repo_id: str
    revision: Optional[str] = None
    commit: Optional[str] = None


class ModelParams(_Section):
    path: str = Field(description="a local model directory (HF layout), or a hub id with an optional revision: "
                                  "openbmb/BitCPM4-0.5B or openbmb/BitCPM4-0.5B@<commit or tag> (resolved once per run)")
    hub: Literal["auto", "huggingface", "modelscope"] = Field(
        "auto", description="where a hub id is fetched from; auto: modelscope when VLLM_USE_MODELSCOPE is true, as vLLM")
    name: str = Field(description="label and served model name; default: the hub id, or the directory's name")
    dummy_config: Optional[str] = Field(
        "models/bitcpm4-0.5b", description="directory with the full-size architecture (config + tokenizer, no weights)"
    )
    full_shape_weights: Literal["synthetic", "dummy"] = Field(
        "synthetic", description="how the full-size architecture (dummy_config) is loaded where it runs (the loading "
                                 "chapter; performance without real weights): synthetic = a seeded ternary checkpoint "
                                 "at its shape, written once into a cache, read by vLLM's loader; dummy = vLLM's "
                                 "load_format=dummy (random values, no weight file read)")
    source: Optional[ModelSourceRecord] = Field(None, description="set by the run when `path` was a hub id")

    @property
    def weights_kind(self) -> str:
        """stand-in | synthetic | real, as the model directory declares it (model.weights_kind), never the profile."""
        return weights_kind(_project_path(self.path))

    @computed_field  # type: ignore[prop-decorator]  (saved into the run's params.yaml: what the directory declared)
    @property
    def is_stand_in(self) -> bool:
        """Whether `path` is the project's trained stand-in (not BitCPM4): read from the model directory."""
        return self.weights_kind == "stand-in"

    @model_validator(mode="before")
    @classmethod
    def _default_name(cls, data: object) -> object:
        if isinstance(data, dict) and not data.get("name") and isinstance(data.get("path"), str):
            path = data["path"]
            local = Path(path).expanduser()
            hub_id = None if (local if local.is_absolute() else PROJECT_ROOT / local).is_dir() else parse_hub_id(path)
            data = {**data, "name": hub_id[0] if hub_id else (local.name or path)}
        return data


def _project_path(path: str) -> Path:
    p = Path(path).expanduser()
    return p if p.is_absolute() else PROJECT_ROOT / p


def _drop_stand_in_claim(data: object) -> object:
    """`model.is_stand_in` is no longer read from a profile: the model directory says what its weights are. A value
    that agrees with the directory (older profiles, the params.yaml a run saves) is dropped; one that contradicts
    it is an error, since it would have labelled the report wrongly."""
    model = data.get("model") if isinstance(data, dict) else None
    if not isinstance(model, dict) or "is_stand_in" not in model:
        return data
    claim, path = model["is_stand_in"], model.get("path")
    kind = weights_kind(_project_path(path)) if isinstance(path, str) else "real"
    if bool(claim) != (kind == "stand-in"):
        raise ValueError(f"key 'model.is_stand_in' ({claim}) is no longer read and contradicts the model directory "
                         f"{path} (its config.json {WEIGHTS_KEY}: {kind}): remove the key; what the weights are is "
                         f"read from the directory")
    return {**data, "model": {k: v for k, v in model.items() if k != "is_stand_in"}}


class EngineParams(_Section):
    dtype: Literal["bfloat16", "float16", "float32", "auto"] = Field(
        "auto", description="auto: on a CPU bfloat16 where it has AVX-512 BF16 or AMX, float32 otherwise "
                            "(engine.hostcpu); on CUDA / NPU the model's own dtype (vLLM's auto)")
    cpu_threads_bind: str = Field(
        "auto", description="CPU builds: auto = the engine's threads on every usable core (VLLM_CPU_OMP_THREADS_BIND); "
                            "vllm = vLLM's default (reserves a core for its front end); nobind; or a CPU list such as 0-3")
    max_model_len: int = Field(2048, ge=16)
    enforce_eager: bool = True

    @field_validator("cpu_threads_bind")
    @classmethod
    def _cpu_list(cls, v: str) -> str:
        if not re.fullmatch(r"auto|vllm|nobind|\d+(-\d+)?(,\d+(-\d+)?)*", v):
            raise ValueError("use auto, vllm, nobind or a CPU list such as 0-3 or 0,2")
        return v
    gpu_memory_utilization: float = Field(0.5, gt=0, le=1)
    cpu_kvcache_space_gib: int = Field(1, ge=1, description="VLLM_CPU_KVCACHE_SPACE (whole GiB) on CPU builds")
    max_num_seqs: int = Field(8, ge=1)
    tensor_parallel_size: int = Field(1, ge=1)
    seed: int = 0
    max_num_batched_tokens: Optional[int] = Field(
        None, ge=1, description="tokens the scheduler computes per step (vLLM's max_num_batched_tokens); a prompt "
                                "longer than this is prefilled in chunks (chunked prefill). null: vLLM's default "
                                "(4,096 offline / 2,048 served on CPU, no prompt of a default run is chunked); the "
                                "precision chapter compares the chunked positions with the golden")
    tokenizer_override: Literal["auto", "off"] = Field(
        "auto",
        description="auto: where the model directory's engine tokenizer (AutoTokenizer, as vLLM loads it) encodes "
                    "differently from its SentencePiece model, write a faithful tokenizer directory into the run "
                    "(artifacts/faithful-tokenizer: tokenizer.json loaded as is, tokenizer_class PreTrainedTokenizerFast) "
                    "and give it to the engine and the server as `tokenizer` / `--tokenizer`; off: always use the "
                    "model directory's own tokenizer")


class InferenceParams(_Section):
    max_tokens: int = Field(64, ge=1)


class DeterminismParams(_Section):
    prompts: int = Field(5, ge=1, description="how many probe prompts to repeat")
    runs: int = Field(2, ge=2, description="repetitions of each prompt in one engine")
    restart: bool = Field(True, description="compare against a second engine start")
    batch: bool = Field(True, description="compare each prompt alone vs inside a batch")
    max_tokens: int = Field(64, ge=1)


class ChineseParams(_Section):
    max_tokens: int = Field(64, ge=1)
    min_cjk_share: float = Field(0.3, ge=0, le=1, description="CJK ideographs / letters+digits; below: the answer is not really Chinese")
    min_distinct_2: float = Field(0.5, ge=0, le=1, description="distinct character bigrams / all bigrams; below: repetition is severe")
    max_repeat_share: float = Field(
        0.5, ge=0, le=1,
        description="share of the output taken by the repeats of its longest repeated span (>= 4 chars; "
                    "span length x non-overlapping occurrences / length); above: severe (see bitcpm_validation.chapters.chinese)")


class PrecisionParams(_Section):
    top_k: int = Field(5, ge=1, le=20)
    top_k_long: int = Field(20, ge=1, le=100, description="top-k rows of the long and feature families (whole-"
                                                           "vocabulary rows only for the short ones)")
    long_lengths: list[int] = Field(
        default_factory=lambda: [256, 1024, -1],
        description="prompt lengths (tokens) of the long family; -1: max_model_len - max_new_tokens; lengths above "
                    "that are dropped")
    block_boundaries: bool = Field(True, description="also prompts of block size - 1, block size, block size + 1 "
                                                     "tokens (the engine's KV block size)")
    family_prompts: int = Field(2, ge=1, description="prompts per short family (zh, chat)")
    features: bool = Field(True, description="chunked prefill, prefix caching and a mixed-length batch")
    full_shape: bool = Field(
        True, description="where model.path is smaller than model.dummy_config (the stand-in), also compare a synthetic "
                          "checkpoint at the full shape (model.synthetic: seeded ternary weights, cached) with the fp32 "
                          "reference: one engine start, in place of the float32 engine")
    full_shape_long: int = Field(1024, ge=2, description="tokens of the full-shape comparison's long prompt")
    tie_margin: dict[str, float] = Field(
        default_factory=lambda: {"bfloat16": 0.05, "float16": 0.01, "float32": 0.001},
        description="per engine dtype, nats: where the golden's top-1 margin (top-1 minus top-2 logprob) is below "
                    "this rounding noise a top-1 flip is a tie, not a disagreement")
    min_decisive_share: float = Field(
        0.5, ge=0, le=1, description="a comparison counts only if at least this share of its positions are "
                                     "decisive (margin ≥ tie_margin): flat logits cannot pass")
    max_new_tokens: int = Field(32, ge=1)
    prompts: int = Field(5, ge=1)
    min_top1_agreement: float = Field(0.95, ge=0, le=1)
    max_mean_abs_dlogprob: float = Field(0.05, ge=0)
    max_kl: float = Field(0.05, ge=0)
    float32_max_abs_dlogprob: float = Field(
        1e-3, ge=0, description="two float32 implementations (transformers vs reference, the float32 engine): "
                                "largest |Δ logprob| allowed")
    baselines: list[str] = Field(default_factory=list, description="earlier run dirs to compare against")
    engine_float32: bool = Field(
        True, description="stand-in only: also run the engine in float32 (one more engine start) to separate "
                          "BF16 rounding from implementation differences")


class QuantizationParams(_Section):
    group_sizes: list[int] = Field(default_factory=lambda: [32, 64, 128, 256])
    assumed_group_size: int = Field(
        32, ge=1, description="scale group assumed for the analytic full-0.5B sizes (BitCPM-CANN: group 32 on 0.5B)")


class DeviceThresholds(_Section):
    """One threshold per device kind (percent)."""
    cpu: float = Field(ge=0, le=100)
    cuda: float = Field(ge=0, le=100)
    npu: float = Field(ge=0, le=100)

    def of(self, device: str) -> float:
        return getattr(self, device if device in ("cpu", "cuda", "npu") else "cpu")


class PerformanceParams(_Section):
    model: Literal["synthetic", "dummy", "real"] = Field(
        "synthetic", description="synthetic: the full shape with the seeded ternary checkpoint (model.synthetic); dummy: "
                                 "the full shape with load_format=dummy; real: model.path's weights (where it has none: "
                                 "the full shape as model.full_shape_weights says)")
    input_len: int = Field(128, ge=1)
    output_len: int = Field(32, ge=1)
    num_iters: int = Field(3, ge=1)
    num_iters_warmup: int = Field(1, ge=0, description="warm-up requests before the measured ones (0: the figures "
                                                       "are not comparable)")
    concurrency: list[int] = Field(default_factory=lambda: [1, 2, 4])  # three levels: a curve, not two points
    num_prompts: int = Field(8, ge=1, description="requests per concurrency level: at least this and two rounds")
    throughput: bool = Field(False, description="also run `vllm bench throughput` (one more engine start)")
    bandwidth_mib: int = Field(512, ge=16, description="buffer size of the memory-bandwidth copy test")
    matmul_size: int = Field(2048, ge=64, description="n of the n x n matmul that measures the device's FLOP/s")
    timeout_s: float = Field(1800, gt=0, description="limit for each benchmark process")
    # Thresholds are % of what a healthy device reaches for this model (a baseline run, the reference registered
    # for the device, else the overhead floor measured in the run), not of a physical roof: batch-1 decode of a
    # 0.5B model in eager mode is bound by launches, and the original document's 85 tok/s on a 910B3 is ~5 % of
    # its bandwidth roof. Calibrated so that figure passes on a 910B3 (tests/chapters/test_performance.py).
    decode_pct_warn: DeviceThresholds = Field(
        DeviceThresholds(cpu=50, cuda=70, npu=70),
        description="batch-1 decode below this % of what the device reaches for this model is a warning (per device)")
    decode_pct_fail: DeviceThresholds = Field(
        DeviceThresholds(cpu=20, cuda=35, npu=35), description="... and below this % a failure")
    prefill_pct_warn: DeviceThresholds = Field(
        DeviceThresholds(cpu=40, cuda=40, npu=40),
        description="prefill below this % of what the device reaches (overhead floor + the prompt's FLOPs at the "
                    "measured matmul rate) is a warning")
    prefill_pct_fail: DeviceThresholds = Field(
        DeviceThresholds(cpu=10, cuda=10, npu=10), description="... and below this % a failure")
    busy_cores: float = Field(0.25, ge=0, description="the host is busy (figures not comparable) when processes "
                                                      "outside the run used more than this many cores on average")
    max_steal_share: float = Field(0.05, ge=0, le=1, description="... or the hypervisor stole more than this share "
                                                                 "of the CPU time")
    min_samples: int = Field(8, ge=1, description="requests behind each percentile at concurrency 1 below this: not "
                                                  "comparable")
    floor_tokens: int = Field(16, ge=2, description="tokens of the step-floor requests on the shared server")
    references: str = Field("params/performance-references.yaml",
                            description="what healthy devices reached for this model, by device (a registered basis)")
    baseline: Optional[str] = Field(None, description="an earlier run (runs/<id>) on the same device: its batch-1 "
                                                      "decode is the basis")
    min_concurrency_gain: float = Field(
        1.2, ge=1, description="output tok/s at the highest concurrency / at concurrency 1 below this: a warning "
                               "(below 1: a failure, batching makes it slower)")
    base_model_path: Optional[str] = Field(
        None, description="a non-ternary base model directory (e.g. MiniCPM4-0.5B): measures the original document's "
                          "claim 'slightly faster than the original model' (one more server start)")


class ServingParams(_Section):
    endpoint: Optional[str] = Field(None, description="validate this running deployment instead of starting one")
    host: str = "127.0.0.1"
    port: int = Field(0, ge=0, le=65535, description="0 = pick a free port")
    startup_timeout_s: float = Field(300, gt=0)
    concurrent_requests: int = Field(4, ge=1)
    max_tokens: int = Field(32, ge=1)
    greedy_prompts: int = Field(3, ge=1, description="prompts compared token by token: server vs offline engine")


class TaskSettings(_Section):
    """One lm-eval task's settings (accuracy.settings.<task>); unset keys take accuracy's own."""
    num_fewshot: Optional[int] = Field(None, ge=0, description="few-shot examples; default: accuracy.num_fewshot, "
                                       "else the task's own (gsm8k: 5)")
    chat_template: Optional[bool] = Field(None, description="apply the model's chat template (lm-eval apply_chat_template)")
    concurrency: Optional[int] = Field(None, ge=1, description="requests in flight (lm-eval local-completions num_concurrent)")
    theta: Optional[float] = Field(None, gt=0, le=100, description="minimum detectable drop, points")
    alpha: Optional[float] = Field(None, gt=0, lt=0.5, description="false-alarm rate")
    beta: Optional[float] = Field(None, gt=0, lt=0.5, description="miss rate")
    sigma: Optional[float] = Field(None, gt=0, le=100, description="per-item score spread, points; default "
                                   "100*sqrt(p(1-p)) from the reference score, else 50 (p = 0.5, the largest)")
    n: Optional[int] = Field(None, ge=1, description="items to score (default: from theta, alpha, beta, sigma)")
    time_limit_s: Optional[float] = Field(None, gt=0, description="cap n so that the estimated time fits")


class DatasetResolution(_Section):
    """Written by the run into its saved params.yaml (engine.datasets.resolve); not set by hand."""
    datasets: dict[str, dict] = Field(default_factory=dict)
    tasks: dict[str, Optional[str]] = Field(default_factory=dict)


class AccuracyParams(_Section):
    tasks: list[str] = Field(default_factory=lambda: ["bitcpm_probe_mc"])
    num_fewshot: Optional[int] = Field(None, ge=0, description="few-shot examples for every task (overrides each "
                                       "task's own default; accuracy.settings.<task>.num_fewshot overrides this)")
    limit: Optional[int] = Field(None, ge=1, description="at most this many items per task (caps n)")
    rtol: float = Field(0.05, ge=0, description="relative tolerance against published numbers")
    fail_outside_rtol: bool = Field(False, description="a score outside rtol is a failure of the document finding "
                                    "(default: a warning, since OpenCompass and lm-eval prompts differ)")
    theta: float = Field(3.0, gt=0, le=100, description="minimum detectable drop, points (TensorRT-LLM's sizing)")
    alpha: float = Field(0.05, gt=0, lt=0.5, description="false-alarm rate")
    beta: float = Field(0.2, gt=0, lt=0.5, description="miss rate")
    chat_template: bool = Field(False, description="apply the model's chat template (base-model benchmarks: off)")
    concurrency: int = Field(1, ge=1, description="requests in flight (lm-eval local-completions num_concurrent)")
    seed: int = Field(0, description="seed of the stratified item choice and of lm-eval")
    settings: dict[str, TaskSettings] = Field(default_factory=dict, description="per-task settings, by task name")
    baseline: Optional[str] = Field(None, description="a run directory (runs/<id>) whose per-item results are "
                                    "paired with this run's on the same items")
    references: Optional[str] = Field("params/accuracy-references.yaml",
                                      description="reference registry (unpaired threshold test)")
    datasets: dict[str, str] = Field(default_factory=dict, description="pinned dataset revisions: {hub path: commit}")
    resolved: Optional[DatasetResolution] = Field(None, description="set by the run: dataset commits it reads")

    @model_validator(mode="after")
    def _settings_name_tasks(self) -> "AccuracyParams":
        unknown = sorted(set(self.settings) - set(self.tasks))
        if unknown:
            raise ValueError(f"accuracy.settings names {', '.join(unknown)}, not in accuracy.tasks "
                             f"({', '.join(self.tasks)}): add the task or remove its settings")
        return self

    def for_task(self, task: str) -> dict:
        """The effective settings of one task (its own, else accuracy's)."""
        own = self.settings.get(task, TaskSettings())
        pick = lambda k: getattr(own, k) if getattr(own, k) is not None else getattr(self, k, None)  # noqa: E731
        return {"num_fewshot": pick("num_fewshot"), "chat_template": pick("chat_template"),
                "concurrency": pick("concurrency"), "theta": pick("theta"), "alpha": pick("alpha"),
                "beta": pick("beta"), "sigma": own.sigma, "n": own.n, "time_limit_s": own.time_limit_s,
                "limit": self.limit}


class Params(_Section):
    profile: str = Field(description="profile name shown in the report")
    lang: Literal["zh", "en", "both"] = "both"
    platform: Literal["auto", "cpu", "cuda", "npu"] = Field(
        "auto", description="device the report must run on; auto accepts whatever is detected"
    )
    trust_remote_code: bool = Field(
        True, description="let the engine execute the model directory's Python files (the report lists them)"
    )
    chapters: list[str] = Field(default_factory=lambda: ["all"], description="chapter ids or names, or [all]")
    prompts: str = "params/prompts.yaml"
    model: ModelParams
    engine: EngineParams = EngineParams()
    inference: InferenceParams = InferenceParams()
    determinism: DeterminismParams = DeterminismParams()
    chinese: ChineseParams = ChineseParams()
    precision: PrecisionParams = PrecisionParams()
    quantization: QuantizationParams = QuantizationParams()
    performance: PerformanceParams = PerformanceParams()
    serving: ServingParams = ServingParams()
    accuracy: AccuracyParams = AccuracyParams()

    # The file this came from (set by load_params, not by the YAML).
    source: Optional[str] = Field(None, exclude=True)

    @model_validator(mode="before")
    @classmethod
    def _stand_in_from_directory(cls, data: object) -> object:
        return _drop_stand_in_claim(data)

    @model_validator(mode="after")
    def _context_fits(self) -> "Params":
        if self.inference.max_tokens >= self.engine.max_model_len:
            raise ValueError(
                f"inference.max_tokens ({self.inference.max_tokens}) must be below engine.max_model_len "
                f"({self.engine.max_model_len})"
            )
        return self

    def with_model(self, path: str) -> "Params":
        """These params with another model.path (the command line's --model / MODEL=), validated again."""
        data = self.model_dump(mode="json", exclude={"source"})
        # what the weights are belongs to the directory (model.is_stand_in is read from it)
        data["model"] = {k: v for k, v in data["model"].items() if k not in ("path", "name", "source", "is_stand_in")} | {
            "path": path}
        try:
            return Params.model_validate(data).model_copy(update={"source": self.source})
        except ValidationError as e:
            raise ParamsError(_one_line(e, "--model")) from None

    def to_yaml(self) -> str:
        """The params as a YAML profile (what a run saves as its params.yaml)."""
        return yaml.safe_dump(self.model_dump(mode="json", exclude={"source"}), allow_unicode=True, sort_keys=False)

    def resolve(self, path: str | Path) -> Path:
        """A params path, relative to the project root unless absolute."""
        p = Path(path).expanduser()
        return p if p.is_absolute() else PROJECT_ROOT / p

    @property
    def model_path(self) -> Path:
        return self.resolve(self.model.path)

    @property
    def dummy_config_path(self) -> Optional[Path]:
        return self.resolve(self.model.dummy_config) if self.model.dummy_config else None

    @property
    def prompts_path(self) -> Path:
        return self.resolve(self.prompts)


# ---------------------------------------------------------------------------------------------
# Probe prompts


class Expectation(_Section):
    """How a probe's output is graded (bitcpm_validation.chapters.inference.judge_probe).

    Every output must first be language (PromptSet.grading: recognised words, sentence form, no degenerate
    loop), else the probe fails. Then every task condition given here must hold, else the probe gets
    `on_miss`."""

    answer: list[str] = Field(default_factory=list, description=(
        "accepted answers: one must appear as a whole word in the answer position (the first sentence or line, "
        "or the option an 'Answer: X' line picks), not merely somewhere in the text"))
    language: Optional[Literal["en", "zh"]] = Field(None, description=(
        "the language the output must be in: at least grading.min_language_share of its letters"))
    no_repetition: bool = Field(False, description=(
        "no severe repetition: character distinct-2 >= grading.min_distinct_2 and the longest repeated span "
        "covers <= grading.max_repeat_share (bitcpm_validation.chapters.chinese metrics)"))
    min_words: int = Field(0, ge=0, description="at least this many words (a CJK character counts as one)")
    min_lines: int = Field(0, ge=0, description="at least this many non-empty lines (a poem has lines)")
    contains_any: list[str] = Field(default_factory=list, description="pass if any of these appears")
    contains_all: list[str] = Field(default_factory=list)
    not_contains: list[str] = Field(default_factory=list)
    min_cjk_share: Optional[float] = Field(None, ge=0, le=1)
    min_chars: int = Field(1, ge=0, description="a non-empty answer at least this long")
    on_miss: Literal["fail", "warn"] = Field("fail", description=(
        "status when the output is language but a task condition above does not hold"))
    note_en: str = ""
    note_zh: str = ""


class GradingCriteria(_Section):
    """When a model output counts as language at all (noise fails), for every probe (prompts.yaml `grading:`)."""

    min_recognized_share: float = Field(0.8, ge=0, le=1, description=(
        "letters and digits inside recognised words / all letters, digits and symbols (wordfreq: a Latin-script "
        "word with Zipf frequency >= min_zipf_word in its language, a CJK word of 2+ characters with Zipf >= "
        "min_zipf_word, a single CJK character with Zipf >= min_zipf_cjk_char)"))
    min_zipf_word: float = Field(2.5, ge=0, le=8, description="Zipf frequency a word needs to count as recognised")
    min_zipf_cjk_char: float = Field(5.0, ge=0, le=8, description="Zipf frequency a single CJK character needs")
    min_sentence_case_share: float = Field(0.6, ge=0, le=1, description=(
        "Latin-script outputs: sentences (split at . ! ?) whose first letter is a capital (or that start with a "
        "digit) / all sentences; below: words without sentence structure (e.g. shuffled)"))
    max_compression_ratio: float = Field(6.0, gt=1, description=(
        "UTF-8 bytes / zlib-compressed bytes of the output; above: a degenerate loop of one short unit (as in "
        "Whisper's compression_ratio_threshold; ordinary 64-token text is below 2.5)"))
    min_distinct_2: float = Field(0.5, ge=0, le=1, description="for `expect.no_repetition`: distinct character bigrams / all")
    max_repeat_share: float = Field(0.5, ge=0, le=1, description=(
        "for `expect.no_repetition`: share of the output taken by its longest repeated span (>= 4 characters)"))
    min_language_share: float = Field(0.5, ge=0, le=1, description=(
        "for `expect.language`: share of the output's letters that lingua assigns to that language"))
    languages: list[str] = Field(["en", "zh", "fr", "de", "es", "it", "pt", "nl", "ja", "ko", "ru"], min_length=2,
                                 description="ISO 639-1 codes lingua chooses among (Latin words are looked up in "
                                             "wordfreq for the language lingua detects)")


class Prompt(_Section):
    id: str
    lang: Literal["en", "zh"]
    kind: str = Field(description="task kind, e.g. knowledge, math, poem, intro, translation, chat")
    prompt: str
    chat: bool = Field(False, description="send through the chat template instead of as a raw completion")
    expect: Expectation = Expectation()
    from_original: bool = Field(False, description="one of the original validation document's prompts")


class PromptSet(_Section):
    prompts: list[Prompt]
    grading: GradingCriteria = GradingCriteria()
    source: Optional[str] = Field(None, exclude=True)

    @model_validator(mode="after")
    def _unique_ids(self) -> "PromptSet":
        seen: set[str] = set()
        for p in self.prompts:
            if p.id in seen:
                raise ValueError(f"prompt id {p.id!r} appears twice")
            seen.add(p.id)
        return self

    def by_lang(self, lang: str) -> list[Prompt]:
        return [p for p in self.prompts if p.lang == lang]


# ---------------------------------------------------------------------------------------------
# Loading


def _one_line(err: ValidationError, source: str) -> str:
    first = err.errors()[0]
    key = ".".join(str(x) for x in first["loc"]) or "(top level)"
    kind = first["type"]
    if kind == "extra_forbidden":
        return f"{source}: unknown key '{key}': remove it or fix its spelling (see params/default.yaml for every key)"
    if kind == "missing":
        return f"{source}: missing key '{key}': add it (see params/default.yaml)"
    more = f" (and {len(err.errors()) - 1} more)" if len(err.errors()) > 1 else ""
    if not first["loc"]:  # a cross-field rule: its message names the keys, the input is the whole file
        return f"{source}: {first['msg'].removeprefix('Value error, ')}{more}"
    got = first.get("input")
    got_s = repr(got)
    if len(got_s) > 60:
        got_s = got_s[:57] + "..."
    return f"{source}: key '{key}': {first['msg']}, got {got_s}{more}"


def _read_yaml(path: Path, what: str) -> dict:
    if not path.is_file():
        raise ParamsError(f"{path}: {what} file not found: pass an existing file (e.g. PARAMS=params/default.yaml)")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        raise ParamsError(f"{path}:{where} is not valid YAML ({getattr(e, 'problem', e)}): fix the syntax") from None
    if not isinstance(data, dict):
        raise ParamsError(f"{path}: expected a YAML mapping of keys at the top level, got {type(data).__name__}")
    return data


def _validated(model: type[BaseModel], path: str | Path, what: str) -> BaseModel:
    """A YAML file (relative to the cwd, else the project root) validated into `model`, with `source` set."""
    p = Path(path)
    if not p.is_absolute() and not p.exists():
        p = PROJECT_ROOT / p
    data = _read_yaml(p, what)
    try:
        return model.model_validate(data).model_copy(update={"source": str(p)})
    except ValidationError as e:
        raise ParamsError(_one_line(e, str(path))) from None
    except ValueError as e:  # model_validator errors surface here in some pydantic versions
        raise ParamsError(f"{path}: {e}") from None


def load_params(path: str | Path) -> Params:
    """Read and validate a params profile. Raises ParamsError with a one-line message."""
    params = _validated(Params, path, "params")
    if not params.prompts_path.is_file():
        raise ParamsError(f"{path}: key 'prompts': file {params.prompts} not found: point it at a prompts YAML")
    return params


def load_prompts(path: str | Path) -> PromptSet:
    return _validated(PromptSet, path, "prompts")
