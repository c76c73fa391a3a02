"""Precision: an engine's log-probabilities against the fp32 reference, and one run against another.

Everything compares two *bundles*. A bundle is what one implementation produced on the same prompts:

    {"version": 1, "label": "vLLM cpu bfloat16", "k": 5, "environment": {...}, "model": {...},
     "items": [{"id": prompt id, "prompt_ids": [...],
                "tf_ids": prompt + the reference's greedy continuation (teacher-forced sequence),
                "tf_rows": per position t >= 1 of tf_ids: [[token_id, logprob], ...] top-k + the actual token,
                "gen_ids": greedy continuation (free-running), "gen_rows": per generated token, as tf_rows}]}

Every run stores its engine bundle (and the reference's) in results/06_precision.json
(data["bundle"], data["reference_bundle"]), so that a later run on another device can name it in
params.precision.baselines and `make compare` can hold any runs against each other.

Metrics between bundles P (the baseline, e.g. the fp32 reference) and Q (the run under test):

- teacher-forced (both on P's tf_ids; on the common prefix if the two runs' sequences differ):
  top-1 agreement (argmax of P's row == argmax of Q's row), |Δ logprob| of the actual token
  (max, mean), and KL(P‖Q) over the top-k.
  **KL choice**: support S = P's top-k tokens; P and Q are each renormalised over S; a token of S that
  Q did not list gets Q's smallest listed logprob (an upper bound of its true value, since Q lists its
  own top-k). This is defined at every position, is 0 for identical rows, and needs only top-k data.
- free-running: greedy continuations token by token: exact-match length, first divergence, and at the
  divergence whether each side's token is in the other's top-k (vLLM's check_logprobs_close rule;
  the comparison stops there). Sequences that agree until one side stops are a match over the
  shorter length (as zip() in check_logprobs_close).
"""
from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from typing import Any, Iterable, Optional, Sequence

from bitcpm_validation.engine.files import safetensors_files, sha256_file

BUNDLE_VERSION = 1
Row = dict[int, float]


class BaselineError(ValueError):
    """A baseline run could not be used; the message is one line."""


# -- rows -----------------------------------------------------------------------------------------------------
def row_from_pairs(pairs: Optional[Sequence[Sequence[float]]]) -> Optional[Row]:
    if pairs is None:
        return None
    return {int(t): float(lp) for t, lp in pairs}


def row_to_pairs(row: Optional[dict], ndigits: int = 6) -> Optional[list[list]]:
    if row is None:
        return None
    items = sorted(((int(t), float(lp)) for t, lp in row.items()), key=lambda x: (-x[1], x[0]))
    return [[t, round(lp, ndigits)] for t, lp in items]


def top1(row: Row) -> int:
    return max(row.items(), key=lambda x: (x[1], -x[0]))[0]


def topk_ids(row: Row, k: int) -> list[int]:
    return [t for t, _ in sorted(row.items(), key=lambda x: (-x[1], x[0]))[:k]]


def kl_topk(p: Row, q: Row, k: int) -> float:
    """KL(P‖Q) over P's top-k, both renormalised there (missing Q entries: Q's smallest listed logprob)."""
    s = topk_ids(p, k)
    floor = min(q.values())
    lp = [p[t] for t in s]
    lq = [q.get(t, floor) for t in s]

    def norm(v: list[float]) -> list[float]:
        m = max(v)
        z = m + math.log(sum(math.exp(x - m) for x in v))
        return [x - z for x in v]

    lp, lq = norm(lp), norm(lq)
    return max(0.0, sum(math.exp(a) * (a - b) for a, b in zip(lp, lq)))


# -- comparisons ----------------------------------------------------------------------------------------------
def teacher_forced(seq: Sequence[int], p_rows: Sequence[Optional[Row]], q_rows: Sequence[Optional[Row]], k: int,
                   prompt_len: Optional[int] = None) -> dict[str, Any]:
    """Rows are per position t = 1..len(seq)-1 (row i is about seq[i+1]); None rows are skipped."""
    agree, dabs, kls, pos = [], [], [], []
    for i, (p, q) in enumerate(zip(p_rows, q_rows)):
        if not p or not q:
            continue
        tok = seq[i + 1]
        agree.append(top1(p) == top1(q))
        if tok in p and tok in q:
            dabs.append(abs(p[tok] - q[tok]))
        else:
            dabs.append(None)
        kls.append(kl_topk(p, q, k))
        pos.append(i + 1)
    d = [x for x in dabs if x is not None]
    return {
        "positions": len(agree), "position_index": pos, "prompt_len": prompt_len,
        "top1_agree": sum(agree), "top1_agreement": (sum(agree) / len(agree)) if agree else None,
        "disagree_at": [p for p, a in zip(pos, agree) if not a],
        "abs_dlogprob": dabs, "max_abs_dlogprob": max(d) if d else None,
        "mean_abs_dlogprob": (sum(d) / len(d)) if d else None,
        "kl": kls, "mean_kl": (sum(kls) / len(kls)) if kls else None, "max_kl": max(kls) if kls else None,
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


def _common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    n = min(len(a), len(b))
    return next((i for i in range(n) if a[i] != b[i]), n)


def compare_bundles(a: dict, b: dict, k: Optional[int] = None) -> dict[str, Any]:
    """Bundle a (baseline P) vs bundle b (under test Q): per prompt and summary."""
    k = k or min(int(a.get("k", 5)), int(b.get("k", 5)))
    bi = {it["id"]: it for it in b["items"]}
    per: list[dict[str, Any]] = []
    unmatched = []
    for ia in a["items"]:
        ib = bi.get(ia["id"])
        if ib is None or list(ib["prompt_ids"]) != list(ia["prompt_ids"]):
            unmatched.append(ia["id"])
            continue
        n = _common_prefix(ia["tf_ids"], ib["tf_ids"])
        rows_n = max(0, n - 1)
        pa = [row_from_pairs(r) for r in ia["tf_rows"][:rows_n]]
        pb = [row_from_pairs(r) for r in ib["tf_rows"][:rows_n]]
        tf = teacher_forced(ia["tf_ids"][:n], pa, pb, k, prompt_len=len(ia["prompt_ids"]))
        tf["same_sequence"] = list(ia["tf_ids"]) == list(ib["tf_ids"])
        fr = free_running(ia["gen_ids"], [row_from_pairs(r) for r in ia["gen_rows"]],
                          ib["gen_ids"], [row_from_pairs(r) for r in ib["gen_rows"]], k)
        per.append({"id": ia["id"], "teacher_forced": tf, "free_running": fr})
    return {"a": a.get("label"), "b": b.get("label"), "k": k, "per_prompt": per, "unmatched": unmatched,
            "summary": summarize(per)}


def summarize(per: list[dict[str, Any]]) -> dict[str, Any]:
    agree = sum(p["teacher_forced"]["top1_agree"] for p in per)
    npos = sum(p["teacher_forced"]["positions"] for p in per)
    d = [x for p in per for x in p["teacher_forced"]["abs_dlogprob"] if x is not None]
    kl = [x for p in per for x in p["teacher_forced"]["kl"]]
    fr = [p["free_running"] for p in per]
    return {
        "prompts": len(per), "positions": npos,
        "top1_agreement": agree / npos if npos else None,
        "max_abs_dlogprob": max(d) if d else None, "mean_abs_dlogprob": sum(d) / len(d) if d else None,
        "mean_kl": sum(kl) / len(kl) if kl else None, "max_kl": max(kl) if kl else None,
        "exact_match_lens": [f["match_len"] for f in fr],
        "gen_lens": [max(f["len_a"], f["len_b"]) for f in fr],
        "full_matches": sum(1 for f in fr if f["full_match"]),
        "close": sum(1 for f in fr if f["close"]),
        "min_exact_match": min((f["match_len"] for f in fr), default=None),
    }


def verdicts(s: dict[str, Any], pp: Any) -> list[dict[str, Any]]:
    """Checks of a summary against params.precision thresholds: id, status, detail (en, zh)."""
    out = []

    def add(cid, ok, en, zh, val, thr, cmp):
        st = "not_run" if val is None else ("pass" if ok else "fail")
        v = "n/a" if val is None else f"{val:.4g}"
        out.append({"id": cid, "status": st, "name_en": en, "name_zh": zh,
                    "detail_en": f"{v} (threshold {cmp} {thr})", "detail_zh": f"{v}(阈值 {cmp} {thr})"})

    t1, md, kl = s.get("top1_agreement"), s.get("mean_abs_dlogprob"), s.get("mean_kl")
    add("top1", t1 is not None and t1 >= pp.min_top1_agreement, "Teacher-forced top-1 agreement", "教师强制 top-1 一致率",
        t1, pp.min_top1_agreement, "≥")
    add("mean_dlogprob", md is not None and md <= pp.max_mean_abs_dlogprob, "Mean |Δ logprob| of the actual tokens",
        "实际 token 的平均 |Δ logprob|", md, pp.max_mean_abs_dlogprob, "≤")
    add("kl", kl is not None and kl <= pp.max_kl, "Mean KL over the top-k", "top-k 上的平均 KL", kl, pp.max_kl, "≤")
    n, c = s.get("prompts", 0), s.get("close", 0)
    out.append({"id": "logprobs_close", "status": ("pass" if n and c == n else ("not_run" if not n else "fail")),
                "name_en": "Greedy continuations close (check_logprobs_close rule)",
                "name_zh": "贪心续写接近(check_logprobs_close 规则)",
                "detail_en": f"{c}/{n} prompts; exact-match lengths {s.get('exact_match_lens')} of {s.get('gen_lens')}",
                "detail_zh": f"{c}/{n} 个提示;完全一致长度 {s.get('exact_match_lens')} / {s.get('gen_lens')}"})
    return out


# -- producing bundles --------------------------------------------------------------------------------------
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


def environment_summary(extra: Optional[dict] = None) -> dict[str, Any]:
    """Device and versions, as the environment probe sees them (without running tools)."""
    from bitcpm_validation.chapters import environment

    f = environment.probe(run_tools=False)
    v = f.get("versions", {})
    env = {"device": f["device"]["name"], "device_kind": f["device"]["kind"], "os": f.get("os"), "arch": f.get("arch"),
           "python": f.get("python")}
    env.update({k: v.get(k) for k in ("vllm", "vllm_ascend", "torch", "torch_npu", "cann", "transformers")
                if v.get(k)})
    env.update({k: val for k, val in (f.get("env") or {}).items() if val})
    env.update(extra or {})
    return env


def reference_bundle(ref: Any, items: Sequence[tuple[str, list[int]]], k: int, max_new_tokens: int,
                     label: str = "reference fp32 (host CPU)", environment: Optional[dict] = None,
                     model: Optional[dict] = None) -> dict[str, Any]:
    """The fp32 reference on (id, prompt ids) items: greedy continuation, then teacher-forced rows."""
    out = []
    for pid, ids in items:
        new, steps = ref.greedy(ids, max_new_tokens=max_new_tokens, top_k=k)
        seq = list(ids) + list(new)
        tf = ref.prompt_topk(seq, k)
        tf_rows = []
        for r in tf:
            row = dict(zip(r["top_ids"], r["top_logprobs"]))
            row[r["token_id"]] = r["logprob"]
            tf_rows.append(row_to_pairs(row))
        gen_rows = [row_to_pairs(dict(zip(s.top_ids, s.top_logprobs))) for s in steps]
        out.append({"id": pid, "prompt_ids": list(ids), "tf_ids": seq, "tf_rows": tf_rows,
                    "gen_ids": list(new), "gen_rows": gen_rows})
    return {"version": BUNDLE_VERSION, "label": label, "k": k, "environment": environment or {},
            "model": model or {}, "items": out}


def engine_bundle(eng: Any, ref_bundle: dict, k: int, max_new_tokens: int, label: Optional[str] = None,
                  environment: Optional[dict] = None, model: Optional[dict] = None) -> dict[str, Any]:
    """The engine on the reference bundle's prompts: prompt_logprobs on tf_ids, greedy with logprobs."""
    items = ref_bundle["items"]
    tf = eng.generate([it["tf_ids"] for it in items], max_tokens=1, prompt_logprobs=k)
    gen = eng.generate([it["prompt_ids"] for it in items], max_tokens=max_new_tokens, logprobs=k)
    out = []
    for it, t, g in zip(items, tf, gen):
        out.append({"id": it["id"], "prompt_ids": list(it["prompt_ids"]), "tf_ids": list(it["tf_ids"]),
                    "tf_rows": [row_to_pairs(r) for r in (t.prompt_logprobs or [])[1:]],
                    "gen_ids": list(g.token_ids), "gen_rows": [row_to_pairs(r) for r in (g.logprobs or [])]})
    s = eng.settings()
    label = label or f"vLLM {s.get('platform')} {s.get('dtype')}"
    return {"version": BUNDLE_VERSION, "label": label, "k": k, "environment": environment or {},
            "settings": {kk: s.get(kk) for kk in ("platform", "dtype", "mode", "max_model_len", "seed")},
            "model": model or {}, "items": out}


# -- baselines ------------------------------------------------------------------------------------------------
PRECISION_CHAPTER = "06_precision"


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


def summary_row(label: str, s: dict[str, Any]) -> list[Any]:
    """A table row: label, top-1, max |Δ|, mean |Δ|, mean KL, exact-match lengths, close."""
    def f(x, spec):
        if x is None:
            return "n/a"
        return format(x, ".2e") if spec == ".4f" and 0 < abs(x) < 1e-3 else format(x, spec)
    return [label, f(s.get("top1_agreement"), ".4f"), f(s.get("max_abs_dlogprob"), ".4f"),
            f(s.get("mean_abs_dlogprob"), ".4f"), f(s.get("mean_kl"), ".2e"),
            " ".join(f"{m}/{n}" for m, n in zip(s.get("exact_match_lens", []), s.get("gen_lens", []))),
            f"{s.get('close', 0)}/{s.get('prompts', 0)}"]


SUMMARY_HEADERS = ["对比 Comparison", "top-1 一致率 agreement", "max |Δ logprob|", "mean |Δ logprob|",
                   "mean KL (top-k)", "完全一致长度 exact match", "接近 close"]


def plot_abs_delta(cmp: dict[str, Any], path: Optional[str | Path] = None, title: str = ""):
    """|Δ logprob| of the actual token by position, one line per prompt; prompt end marked."""
    from bitcpm_validation.report import plots

    plots.setup()
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 3.4))
    for p in cmp["per_prompt"]:
        tf = p["teacher_forced"]
        xs = [x for x, d in zip(tf["position_index"], tf["abs_dlogprob"]) if d is not None]
        ys = [max(d, 1e-7) for d in tf["abs_dlogprob"] if d is not None]
        line, = ax.plot(xs, ys, marker=".", lw=1, label=p["id"])
        if tf.get("prompt_len"):
            ax.axvline(tf["prompt_len"] - 0.5, color=line.get_color(), ls=":", lw=0.8)
    ax.set_yscale("log")
    ax.set_xlabel("位置 position (dotted: end of prompt 提示结束)")
    ax.set_ylabel("|Δ logprob|")
    ax.set_title(title or f"{cmp['b']} vs {cmp['a']}")
    ax.legend(fontsize=7, ncol=3)
    fig.tight_layout()
    if path:
        fig.savefig(path)
    return fig


def encode_items(prompts: Iterable[Any], model_dir: str | Path) -> list[tuple[str, list[int]]]:
    """(prompt id, engine token ids) through the project's single prompt → ids function (prompting)."""
    from bitcpm_validation.engine import prompting

    return [(p.id, list(prompting.prompt_ids(p, model_dir))) for p in prompts]
