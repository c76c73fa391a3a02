"""Worst cases of the serving chapter's checks: the chapter's own probes (chapters.serving.probe_*) run against a
faulty server -- a stand-in for the OpenAI client whose answers carry one fault each (a stream that drops a
token, a chat template one character off, one concurrent request that errors, ...) -- and their results are
judged as in the chapter. What is tested is that the measurement notices the fault, not that False maps to ❌."""
from __future__ import annotations

import threading
from pathlib import Path
from types import SimpleNamespace as NS

from bitcpm_validation.chapters import serving as S

STAND_IN = Path(__file__).resolve().parents[2] / "models" / "stand-in"
TOKENS = [" The", " capital", " of", " France", " is", " Paris", "."]


class FaultyServer:
    """The `srv` the probes get: a served name, and alive (the faults are in the answers, not a dead server)."""

    model = "stand-in"

    def check_alive(self) -> None:
        pass


def _choice(text: str = "", token_ids=None, **extra):
    return NS(text=text, token_ids=token_ids, finish_reason="length", model_extra=extra,
              message=NS(content=text))


class FaultyClient:
    """What `serving.client(srv)` returns, with the fault given by name."""

    def __init__(self, fault: str, served_prompt_ids=None):
        self.fault, self.served_prompt_ids = fault, served_prompt_ids
        self._n = 0
        self._lock = threading.Lock()
        self.models = NS(list=self._models)
        self.completions = NS(create=self._complete)
        self.chat = NS(completions=NS(create=self._chat))

    def _models(self):
        names = ["some-other-model"] if self.fault == "wrong name" else [FaultyServer.model]
        return NS(data=[NS(id=n) for n in names])

    def _complete(self, model, prompt, max_tokens, temperature, stream=False, extra_body=None):
        if self.fault == "unknown model":
            raise RuntimeError(f"NotFoundError: Error code: 404 - The model `{model}` does not exist.")
        with self._lock:
            self._n += 1
            n = self._n
        if self.fault == "one concurrent request errors" and n == 2:
            raise RuntimeError("APIError: Error code: 500 - EngineCore encountered an issue")
        if stream:
            # the stream drops one token: its chunks no longer join to the non-streamed text
            toks = TOKENS[:3] + TOKENS[4:] if self.fault == "stream drops a token" else TOKENS
            return iter([NS(choices=[NS(text=t)]) for t in toks])
        return NS(choices=[_choice("".join(TOKENS), list(range(3, 3 + len(TOKENS))))], usage=None)

    def _chat(self, model, messages, max_tokens, temperature, extra_body=None):
        if self.fault == "empty chat answer":
            return NS(choices=[_choice("", [])], model_extra={}, usage=None)
        return NS(choices=[_choice("Paris.", [9, 10])], model_extra={"prompt_token_ids": self.served_prompt_ids},
                  usage=None)


def _chat_template_one_character_off():
    """The server renders the chat template with one character changed (no newline after 'assistant'); the probe
    compares the ids it built with the project's ChatML encoding (SentencePiece) of the same message."""
    from bitcpm_validation.model import tokenizer as TK

    msgs = [{"role": "user", "content": "你好"}]
    ref = TK.reference_tokenizer(STAND_IN)
    expected = ref.encode(TK.chatml(msgs), add_bos=False)
    served = ref.encode(TK.chatml(msgs).replace("<|im_start|>assistant\n", "<|im_start|>assistant "), add_bos=False)
    cl = FaultyClient("", served_prompt_ids=served)
    return S.judge_chat_template(S.probe_chat(cl, FaultyServer(), "你好", 8, expected_prompt_ids=expected))


def _stream_drops_a_token():
    srv = FaultyServer()
    non_streamed = S.complete(FaultyClient(""), srv, [1, 2, 3], 8)["text"]
    return S.judge_stream(S.probe_stream(FaultyClient("stream drops a token"), srv, [1, 2, 3], 8, non_streamed))


CASES = {
    "models": lambda: S.judge_models(S.probe_models(FaultyClient("wrong name"), FaultyServer())),
    "completions": lambda: S.judge_completions(S.probe_completion(FaultyClient("unknown model"), FaultyServer(),
                                                                  [1, 2, 3], 8)),
    "chat": lambda: S.judge_chat(S.probe_chat(FaultyClient("empty chat answer"), FaultyServer(), "你好", 8)),
    "chat_template": _chat_template_one_character_off,
    "stream": _stream_drops_a_token,
    "concurrent": lambda: S.judge_concurrent(S.probe_concurrent(FaultyClient("one concurrent request errors"),
                                                                FaultyServer(), [[1, 2], [3, 4], [5, 6]], 8)),
    "greedy_equal": lambda: S.judge_greedy(S.compare_greedy([[1, 2, 3]], [[1, 2, 4]])),
    "stopped": lambda: S.judge_stopped(1234, 2, [1235]),
}
