"""Per-item accuracy results: one JSONL file per task, so that any two runs can be paired later.

File: runs/<id>/artifacts/09_accuracy/items/<task>.jsonl, one line per (subtask, doc_id, filter):

    {"task": "cmmlu", "subtask": "cmmlu_agronomy", "doc_id": 17, "filter": "none",
     "doc_hash": "...", "prompt_hash": "...", "target_hash": "...", "metric": "acc", "score": 1.0,
     "metrics": {"acc": 1.0, "acc_norm": 0.0}}

doc_id is the item's index in the subtask's evaluation split (as lm-eval's `--samples` takes it); the three
hashes are lm-eval's own (sha256 of the document, of the first request's prompt, of the target). Two runs
pair on (subtask, doc_id, filter); a pair whose doc, prompt or target hash differs is refused (different
data, few-shot or template: not the same question).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Optional

ITEMS_DIR = Path("artifacts") / "09_accuracy" / "items"
HASHES = ("doc_hash", "prompt_hash", "target_hash")


def records_from_samples(task: str, samples: dict[str, list[dict[str, Any]]], metric: str) -> list[dict[str, Any]]:
    """lm-eval's logged samples ({subtask: [example, ...]}, log_samples=True) -> item records of `metric`."""
    out = []
    for subtask, examples in sorted(samples.items()):
        for ex in examples:
            metrics = {k: ex[k] for k in (ex.get("metrics") or []) if isinstance(ex.get(k), (int, float, bool))}
            if metric not in metrics:
                continue
            out.append({"task": task, "subtask": subtask, "doc_id": int(ex["doc_id"]), "filter": ex.get("filter", "none"),
                        **{h: ex.get(h) for h in HASHES}, "metric": metric, "score": float(metrics[metric]),
                        "metrics": {k: float(v) for k, v in metrics.items()}})
    return out


def write_items(path: Path, records: Iterable[dict[str, Any]]) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as f:
        for r in records:
            f.write(json.dumps(r, ensure_ascii=False, sort_keys=True) + "\n")
    return path


def read_items(path: Path) -> list[dict[str, Any]]:
    return [json.loads(ln) for ln in Path(path).read_text(encoding="utf-8").splitlines() if ln.strip()]


def items_file(run_dir: Path, task: str) -> Path:
    return Path(run_dir) / ITEMS_DIR / f"{task}.jsonl"


@dataclass
class Pairing:
    candidate: list[float] = field(default_factory=list)
    baseline: list[float] = field(default_factory=list)
    refused: list[tuple[str, int, str, str]] = field(default_factory=list)  # (subtask, doc_id, filter, which hash)
    only_candidate: int = 0
    only_baseline: int = 0

    @property
    def n(self) -> int:
        return len(self.candidate)


def pair(candidate: list[dict[str, Any]], baseline: list[dict[str, Any]], metric: Optional[str] = None,
         filter_: Optional[str] = None) -> Pairing:
    """Items of two runs matched on (subtask, doc_id, filter); pairs whose hashes differ are refused."""
    def key(r):
        return (r["subtask"], int(r["doc_id"]), r.get("filter", "none"))

    def keep(r):
        return (metric is None or r.get("metric") == metric) and (filter_ is None or r.get("filter") == filter_)

    base = {key(r): r for r in baseline if keep(r)}
    out = Pairing()
    seen = set()
    for r in candidate:
        if not keep(r):
            continue
        k = key(r)
        b = base.get(k)
        if b is None:
            out.only_candidate += 1
            continue
        seen.add(k)
        bad = next((h for h in HASHES if r.get(h) != b.get(h)), None)
        if bad:
            out.refused.append((*k, bad))
            continue
        out.candidate.append(float(r["score"]))
        out.baseline.append(float(b["score"]))
    out.only_baseline = len(set(base) - seen)
    return out


def headline_filter(records: list[dict[str, Any]]) -> Optional[str]:
    """The filter a task's headline is scored under (gsm8k: strict-match; others: their only one)."""
    filters = {r.get("filter") for r in records}
    return "strict-match" if "strict-match" in filters else (next(iter(filters)) if len(filters) == 1 else None)


def paired_runs(run_a: Path, run_b: Path) -> list[dict[str, Any]]:
    """Every task both runs kept per-item results of, paired item by item (a = baseline, b = candidate):
    items, refused pairs, the difference in points with its 95 % interval and the exact McNemar p values."""
    from bitcpm_validation.report import stats

    out = []
    da, db = Path(run_a) / ITEMS_DIR, Path(run_b) / ITEMS_DIR
    if not (da.is_dir() and db.is_dir()):
        return out
    for fa in sorted(da.glob("*.jsonl")):
        fb = db / fa.name
        if not fb.is_file():
            continue
        base, cand = read_items(fa), read_items(fb)
        flt = headline_filter(cand)
        p = pair(cand, base, filter_=flt)
        row: dict[str, Any] = {"task": fa.stem, "filter": flt, "n": p.n, "refused": len(p.refused),
                               "only_a": p.only_baseline, "only_b": p.only_candidate}
        if p.n:
            r = stats.mcnemar([x >= 0.5 for x in p.candidate], [x >= 0.5 for x in p.baseline])
            row.update({"diff_points": round(r.diff_points, 3), "ci": [round(r.ci[0], 3), round(r.ci[1], 3)],
                        "b_won": r.candidate_only, "b_lost": r.baseline_only, "p_worse": r.p_worse,
                        "p_two_sided": r.p_two_sided})
        out.append(row)
    return out
