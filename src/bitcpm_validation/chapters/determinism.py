"""Determinism at temperature 0: token-level comparison of generations and the chapter's checks.

    res = compare_all(ids, runs, restart=restart, alone=alone)   # rows + totals per comparison group
    ch.record(judge_repeat(res), judge_restart(res), judge_batch(res))
    ch.metric("full_length", lengths(gens, max_tokens)["text"], ...)   # a fact: ignore_eos runs every generation full
    show_table(table_headers(), table_rows(res["rows"]))

`tokens_compared` is the length of the longer sequence (a token missing on one side counts as a
difference); `identical` counts positions where both sides have the same token; `first_divergence` is
the first differing position (None when the sequences are equal).
"""
from __future__ import annotations

from typing import Any, Optional, Sequence

from bitcpm_validation.report.checks import CheckSpec
from bitcpm_validation.report.display import T
from bitcpm_validation.report.results import Check
from bitcpm_validation.chapters import registered_checks


def compare(a: Sequence[int], b: Sequence[int]) -> dict[str, Any]:
    n = max(len(a), len(b))
    same = sum(1 for x, y in zip(a, b) if x == y)
    first: Optional[int] = None
    for i in range(n):
        x = a[i] if i < len(a) else None
        y = b[i] if i < len(b) else None
        if x != y:
            first = i
            break
    return {
        "tokens_compared": n,
        "identical": same,
        "first_divergence": first,
        "match": first is None,
        "len_a": len(a),
        "len_b": len(b),
        "a_at": (a[first] if first is not None and first < len(a) else None),
        "b_at": (b[first] if first is not None and first < len(b) else None),
    }


def row(prompt_id: str, comparison_en: str, comparison_zh: str, a: Sequence[int], b: Sequence[int]) -> dict[str, Any]:
    """One table row: which prompt, which two generations, and their token-level comparison."""
    c = compare(a, b)
    return {"prompt": prompt_id, "comparison_en": comparison_en, "comparison_zh": comparison_zh, **c}


def totals(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:  # noqa: D401
    """Identical / compared tokens and matching rows over a set of rows."""
    compared = sum(r["tokens_compared"] for r in rows)
    identical = sum(r["identical"] for r in rows)
    return {
        "rows": len(rows),
        "rows_matching": sum(1 for r in rows if r["match"]),
        "tokens_compared": compared,
        "identical": identical,
        "identical_share": (identical / compared) if compared else None,
    }


def table_headers() -> list[T]:
    return [T("提示", "Prompt"), T("比较", "Comparison"), T("比较的词元数", "Tokens compared"),
            T("相同", "Identical"), T("首个分歧位置", "First divergence"), T("一致", "Match")]


def table_rows(rows: Sequence[dict[str, Any]]) -> list[list[Any]]:
    """Rows for display.show_table(table_headers(), ...): one per compared pair of generations."""
    out = []
    for r in rows:
        fd = "—" if r["first_divergence"] is None else f"{r['first_divergence']} ({r['a_at']} ≠ {r['b_at']})"
        out.append([r["prompt"], T(r["comparison_zh"], r["comparison_en"]), r["tokens_compared"],
                    r["identical"], fd, "✅" if r["match"] else "❌"])
    return out


def compare_all(ids: Sequence[str], runs: Sequence[Sequence[Sequence[int]]], *,
                restart: Optional[Sequence[Sequence[int]]] = None,
                alone: Optional[Sequence[Sequence[int]]] = None) -> dict[str, Any]:
    """All comparisons of the chapter. runs[r][i]: run r's tokens for prompt i (run 0 is the reference,
    generated as one batch of all prompts); restart[i]: the same batch after an engine restart;
    alone[i]: prompt i sent on its own. Returns {"rows": [...], "totals": {group: totals}}."""
    groups: dict[str, list[dict[str, Any]]] = {"repeat": [], "restart": [], "batch": []}

    def add(group: str, label_en: str, label_zh: str, other: Sequence[Sequence[int]]) -> None:
        for i, pid in enumerate(ids):
            groups[group].append({**row(pid, label_en, label_zh, runs[0][i], other[i]), "group": group})

    for r in range(1, len(runs)):
        add("repeat", f"run 1 vs run {r + 1} (same engine)", f"运行 1 与运行 {r + 1}（同一引擎）", runs[r])
    if restart is not None:
        add("restart", "run 1 vs after engine restart", "运行 1 与引擎重启后", restart)
    if alone is not None:
        add("batch", "inside the batch vs alone", "批内与单独", alone)
    rows = [x for g in ("repeat", "restart", "batch") for x in groups[g]]
    sums = {k: totals(v) for k, v in groups.items() if v}
    sums["all"] = totals(rows)
    return {"rows": rows, "totals": sums}

CHAPTER = "04_determinism"
CHECKS = registered_checks("04_determinism")  # this chapter's entries of chapters/checks.yaml

_GROUP_PARAM = {"repeat": "runs", "restart": "restart", "batch": "batch"}


def _judge_group(spec: CheckSpec, res: dict[str, Any], group: str, bad: str) -> Check:
    t = res["totals"].get(group)
    if not t:
        key = _GROUP_PARAM[group]
        return spec.not_run(f"disabled in params (determinism.{key})", f"参数中已关闭（determinism.{key}）")
    diverged = [r for r in res["rows"] if r["group"] == group and not r["match"]]
    en = f"{t['rows_matching']}/{t['rows']} sequences identical, {t['identical']}/{t['tokens_compared']} tokens"
    zh = f"{t['rows_matching']}/{t['rows']} 条序列一致，{t['identical']}/{t['tokens_compared']} 个词元相同"
    if diverged:
        d = diverged[0]
        en += f"; first divergence: {d['prompt']} at token {d['first_divergence']} ({d['a_at']} ≠ {d['b_at']})"
        zh += f"；首个分歧：{d['prompt']} 第 {d['first_divergence']} 个词元（{d['a_at']} ≠ {d['b_at']}）"
    return spec.row("fail" if diverged and bad == "fail" else ("warn" if diverged else "pass"), en, zh)


def judge_repeat(res: dict[str, Any]) -> Check:
    """R runs of the same batch in one engine (compare_all's "repeat" group): any difference fails."""
    return _judge_group(CHECKS["determinism_repeat"], res, "repeat", "fail")


def judge_restart(res: dict[str, Any]) -> Check:
    """Run 1 against the same batch in a restarted engine: any difference fails."""
    return _judge_group(CHECKS["determinism_restart"], res, "restart", "fail")


def judge_batch(res: dict[str, Any]) -> Check:
    """Each prompt alone against inside the batch: a difference warns (no batch-invariance promise)."""
    return _judge_group(CHECKS["determinism_batch"], res, "batch", "warn")


def lengths(generations: dict[str, Optional[Sequence[Sequence[int]]]], max_tokens: int) -> dict[str, Any]:
    """How many generations ran the full max_tokens (generations: label -> one token list per prompt; None: that
    comparison did not run). A fact, not a check: with ignore_eos vLLM always generates max_tokens (the original
    document's "64/64, ±0"), so this cannot realistically fail; the comparisons above judge the tokens."""
    seqs = [(label, i, len(s)) for label, g in generations.items() if g for i, s in enumerate(g)]
    off = [x for x in seqs if x[2] != max_tokens]
    return {"total": len(seqs), "full": len(seqs) - len(off), "max_tokens": max_tokens,
            "text": f"{len(seqs) - len(off)}/{len(seqs)} × {max_tokens}",
            "first_short": None if not off else {"label": off[0][0], "index": off[0][1], "tokens": off[0][2]}}


def env_rows(platform: str) -> list[dict[str, Any]]:
    """The platform's determinism variables (engine.DETERMINISM_ENV) with the value actually set."""
    import os

    from bitcpm_validation.engine.base import DETERMINISM_ENV

    rec = dict(DETERMINISM_ENV.get(platform, {}))
    rec.setdefault("VLLM_BATCH_INVARIANT", OPTIONAL_BATCH_INVARIANT)
    return [{"var": k, "recommended": v, "actual": os.environ.get(k, UNSET)} for k, v in rec.items()]


UNSET, OPTIONAL_BATCH_INVARIANT = "(unset)", "1 (beta, optional)"
_ENV_WORDS = {UNSET: T("（未设置）", UNSET), OPTIONAL_BATCH_INVARIANT: T("1（试验性，可选）", OPTIONAL_BATCH_INVARIANT)}


def env_cells(row: dict[str, Any]) -> list[Any]:
    """An env_rows() row as table cells: the project's own words in the reader's language, values as they are."""
    def cell(v: Any) -> Any:  # a value ("true", "1") is data: code in the Chinese file
        return _ENV_WORDS.get(v) or T(f"`{v}`", str(v))

    return [row["var"], cell(row["recommended"]), cell(row["actual"])]


def select_prompts(prompt_set: Any, n: int) -> list:
    """The N probes repeated: the original document's prompts first (its five English prompts are the
    ones it compared), then the others, each group in file order."""
    ps = list(prompt_set.prompts)
    ordered = ([q for q in ps if q.from_original and q.lang == "en"] + [q for q in ps if q.from_original and q.lang != "en"]
               + [q for q in ps if not q.from_original])
    return ordered[:n]
