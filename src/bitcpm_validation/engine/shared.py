"""The run's shared engine: one `vllm serve` the runner starts, used by every chapter that can share it.

The runner (report.runner) starts the server before the first chapter that needs an engine and writes
where it lives to run_dir/shared-engine.json; `engine.offline.start(...)` (and `server.serving(...)`) in
a chapter kernel read that file and return a client of it when the chapter asks for the same engine
(`which="real"`, no `fresh=True`, no override that changes the engine settings). Without the file
(JupyterLab, a run whose shared server failed) chapters start their own engine as before.
On a CPU the runner also starts the benchmark's full-shape server (`which="synthetic"` or `"dummy"`) beside it,
at the same time, described by shared-engine-<which>.json: the performance chapter uses it instead of starting
its own, and the runner stops it once that chapter is done.

    eng = offline.start(ch.params, ch.evidence_path)     # -> SharedClient when the run has one
    gens = eng.generate([ids], max_tokens=64, logprobs=5, prompt_logprobs=5)
    eng.close()                                          # the server keeps running for the next chapter

The client speaks vLLM's OpenAI completions API with token-id prompts, `return_token_ids`,
`return_tokens_as_token_ids` (top-k keys are token ids, not text) and the `prompt_logprobs` extra param;
a batch is sent as concurrent requests (the server's scheduler batches them as the offline engine does).
"""
from __future__ import annotations

import concurrent.futures
import contextlib
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence

from bitcpm_validation.engine.base import (EngineError, Generation, PromptInput, Which, engine_kwargs, model_facts,
                                           run_dir_of, settings_of, settings_rows)

SHARED_FILE = "shared-engine.json"
SHARED_LOG_NAME = "shared-engine.log"  # in run_dir/evidence/
# Notebook source that starts an engine: the runner starts the shared server before the first such chapter.
ENGINE_MARKERS = ("engine.start(", "offline.start(", "server.serving(", "server.start(", "on_shared_server(")


@dataclass
class SharedInfo:
    """Where the run's shared server lives and how it was started (run_dir/shared-engine.json)."""

    base_url: str                 # http://127.0.0.1:<port>/v1
    pid: int
    model: str                    # served model name
    which: str                    # real
    kwargs: dict[str, Any]        # engine.engine_kwargs of the server (the sharing criterion)
    command: str                  # copy-pasteable `vllm serve ...`
    log: str                      # the server's log (evidence)
    startup_s: float              # process start to /health 200
    platform: str = ""
    env: dict[str, str] = field(default_factory=dict)
    tokenizer_reason: dict[str, str] = field(default_factory=dict)
    kv_cache_tokens: Optional[int] = None
    max_concurrency: Optional[float] = None
    log_facts: dict[str, Any] = field(default_factory=dict)
    started: str = ""
    started_with: str = ""        # the weights of the server the runner started at the same time ("": alone)


def info_path(run_dir: Path, which: str = "real") -> Path:
    """shared-engine.json (the model's own weights), shared-engine-<which>.json (the full shape's)."""
    return Path(run_dir) / (SHARED_FILE if which == "real" else SHARED_FILE.replace(".json", f"-{which}.json"))


def log_path(run_dir: Path, which: str = "real") -> Path:
    name = SHARED_LOG_NAME if which == "real" else SHARED_LOG_NAME.replace(".log", f"-{which}.log")
    return Path(run_dir) / "evidence" / name


def write_info(run_dir: Path, info: SharedInfo) -> None:
    path = info_path(run_dir, info.which)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    tmp.write_text(json.dumps(asdict(info), ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def read_info(run_dir: Path, which: str = "real") -> Optional[SharedInfo]:
    """The run's shared server for these weights, or None (no file, or a file this version cannot read)."""
    try:
        return SharedInfo(**json.loads(info_path(run_dir, which).read_text(encoding="utf-8")))
    except (OSError, ValueError, TypeError):
        return None


def clear(run_dir: Path, which: Optional[str] = None) -> None:
    """Forget the shared server of `which` (None: every one, e.g. a previous invocation's)."""
    paths = [info_path(run_dir, which)] if which else Path(run_dir).glob(SHARED_FILE.replace(".json", "*.json"))
    for path in paths:
        path.unlink(missing_ok=True)


def needs_engine(notebook: Path) -> bool:
    """Whether a chapter notebook starts an engine or a server (its source calls one of ENGINE_MARKERS)."""
    try:
        text = Path(notebook).read_text(encoding="utf-8")
    except OSError:
        return False
    return any(m in text for m in ENGINE_MARKERS)


# Settings that size the engine's memory but do not change what it computes: not a reason to start another.
MEMORY_ONLY = frozenset({"gpu_memory_utilization"})


def normal(kw: dict[str, Any]) -> dict[str, Any]:
    """engine_kwargs as shared-engine.json holds them (a JSON round trip: paths as strings)."""
    return json.loads(json.dumps(kw, sort_keys=True, default=str))


def differences(a: dict[str, Any], b: dict[str, Any]) -> list[str]:
    """Engine settings that differ between two engine_kwargs (after a JSON round trip), as 'key: a -> b'
    (memory-only settings, MEMORY_ONLY, are not differences)."""
    a, b = normal(a), normal(b)
    return [f"{k}: {a.get(k)!r} -> {b.get(k)!r}" for k in sorted(set(a) | set(b))
            if a.get(k) != b.get(k) and k not in MEMORY_ONLY]


def shared_memory_overrides(params: Any, platform: str) -> dict[str, Any]:
    """On an accelerator the shared server must leave room for the run's deliberate fresh engines (each asks
    for engine.gpu_memory_utilization of the device at start, and vLLM refuses to start when that much is not
    free): the shared one takes what is left below 90 %, at most the profile's value, at least 5 %.
    On a CPU (KV cache sized by VLLM_CPU_KVCACHE_SPACE) nothing changes."""
    if platform == "cpu":
        return {}
    u = float(params.engine.gpu_memory_utilization)
    shared_u = round(max(0.05, min(u, 0.9 - u)), 3)
    return {} if shared_u == u else {"gpu_memory_utilization": shared_u}


def alive(info: SharedInfo, timeout: float = 3.0) -> bool:
    import requests

    try:
        return requests.get(info.base_url.removesuffix("/v1") + "/health", timeout=timeout).status_code == 200
    except requests.RequestException:
        return False


def client_for(params: Any, evidence_path: Path, which: Which, overrides: dict[str, Any]
               ) -> tuple[Optional["SharedClient"], str]:
    """(a client of the run's shared server, "") when it can serve this request, else (None, why not).

    why not is "" where the run simply has no shared server (JupyterLab, no runner)."""
    run_dir = run_dir_of(Path(evidence_path))
    info = read_info(run_dir, which)
    if info is None:
        other = read_info(run_dir)
        return None, (f"{which} weights (the shared engine serves {other.which})"
                      if other is not None and other.which != which else "")
    facts = model_facts(params, which, run_dir, tokenizer="tokenizer" not in overrides)
    diff = differences(info.kwargs, engine_kwargs(params, facts, **overrides))
    if diff:
        return None, "settings differ from the shared engine (" + "; ".join(diff) + ")"
    if not alive(info):
        return None, f"the shared engine at {info.base_url} does not answer /health"
    return SharedClient(info, Path(evidence_path)), ""


class SharedClient:
    """The offline Engine's interface, served by the run's shared `vllm serve`."""

    shared = True

    def __init__(self, info: SharedInfo, evidence_path: Path, timeout_s: float = 1800.0):
        import requests

        self.info = info
        self.which: Which = info.which  # type: ignore[assignment]
        self.kwargs = dict(info.kwargs)
        self.platform = info.platform
        self.env = dict(info.env)
        self.evidence_path = Path(evidence_path)
        # the engine this chapter uses started when the shared server did (the runner counted that start)
        self.init_s = info.startup_s
        self.kv_cache_tokens = info.kv_cache_tokens
        self.max_concurrency = info.max_concurrency
        self.log_facts = dict(info.log_facts)
        self.llm = None
        self._timeout = timeout_s
        self._session = requests.Session()
        # one connection per request in flight (a batch is up to 64 concurrent requests; no pool-full warnings)
        self._session.mount("http://", requests.adapters.HTTPAdapter(pool_connections=1, pool_maxsize=64))
        self._tok = None
        self._log_mark = _size(Path(info.log))
        self._closed = False
        self._note(f"=== shared engine: {info.command} (pid {info.pid}, {info.base_url}); "
                   f"its log: {info.log}; the lines of this chapter's requests follow each call\n")

    # -- settings (as Engine) -----------------------------------------------------------------------
    def settings(self) -> dict[str, Any]:
        s = settings_of(self.kwargs, self.platform, self.env)
        s["engine"] = f"shared vllm serve (pid {self.info.pid}, started by the runner)"
        return s

    def settings_rows(self) -> list[list[Any]]:
        return settings_rows(self.settings())

    def tokenizer(self):
        if self._tok is None:
            from transformers import AutoTokenizer

            self._tok = AutoTokenizer.from_pretrained(self.kwargs.get("tokenizer") or self.kwargs["model"],
                                                      trust_remote_code=bool(self.kwargs.get("trust_remote_code")))
        return self._tok

    # -- running ------------------------------------------------------------------------------------
    def generate_ids(self, prompts: Sequence[Sequence[int]], *, max_tokens: int, **kw: Any) -> list[list[int]]:
        return [g.token_ids for g in self.generate(prompts, max_tokens=max_tokens, **kw)]

    def generate(self, prompts: Sequence[PromptInput], *, max_tokens: int, temperature: float = 0.0,
                 logprobs: Optional[int] = None, prompt_logprobs: Optional[int] = None,
                 seed: Optional[int] = None, ignore_eos: bool = False) -> list[Generation]:
        """As Engine.generate: one completion request per prompt, all in flight at once, results in order."""
        if self._closed:
            raise EngineError("this shared-engine client was closed: call engine.start(...) again")
        bodies = [request_body(self.info.model, p, max_tokens=max_tokens, temperature=temperature,
                               logprobs=logprobs, prompt_logprobs=prompt_logprobs, seed=seed,
                               ignore_eos=ignore_eos) for p in prompts]
        if not bodies:
            return []
        workers = min(len(bodies), 64)
        try:
            with concurrent.futures.ThreadPoolExecutor(workers) as pool:
                return list(pool.map(self._post, bodies))
        finally:
            self._copy_log()

    def prompt_logprobs_full(self, prompts: Sequence[Sequence[int]]) -> list[Any]:
        """As Engine.prompt_logprobs_full: per token-id prompt a float32 array [len(prompt) - 1, vocab] of
        teacher-forced log-probabilities over the whole vocabulary (unlisted entries -inf). One request per
        prompt with prompt_logprobs=-1 (the shared server runs with --max-logprobs -1 where engine_kwargs
        sets it); EngineError (one line) when the server refuses."""
        import numpy as np

        vocab = self._vocab_size()
        out = []
        try:
            for p in prompts:
                body = request_body(self.info.model, p, max_tokens=1, prompt_logprobs=-1)
                g = self._post(body)
                rows = np.full((len(p) - 1, vocab), -np.inf, dtype=np.float32)
                for i, d in enumerate((g.prompt_logprobs or [])[1:len(p)]):
                    if d:
                        ids = np.fromiter(d.keys(), dtype=np.int64, count=len(d))
                        rows[i, ids] = np.fromiter(d.values(), dtype=np.float32, count=len(d))
                out.append(rows)
        finally:
            self._copy_log()
        return out

    def chat_prompt_ids(self, messages: list[dict[str, str]]) -> list[int]:
        """The prompt token ids the server's chat path builds for `messages` (its chat template, as
        /v1/chat/completions applies it; `return_token_ids`), from a one-token request."""
        body = {"model": self.info.model, "messages": messages, "max_tokens": 1, "temperature": 0.0,
                "return_token_ids": True}
        try:
            r = self._session.post(self.info.base_url + "/chat/completions", json=body, timeout=self._timeout)
            ids = r.json().get("prompt_token_ids") if r.status_code == 200 else None
        except Exception as err:  # noqa: BLE001  (requests' and JSON errors alike: one line)
            raise EngineError(f"shared engine chat path failed ({type(err).__name__})") from None
        if not ids:
            raise EngineError(f"shared engine chat path answered HTTP {r.status_code} without prompt_token_ids")
        return [int(t) for t in ids]

    def metrics(self) -> dict[str, float]:
        """The server's Prometheus counters and gauges (/metrics), summed over label sets, by sample name
        (e.g. vllm:prefix_cache_hits_total); labels of vllm:cache_config_info as `cache_config.<label>`."""
        from prometheus_client.parser import text_string_to_metric_families

        import requests

        try:
            r = self._session.get(self.info.base_url.removesuffix("/v1") + "/metrics", timeout=10)
        except requests.RequestException as err:
            raise EngineError(f"shared engine /metrics unreachable ({type(err).__name__})") from None
        out: dict[str, float] = {}
        for fam in text_string_to_metric_families(r.text):
            for smp in fam.samples:
                if fam.name == "vllm:cache_config_info":
                    out.update({f"cache_config.{k}": v for k, v in smp.labels.items()})
                    continue
                out[smp.name] = out.get(smp.name, 0.0) + float(smp.value)
        return out

    def _vocab_size(self) -> int:
        cfg = Path(self.kwargs["model"]) / "config.json"
        try:
            return int(json.loads(cfg.read_text(encoding="utf-8"))["vocab_size"])
        except (OSError, ValueError, KeyError, TypeError) as err:
            raise EngineError(f"{cfg}: no vocab_size ({type(err).__name__}): whole-vocabulary rows need it") from None

    def _post(self, body: dict[str, Any]) -> Generation:
        import requests

        url = self.info.base_url + "/completions"
        try:
            r = self._session.post(url, json=body, timeout=self._timeout)
        except requests.RequestException as err:
            raise EngineError(f"shared engine at {url} unreachable ({type(err).__name__}): "
                              f"see {self.info.log}") from None
        if r.status_code != 200:
            try:
                msg = r.json().get("error", {}).get("message") or r.text
            except ValueError:
                msg = r.text
            raise EngineError(f"shared engine answered HTTP {r.status_code}: {' '.join(str(msg).split())[:300]}")
        return parse_completion(r.json())

    # -- evidence -----------------------------------------------------------------------------------
    def _note(self, text: str) -> None:
        with contextlib.suppress(OSError):
            self.evidence_path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.evidence_path, "a", encoding="utf-8") as f:
                f.write(text)

    def _copy_log(self) -> None:
        """Append the shared log's new lines (this chapter's requests) to the chapter's evidence."""
        path = Path(self.info.log)
        with contextlib.suppress(OSError):
            with open(path, "rb") as f:
                f.seek(self._log_mark)
                chunk = f.read()
            self._log_mark += len(chunk)
            if chunk:
                self._note(f"--- {path.name} ---\n" + chunk.decode("utf-8", errors="replace"))

    def close(self) -> None:
        """Detach from the shared server (it keeps running for the next chapter)."""
        if self._closed:
            return
        self._closed = True
        self._copy_log()
        self._session.close()

    def __enter__(self) -> "SharedClient":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def request_body(model: str, prompt: PromptInput, *, max_tokens: int, temperature: float = 0.0,
                 logprobs: Optional[int] = None, prompt_logprobs: Optional[int] = None,
                 seed: Optional[int] = None, ignore_eos: bool = False) -> dict[str, Any]:
    """The /v1/completions body that asks the server what Engine.generate asks vllm.LLM."""
    body: dict[str, Any] = {
        "model": model,
        "prompt": prompt if isinstance(prompt, str) else [int(t) for t in prompt],
        "max_tokens": max_tokens,
        "temperature": temperature,
        "ignore_eos": ignore_eos,
        "return_token_ids": True,
        # the offline engine returns full text and no stop strings; keep the server's output the same
        "skip_special_tokens": True,
    }
    if logprobs is not None:
        body["logprobs"] = logprobs
        body["return_tokens_as_token_ids"] = True
    if prompt_logprobs is not None:
        body["prompt_logprobs"] = prompt_logprobs
    if seed is not None:
        body["seed"] = seed
    return body


def _token_id(key: str) -> int:
    """'token_id:123' (return_tokens_as_token_ids) or '123' (prompt_logprobs keys) -> 123."""
    return int(key.rsplit(":", 1)[-1])


def _lp(v: Any) -> float:
    """A logprob as the offline engine gives it: the server writes -inf as -9999.0 (JSON has no -inf)."""
    v = float(v["logprob"] if isinstance(v, dict) else v)
    return float("-inf") if v <= -9999.0 else v


def parse_completion(resp: dict[str, Any]) -> Generation:
    """A /v1/completions response (one choice) as the offline engine's Generation."""
    try:
        c = resp["choices"][0]
        token_ids = [int(t) for t in c["token_ids"]]
        prompt_ids = [int(t) for t in (c.get("prompt_token_ids") or [])]
    except (KeyError, IndexError, TypeError) as err:
        raise EngineError(f"the shared engine's response has no token ids ({type(err).__name__}: {err}): "
                          f"is it vLLM ≥ 0.10 (return_token_ids)?") from None
    lp = None
    if c.get("logprobs") and c["logprobs"].get("top_logprobs") is not None:
        lp = [None if d is None else {_token_id(k): _lp(v) for k, v in d.items()}
              for d in c["logprobs"]["top_logprobs"]]
    plp = None
    if c.get("prompt_logprobs") is not None:
        plp = [None if d is None else {_token_id(k): _lp(v) for k, v in d.items()}
               for d in c["prompt_logprobs"]]
    details = (resp.get("usage") or {}).get("prompt_tokens_details") or {}  # with --enable-prompt-tokens-details
    cached = details.get("cached_tokens") if isinstance(details, dict) else None
    return Generation(prompt_token_ids=prompt_ids, token_ids=token_ids, text=c.get("text", ""),
                      finish_reason=c.get("finish_reason"), logprobs=lp, prompt_logprobs=plp,
                      num_cached_tokens=int(cached) if cached is not None else None)
