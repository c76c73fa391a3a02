"""The small bilingual corpus written by the project for the stand-in (qa.jsonl + text.txt)."""
from __future__ import annotations

import json
from pathlib import Path

HERE = Path(__file__).parent


def pairs() -> list[tuple[str, str]]:
    """(prompt, completion) pairs; the completion carries its own leading space / newline."""
    out = []
    for line in (HERE / "qa.jsonl").read_text(encoding="utf-8").splitlines():
        if line.strip():
            d = json.loads(line)
            out.append((d["p"], d["a"]))
    return out


def texts() -> list[str]:
    return [l for l in (HERE / "text.txt").read_text(encoding="utf-8").splitlines() if l.strip()]


def tokenizer_lines() -> list[str]:
    """Lines the SentencePiece model is trained on (prompts, answers, texts, ChatML role words)."""
    lines = []
    for p, a in pairs():
        lines += [l for l in (p + a).split("\n") if l]
    lines += texts()
    lines += ["user", "assistant", "system", "user\n", "assistant\n"]
    return lines
