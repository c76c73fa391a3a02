"""Agreement between two implementations of one model on the same token ids: the baseline-bundle format
and the comparison math that the precision chapter and `make compare` share (no chapter, no engine).

A *bundle* is what one implementation produced on the same prompts:

    {"version": 1, "label": "vLLM cpu bfloat16", "k": 5, "environment": {...}, "model": {...},
     "items": [{"id": prompt id, "prompt_ids": [...],
                "tf_ids": prompt + the golden's greedy continuation (teacher-forced sequence),
                "tf_rows": per position t >= 1 of tf_ids: [[token_id, logprob], ...]: the implementation's
                           own top-k, the actual token, and (where it scored them) the golden's top-k tokens,
                "gen_ids": greedy continuation (free-running), "gen_rows": per generated token, top-k}]}

Metrics between bundles P (the baseline, e.g. the fp32 reference) and Q (the implementation under test):

- teacher-forced (both on P's tf_ids; on the common prefix if the two sequences differ): top-1 agreement
  (argmax of P's row == argmax of Q's row), |Δ logprob| of the actual token (max, mean), and KL(P‖Q).
- **KL is exact or absent, never filled.** Over the full vocabulary where both sides' whole rows are at
  hand (`full_kl`, the chapter passes them to `compare_bundles(full=...)`); otherwise over P's top-k,
  both renormalised there, and only at positions where Q's row lists every one of P's top-k tokens
  (`kl_topk` gives None elsewhere; the summary counts those positions). An earlier version filled a
  missing token with Q's smallest listed logprob, an upper bound of its true value, which biased KL low.
- free-running: greedy continuations token by token: exact-match length, first divergence, and at the
  divergence whether each side's token is in the other's top-k (vLLM's check_logprobs_close rule; the
  comparison stops there). Sequences that agree until one side stops match over the shorter length.
"""
from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

import numpy as np

from bitcpm_validation.files import safetensors_files, sha256_file

BUNDLE_VERSION = 1
PRECISION_CHAPTER = "06_precision"
Row = dict[int, float]
FullRows = Mapping[str, np.ndarray]  # prompt id -> [positions, vocab] log-probabilities on P's tf_ids


class BaselineError(ValueError):
    """A baseline run could not be used; the message is one line."""


# -- rows -----------------------------------------------------------------------------------------------------
def row_from_pairs(pairs: Optional[Sequence[Sequence[float]]]) -> Optional[Row]:
    if pairs is None:
        return None
    return {int(t): float(lp) for t, lp in pairs}


def row_to_pairs(row: Optional[Mapping[int, float]], ndigits: int = 6) -> Optional[list[list]]:
    if row is None:
        return None
    items = sorted(((int(t), float(lp)) for t, lp in row.items()), key=lambda x: (-x[1], x[0]))
    return [[t, round(lp, ndigits)] for t, lp in items]


def row_from_full(logprobs: np.ndarray, k: int, also: Sequence[int] = ()) -> Row:
    """A bundle row from a whole-vocabulary row: the top-k plus the tokens in `also` (the actual token,
    the golden's top-k), so that a later top-k KL against this row is exact."""
    ids = set(full_topk(logprobs, k)) | {int(t) for t in also}
    return {t: float(logprobs[t]) for t in ids}


def full_topk(logprobs: np.ndarray, k: int) -> list[int]:
    """The k most likely token ids of a whole-vocabulary row (ties: lower id first).

    A partition finds the k-th largest value in O(V); only the ids at or above it (every tie included) are
    sorted. A full argsort of a 73,448-id row per position took ~10 s on a 1,024-token prompt."""
    x = np.asarray(logprobs)
    n = x.shape[-1]
    if k >= n or np.isnan(x).any():  # NaN has no order a partition keeps: the stable sort's (NaN last)
        return [int(t) for t in np.argsort(-x, kind="stable")[:k]]
    kth = np.partition(x, n - k)[n - k]
    cand = np.flatnonzero(x >= kth)
    order = np.lexsort((cand, -x[cand]))  # by value descending, then by id
    return [int(t) for t in cand[order[:k]]]


def top1(row: Row) -> int:
    return max(row.items(), key=lambda x: (x[1], -x[0]))[0]


def topk_ids(row: Row, k: int) -> list[int]:
    return [t for t, _ in sorted(row.items(), key=lambda x: (-x[1], x[0]))[:k]]


def log_normalise(v: list[float]) -> list[float]:
    """Log-probabilities renormalised to sum to 1 over the listed entries (log-sum-exp)."""
    m = max(v)
    z = m + math.log(sum(math.exp(x - m) for x in v))
    return [x - z for x in v]


def kl_topk(p: Row, q: Row, k: int) -> Optional[float]:
    """KL(P‖Q) over P's top-k, both renormalised there; None when Q does not list all of P's top-k
    (its value there is unknown: no fill, which would bias the figure)."""
    s = topk_ids(p, k)
    if any(t not in q for t in s):
        return None
    lp, lq = log_normalise([p[t] for t in s]), log_normalise([q[t] for t in s])
    return max(0.0, sum(math.exp(a) * (a - b) for a, b in zip(lp, lq)))


def kl_shared(p: Row, q: Row) -> Optional[float]:
    """KL(P‖Q) over the tokens both rows list, both renormalised there: exact for the two distributions
    conditioned on that shared support (the basis when neither side gave whole rows nor lists the other's
    top-k, e.g. top-k prompt logprobs from an engine that refuses whole-vocabulary rows); None when the
    rows share fewer than two tokens."""
    s = sorted(set(p) & set(q))
    if len(s) < 2:
        return None
    lp, lq = log_normalise([p[t] for t in s]), log_normalise([q[t] for t in s])
    return max(0.0, sum(math.exp(a) * (a - b) for a, b in zip(lp, lq)))


def top1_margin(row: Optional[Row]) -> Optional[float]:
    """logprob(top-1) - logprob(top-2) of a row, in nats (None with fewer than two entries): below the
    dtype's rounding noise a top-1 flip is a tie, not a disagreement."""
    if not row or len(row) < 2:
        return None
    a, b = sorted(row.values(), reverse=True)[:2]
    return float(a - b)


def full_kl(p: np.ndarray, q: np.ndarray) -> list[float]:
    """KL(P‖Q) over the whole vocabulary, per row, from log-probabilities [positions, vocab] (float64 sum)."""
    p = np.asarray(p, dtype=np.float64)
    q = np.asarray(q, dtype=np.float64)
    if p.shape != q.shape:
        raise ValueError(f"full_kl: the two sides' rows differ in shape {p.shape} vs {q.shape}: "
                         f"score both on the same token ids and vocabulary")
    pp = np.exp(p)
    with np.errstate(invalid="ignore"):  # 0 * (-inf - x) where P has no mass: contributes 0
        terms = np.where(pp > 0, pp * (p - q), 0.0)
    return [max(0.0, float(x)) for x in terms.sum(axis=-1)]


# -- comparisons ----------------------------------------------------------------------------------------------
def teacher_forced(seq: Sequence[int], p_rows: Sequence[Optional[Row]], q_rows: Sequence[Optional[Row]], k: int,
                   prompt_len: Optional[int] = None, tie_margin: float = 0.0) -> dict[str, Any]:
    """Rows are per position t = 1..len(seq)-1 (row i is about seq[i+1]); None rows are skipped.

    A position is *decisive* where P's top-1 margin (top1_margin) is at least `tie_margin` (the dtype's
    rounding noise); a top-1 flip elsewhere is a tie, counted apart from the flips (`ties_at`)."""
    agree, dabs, kls, klsh, pos, margins = [], [], [], [], [], []
    for i, (p, q) in enumerate(zip(p_rows, q_rows)):
        if not p or not q:
            continue
        tok = seq[i + 1]
        agree.append(top1(p) == top1(q))
        dabs.append(abs(p[tok] - q[tok]) if tok in p and tok in q else None)
        kls.append(kl_topk(p, q, k))
        klsh.append(kl_shared(p, q))
        pos.append(i + 1)
        margins.append(top1_margin(p))
    d = [x for x in dabs if x is not None]
    kl = [x for x in kls if x is not None]
    decisive = [m is not None and m >= tie_margin for m in margins]
    return {
        "positions": len(agree), "position_index": pos, "prompt_len": prompt_len,
        "top1_agree": sum(agree), "top1_agreement": (sum(agree) / len(agree)) if agree else None,
        "disagree_at": [p for p, a in zip(pos, agree) if not a],
        # flips where P's margin is at least the tie margin, and ties (flips below it), with P's margin
        "flips_at": [p for p, a, dc in zip(pos, agree, decisive) if not a and dc],
        "ties_at": [[p, round(m, 6) if m is not None else None]
                    for p, a, dc, m in zip(pos, agree, decisive, margins) if not a and not dc],
        "decisive": decisive, "tie_margin": tie_margin,
        "abs_dlogprob": dabs, "max_abs_dlogprob": max(d) if d else None,
        "mean_abs_dlogprob": (sum(d) / len(d)) if d else None,
        "kl": kls, "kl_missing": len(kls) - len(kl), "kl_shared": klsh,
        "mean_kl": (sum(kl) / len(kl)) if kl else None, "max_kl": max(kl) if kl else None,
    }


def free_running(p_ids: Sequence[int], p_rows: Sequence[Optional[Row]], q_ids: Sequence[int],
                 q_rows: Sequence[Optional[Row]], k: int) -> dict[str, Any]:
    n = min(len(p_ids), len(q_ids))
    match = next((i for i in range(n) if p_ids[i] != q_ids[i]), n)
    out: dict[str, Any] = {"len_a": len(p_ids), "len_b": len(q_ids), "match_len": match,
                           "first_divergence": None, "full_match": match == n and len(p_ids) == len(q_ids),
                           "close": True, "a_token": None, "b_token": None, "a_in_b_topk": None, "b_in_a_topk": None}
    if match < n:
        a, b = p_ids[match], q_ids[match]
        pr = p_rows[match] if match < len(p_rows) else None
        qr = q_rows[match] if match < len(q_rows) else None
        a_in_b = bool(qr) and a in topk_ids(qr, k)
        b_in_a = bool(pr) and b in topk_ids(pr, k)
        out.update(first_divergence=match, a_token=a, b_token=b, a_in_b_topk=a_in_b, b_in_a_topk=b_in_a,
                   close=bool(a_in_b and b_in_a))
    return out


def common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    n = min(len(a), len(b))
    return next((i for i in range(n) if a[i] != b[i]), n)


def compare_bundles(a: dict, b: dict, k: Optional[int] = None,
                    full: Optional[tuple[FullRows, FullRows]] = None, tie_margin: float = 0.0) -> dict[str, Any]:
    """Bundle a (baseline P) vs bundle b (under test Q): per prompt and summary. `full` = (P's, Q's)
    whole-vocabulary rows per prompt id on P's tf_ids: the KL is then over the full vocabulary.
    `tie_margin` (nats): P's top-1 margin below which a flip is a tie (teacher_forced)."""
    k = k or min(int(a.get("k", 5)), int(b.get("k", 5)))
    bi = {it["id"]: it for it in b["items"]}
    per: list[dict[str, Any]] = []
    unmatched = []
    for ia in a["items"]:
        ib = bi.get(ia["id"])
        if ib is None or list(ib["prompt_ids"]) != list(ia["prompt_ids"]):
            unmatched.append(ia["id"])
            continue
        n = common_prefix(ia["tf_ids"], ib["tf_ids"])
        rows_n = max(0, n - 1)
        pa = [row_from_pairs(r) for r in ia["tf_rows"][:rows_n]]
        pb = [row_from_pairs(r) for r in ib["tf_rows"][:rows_n]]
        tf = teacher_forced(ia["tf_ids"][:n], pa, pb, k, prompt_len=len(ia["prompt_ids"]), tie_margin=tie_margin)
        tf["same_sequence"] = list(ia["tf_ids"]) == list(ib["tf_ids"])
        if full is not None and ia["id"] in full[0] and ia["id"] in full[1]:
            fk = full_kl(full[0][ia["id"]][:rows_n], full[1][ia["id"]][:rows_n])
            tf.update(kl_full=fk, mean_kl_full=sum(fk) / len(fk) if fk else None, max_kl_full=max(fk, default=None))
        fr = free_running(ia["gen_ids"], [row_from_pairs(r) for r in ia["gen_rows"]],
                          ib["gen_ids"], [row_from_pairs(r) for r in ib["gen_rows"]], k)
        per.append({"id": ia["id"], "teacher_forced": tf, "free_running": fr})
    return {"a": a.get("label"), "b": b.get("label"), "k": k, "per_prompt": per, "unmatched": unmatched,
            "summary": summarize(per)}


def region_stats(per: list[dict[str, Any]], keep) -> dict[str, Any]:
    """top-1 (decisive positions), |Δ| and KL over the positions `keep(position, prompt_len)` selects."""
    agree = dec = n = 0
    d: list[float] = []
    for p in per:
        tf = p["teacher_forced"]
        dec_list = tf.get("decisive") or [True] * tf["positions"]
        flips = set(tf.get("flips_at", tf["disagree_at"]))
        for j, pos in enumerate(tf["position_index"]):
            if not keep(pos, tf.get("prompt_len") or 0):
                continue
            n += 1
            if dec_list[j]:
                dec += 1
                agree += pos not in flips
            if tf["abs_dlogprob"][j] is not None:
                d.append(tf["abs_dlogprob"][j])
    return {"positions": n, "decisive": dec, "top1_agreement": agree / dec if dec else None,
            "mean_abs_dlogprob": sum(d) / len(d) if d else None, "max_abs_dlogprob": max(d) if d else None}


def summarize(per: list[dict[str, Any]]) -> dict[str, Any]:
    agree = sum(p["teacher_forced"]["top1_agree"] for p in per)
    npos = sum(p["teacher_forced"]["positions"] for p in per)
    d = [x for p in per for x in p["teacher_forced"]["abs_dlogprob"] if x is not None]
    kl = [x for p in per for x in p["teacher_forced"]["kl"] if x is not None]
    kl_missing = sum(p["teacher_forced"]["kl_missing"] for p in per)
    klsh = [x for p in per for x in p["teacher_forced"].get("kl_shared", []) if x is not None]
    full = per and all("kl_full" in p["teacher_forced"] for p in per)
    klf = [x for p in per for x in p["teacher_forced"].get("kl_full", [])] if full else []
    fr = [p["free_running"] for p in per]
    decisive = sum(sum(p["teacher_forced"].get("decisive") or [True] * p["teacher_forced"]["positions"]) for p in per)
    flips = sum(len(p["teacher_forced"].get("flips_at", p["teacher_forced"]["disagree_at"])) for p in per)
    ties = sum(len(p["teacher_forced"].get("ties_at", [])) for p in per)
    # the KL the checks judge: whole vocabulary where both rows were whole; else P's top-k where Q lists all of
    # it at every position; else the support both rows list (kl_shared), each exact for what it covers
    if klf:
        basis, kls = "full", klf
    elif kl and not kl_missing:
        basis, kls = "top-k", kl
    elif klsh:
        basis, kls = "shared top-k support", klsh
    else:
        basis, kls = ("top-k" if kl else None), kl
    return {
        "prompts": len(per), "positions": npos,
        "top1_agreement": agree / npos if npos else None,
        # top-1 agreement over the decisive positions (P's margin ≥ the tie margin), and their share
        "decisive_positions": decisive, "decisive_share": decisive / npos if npos else None,
        "top1_agreement_decisive": (decisive - flips) / decisive if decisive else None,
        "flips": flips, "ties": ties,
        "max_abs_dlogprob": max(d) if d else None, "mean_abs_dlogprob": sum(d) / len(d) if d else None,
        "mean_kl_topk": sum(kl) / len(kl) if kl else None, "max_kl_topk": max(kl) if kl else None,
        "kl_topk_missing": kl_missing,
        "mean_kl_full": sum(klf) / len(klf) if klf else None, "max_kl_full": max(klf) if klf else None,
        "mean_kl_shared": sum(klsh) / len(klsh) if klsh else None,
        "kl_basis": basis,
        "mean_kl": (sum(kls) / len(kls)) if kls else None,
        "max_kl": max(kls) if kls else None,
        "prompt_region": region_stats(per, lambda pos, pl: pos < pl),
        "generated_region": region_stats(per, lambda pos, pl: pos >= pl),
        "exact_match_lens": [f["match_len"] for f in fr],
        "gen_lens": [max(f["len_a"], f["len_b"]) for f in fr],
        "full_matches": sum(1 for f in fr if f["full_match"]),
        "close": sum(1 for f in fr if f["close"]),
        "min_exact_match": min((f["match_len"] for f in fr), default=None),
    }


# -- bundles on disk ------------------------------------------------------------------------------------------
def file_fingerprint(model_dir: str | Path) -> dict[str, Any]:
    """sha256 over the weight files (name + content) and config.json: the same model on both sides?"""
    d = Path(model_dir)
    h = hashlib.sha256()
    files = safetensors_files(d)
    for f in files:
        h.update(f"{f.name}:{sha256_file(f)}\n".encode())
    cfg = d / "config.json"
    c = hashlib.sha256(cfg.read_bytes()).hexdigest()[:16] if cfg.is_file() else None
    return {"weights_sha256": h.hexdigest()[:16] if files else None, "config_sha256": c,
            "weight_files": [f.name for f in files], "weight_bytes": sum(f.stat().st_size for f in files)}


def validate_bundle(b: Any, where: str) -> dict:
    if not isinstance(b, dict) or b.get("version") != BUNDLE_VERSION or not isinstance(b.get("items"), list):
        raise BaselineError(f"{where}: no precision baseline bundle (version {BUNDLE_VERSION}) in its results: "
                            f"re-run the precision chapter there")
    for it in b["items"]:
        if not all(key in it for key in ("id", "prompt_ids", "tf_ids", "tf_rows", "gen_ids", "gen_rows")):
            raise BaselineError(f"{where}: baseline bundle item {it.get('id')!r} is incomplete: re-run the precision chapter")
    return b


def load_run_bundles(path: str | Path, root: Optional[Path] = None) -> dict[str, Any]:
    """{'engine': bundle, 'reference': bundle or None, 'run': name, 'results': path} of a run directory (or
    of its results/06_precision.json). Raises BaselineError with a one-line reason."""
    p = Path(path).expanduser()
    if not p.is_absolute() and root is not None and not p.exists():
        p = root / p
    f = p if p.suffix == ".json" else p / "results" / f"{PRECISION_CHAPTER}.json"
    if not p.exists():
        raise BaselineError(f"baseline {path}: not found: name an existing run directory (runs/<id>)")
    if not f.is_file():
        raise BaselineError(f"baseline {path}: {f.name} missing: the precision chapter did not run there")
    try:
        d = json.loads(f.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise BaselineError(f"baseline {path}: {f.name} is not readable JSON ({type(e).__name__})") from None
    data = d.get("data") if isinstance(d, dict) else None
    if not isinstance(data, dict):
        raise BaselineError(f"baseline {path}: {f.name} has no data section: not a results file")
    eng = validate_bundle(data.get("bundle"), f"baseline {path}")
    ref = data.get("reference_bundle")
    ref = validate_bundle(ref, f"baseline {path}") if ref is not None else None
    run = f.parent.parent.name if f.parent.name == "results" else f.stem
    return {"engine": eng, "reference": ref, "run": run, "results": str(f)}


# -- display --------------------------------------------------------------------------------------------------
def fmt_small(x: Optional[float], digits: int = 4) -> str:
    """A non-negative figure without scientific notation: 0.0123, 0.000041, 0 (n/a for None)."""
    if x is None:
        return "n/a"
    if x == 0:
        return "0"
    if abs(x) >= 10 ** -digits:
        return f"{x:,.{digits}f}"
    text = f"{x:.{digits + 4}f}".rstrip("0").rstrip(".")
    return text if text != "0" else f"< {10 ** -(digits + 4):.{digits + 4}f}"  # non-zero, below the digits shown


def summary_cells(s: dict[str, Any]) -> list[str]:
    """top-1, max |Δ|, mean |Δ|, mean KL (with its basis), exact-match lengths, close: a table row's cells."""
    kl = fmt_small(s.get("mean_kl"), 6)
    if s.get("kl_basis") == "top-k" and s.get("kl_topk_missing"):
        kl += f" ({s['kl_topk_missing']} n/a)"
    return [fmt_small(s.get("top1_agreement")), fmt_small(s.get("max_abs_dlogprob")),
            fmt_small(s.get("mean_abs_dlogprob")), kl, s.get("kl_basis") or "n/a",
            " ".join(f"{m}/{n}" for m, n in zip(s.get("exact_match_lens", []), s.get("gen_lens", []))),
            f"{s.get('close', 0)}/{s.get('prompts', 0)}"]
