"""Token-level comparison of generations (temperature 0): the determinism chapter's tables.

    cmp = compare(a_ids, b_ids)    # {"tokens_compared", "identical", "first_divergence", "match", ...}
    rows = table(prompt_ids, runs, label)  # rows for a DataFrame / report table

`tokens_compared` is the length of the longer sequence (a token missing on one side counts as a
difference); `identical` counts positions where both sides have the same token; `first_divergence` is
the first differing position (None when the sequences are equal).
"""
from __future__ import annotations

from typing import Any, Optional, Sequence


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


TABLE_HEADERS = ["提示 Prompt", "比较 Comparison", "比较的 token 数 Tokens compared", "相同 Identical",
                 "首个分歧位置 First divergence", "一致 Match"]


def table_rows(rows: Sequence[dict[str, Any]]) -> list[list[Any]]:
    """Rows for textsafe.show_table / md_table with TABLE_HEADERS."""
    out = []
    for r in rows:
        fd = "—" if r["first_divergence"] is None else f"{r['first_divergence']} ({r['a_at']} ≠ {r['b_at']})"
        out.append([r["prompt"], f"{r['comparison_zh']} {r['comparison_en']}", r["tokens_compared"],
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
        add("repeat", f"run 1 vs run {r + 1} (same engine)", f"运行 1 vs 运行 {r + 1}(同一引擎)", runs[r])
    if restart is not None:
        add("restart", "run 1 vs after engine restart", "运行 1 vs 引擎重启后", restart)
    if alone is not None:
        add("batch", "inside the batch vs alone", "批内 vs 单独", alone)
    rows = [x for g in ("repeat", "restart", "batch") for x in groups[g]]
    totals = {k: totals_of(v) for k, v in groups.items() if v}
    totals["all"] = totals_of(rows)
    return {"rows": rows, "totals": totals}


totals_of = totals

_CHECK_NAMES = {
    "repeat": ("Repeated runs identical (temperature 0)", "重复运行一致(temperature 0)", "fail"),
    "restart": ("Identical after an engine restart", "引擎重启后一致", "fail"),
    "batch": ("Alone vs inside a batch identical", "单独与批内一致", "warn"),
}


def checks(res: dict[str, Any]) -> list[dict[str, Any]]:
    """One check per comparison group. A difference in the same engine or after a restart is a
    failure; alone vs batch is a warning (vLLM does not promise batch invariance unless
    VLLM_BATCH_INVARIANT is set)."""
    out = []
    for group, (en, zh, bad) in _CHECK_NAMES.items():
        t = res["totals"].get(group)
        if not t:
            out.append(dict(check_id=f"determinism_{group}", status="not_run", name_en=en, name_zh=zh,
                            detail_en="disabled in params.determinism", detail_zh="params.determinism 中已关闭"))
            continue
        ok = t["rows_matching"] == t["rows"]
        diverged = [r for r in res["rows"] if r["group"] == group and not r["match"]]
        first = (f"; first divergence: {diverged[0]['prompt']} at token {diverged[0]['first_divergence']}" if diverged else "")
        first_zh = (f";首个分歧:{diverged[0]['prompt']} 第 {diverged[0]['first_divergence']} 个 token" if diverged else "")
        out.append(dict(
            check_id=f"determinism_{group}", status="pass" if ok else bad, name_en=en, name_zh=zh,
            detail_en=f"{t['rows_matching']}/{t['rows']} sequences identical, {t['identical']}/{t['tokens_compared']} tokens{first}",
            detail_zh=f"{t['rows_matching']}/{t['rows']} 条序列一致,{t['identical']}/{t['tokens_compared']} 个 token 相同{first_zh}"))
    return out


def env_rows(platform: str) -> list[dict[str, Any]]:
    """The platform's determinism variables (engine.DETERMINISM_ENV) with the value actually set."""
    import os

    from bitcpm_validation.engine.offline import DETERMINISM_ENV

    rec = dict(DETERMINISM_ENV.get(platform, {}))
    rec.setdefault("VLLM_BATCH_INVARIANT", "1 (beta, optional)")
    return [{"var": k, "recommended": v, "actual": os.environ.get(k, "(unset)")} for k, v in rec.items()]


def select_prompts(prompt_set: Any, n: int) -> list:
    """The N probes repeated: the original document's prompts first (its five English prompts are the
    ones it compared), then the others, each group in file order."""
    ps = list(prompt_set.prompts)
    ordered = ([q for q in ps if q.from_original and q.lang == "en"] + [q for q in ps if q.from_original and q.lang != "en"]
               + [q for q in ps if not q.from_original])
    return ordered[:n]
