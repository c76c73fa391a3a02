"""Probes of a running vLLM OpenAI server through the `openai` client, and the deployment guide.

    client = serving.client(srv)
    r = serving.probe_models(client, srv)              # each probe returns a ProbeResult (JSON-ready)
    r = serving.probe_completion(client, srv, ids)     # prompt as token ids: no tokenizer in between
    ...
    guide = serving.deployment_guide(srv, params, probe_prompt, answer)

Every probe catches its own error and records it (`ok` false, `error` one line); if the server process
died meanwhile, `ServerError` is raised instead so that the chapter fails with the log tail.
"""
from __future__ import annotations

import json
import shlex
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any, Optional, Sequence

from bitcpm_validation.engine.offline import engine_kwargs, one_line
from bitcpm_validation.params import Params
from bitcpm_validation.engine.server import Server, ServerError


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
        return ProbeResult(pid, False, round(time.monotonic() - t0, 3), {}, one_line(err))


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


def complete(cl, srv: Server, prompt: str | Sequence[int], max_tokens: int) -> dict[str, Any]:
    """One greedy /v1/completions request; prompt as text or token ids. Returns text, ids, reason, usage."""
    r = cl.completions.create(model=srv.model, prompt=prompt if isinstance(prompt, str) else list(prompt),
                              max_tokens=max_tokens, temperature=0.0, extra_body={"return_token_ids": True})
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
                return {"ok": False, "error": one_line(err)}

        t0 = time.monotonic()
        with ThreadPoolExecutor(max_workers=len(prompts)) as ex:
            outs = list(ex.map(one, prompts))
        wall = time.monotonic() - t0
        answered = sum(o["ok"] for o in outs)
        toks = sum(o.get("tokens", 0) for o in outs)
        return answered == len(prompts), {"requests": len(prompts), "answered": answered, "wall_s": round(wall, 3),
                                          "output_tokens": toks, "results": outs}

    return _run("concurrent", srv, fn)


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
# deployment guide


def deployment_guide(srv: Server, params: Params, user_prompt: str, max_tokens: int) -> dict[str, str]:
    """Commands that just worked on this host, with this run's values (shell / curl / Python)."""
    base = srv.base_url
    serve = srv.command or "(external deployment: started outside this report)"
    body = json.dumps({"model": srv.model, "messages": [{"role": "user", "content": user_prompt}],
                       "max_tokens": max_tokens, "temperature": 0}, ensure_ascii=False)
    curl = (f"curl {base}/chat/completions \\\n  -H \"Content-Type: application/json\" \\\n"
            f"  -d {shlex.quote(body)}")
    python = (
        "from openai import OpenAI\n\n"
        f"client = OpenAI(base_url={base!r}, api_key=\"EMPTY\")\n"
        "r = client.chat.completions.create(\n"
        f"    model={srv.model!r},\n"
        f"    messages=[{{\"role\": \"user\", \"content\": {user_prompt!r}}}],\n"
        f"    max_tokens={max_tokens}, temperature=0,\n"
        ")\n"
        "print(r.choices[0].message.content)\n")
    try:
        kw = engine_kwargs(params, "real", **({"tokenizer": srv.tokenizer} if srv.tokenizer else {}))
        kw_s = ",\n    ".join(f"{k}={v!r}" for k, v in kw.items() if k != "load_format" or v != "auto")
        offline = ("from vllm import LLM, SamplingParams\n\n"
                   f"llm = LLM(\n    {kw_s},\n)\n"
                   f"out = llm.generate([{user_prompt!r}], SamplingParams(temperature=0, max_tokens={max_tokens}))\n"
                   "print(out[0].outputs[0].text)\n")
    except Exception as err:
        offline = f"# offline engine arguments unavailable: {one_line(err)}\n"
    env = " ".join(f"{k}={v}" for k, v in sorted(srv.env.items()))
    why = ""
    if srv.tokenizer:  # the override is in effect (prompting.engine_tokenizer): say why, in the guide itself
        why = (f"# --tokenizer {srv.tokenizer}: the model's own tokenizer_config.json (its tokenizer_class) "
               "makes transformers rebuild the tokenizer (a spurious leading '▁', no longer SentencePiece's ids), "
               "so chat prompts would be mis-tokenized; this directory holds the same tokenizer.json, loaded as is "
               "(write it with bitcpm_validation.model.tokenizer.write_faithful_tokenizer_dir).\n")
    return {"serve": why + (env + " \\\n" if env else "") + serve.replace(" --", " \\\n  --"), "curl": curl,
            "python": python, "offline": offline}
