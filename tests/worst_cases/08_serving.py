"""Worst cases of the serving chapter's checks: server errors, wrong answers, leftovers."""
from bitcpm_validation.chapters import serving as S

_NOT_FOUND = "NotFoundError: Error code: 404 - The model `x` does not exist."

CASES = {
    "models": lambda: S.judge_models(S.ProbeResult("models", False, 0.1, {"models": ["other"], "expected": "x"})),
    "completions": lambda: S.judge_completions(S.ProbeResult("completions", False, 0.1, {}, _NOT_FOUND)),
    "chat": lambda: S.judge_chat(S.ProbeResult("chat", False, 0.1, {"text": "", "token_ids": []})),
    "chat_template": lambda: S.judge_chat_template(S.ProbeResult(
        "chat", True, 0.1, {"text": "x", "prompt_token_ids": [1, 5], "template_matches": False,
                            "template_first_diff": 1})),
    "stream": lambda: S.judge_stream(S.ProbeResult("stream", False, 0.1, {"chunks": 3, "text": "a",
                                                                         "equals_non_streamed": False})),
    "concurrent": lambda: S.judge_concurrent(S.ProbeResult(
        "concurrent", False, 0.1, {"requests": 2, "answered": 1, "wall_s": 1.0, "output_tokens": 4,
                                   "results": [{"ok": True}, {"ok": False, "error": "APIError: 500"}]})),
    "greedy_equal": lambda: S.judge_greedy(S.compare_greedy([[1, 2, 3]], [[1, 2, 4]])),
    "stopped": lambda: S.judge_stopped(1234, 2, [1235]),
}
