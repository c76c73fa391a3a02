"""Precision: three implementations of the model on the same token ids, compared pairwise.

- the engine (vLLM, this run's platform and dtype);
- the project's fp32 reference (model.reference: the MiniCPM arithmetic in plain PyTorch);
- transformers running the directory's own remote code (trust_remote_code; for BitCPM4 openbmb's
  modeling_minicpm.py), in float32: the authors' implementation as a second golden.

The *golden* is the implementation whose greedy continuation defines the teacher-forced sequences: the
project's reference where the directory is a MiniCPM it can load, else transformers alone (`choose_golden`).
Every implementation is then scored on the golden's token ids (whole-vocabulary rows where it can give
them, so KL is exact), and every pair is compared (model.agreement: top-1, |Δ logprob|, KL, and vLLM's
check_logprobs_close rule on the free-running continuations), so that a disagreement points at the
implementation that differs. Bundles (model.agreement) are stored for cross-device baselines.

Checks (scope engine), functions of measured summaries: `judge_agreement`, `judge_logprobs_close`,
`judge_baseline`. Heavy imports (torch, transformers, vLLM) happen inside functions.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Optional, Protocol, Sequence

from bitcpm_validation.model import agreement as A

from bitcpm_validation.report.display import T
from bitcpm_validation.report.results import Check
from bitcpm_validation.chapters import registered_checks

CHAPTER = "06_precision"
REFERENCE_ARCHITECTURES = ("MiniCPMForCausalLM",)  # what model.reference implements

# -- checks ---------------------------------------------------------------------------------------------------
CHECKS = registered_checks("06_precision")  # this chapter's entries of chapters/checks.yaml


@dataclass(frozen=True)
class Tolerances:
    min_top1: float
    max_mean_abs_dlogprob: float
    max_kl: float
    max_abs_dlogprob: Optional[float] = None  # float32 pairs only

    @classmethod
    def engine(cls, pp: Any) -> "Tolerances":
        """A pair with the engine at its dtype (BF16 rounding expected)."""
        return cls(pp.min_top1_agreement, pp.max_mean_abs_dlogprob, pp.max_kl)

    @classmethod
    def float32(cls, pp: Any) -> "Tolerances":
        """Two float32 implementations: the same arithmetic, so the differences must be rounding-small."""
        return cls(pp.min_top1_agreement, min(pp.max_mean_abs_dlogprob, pp.float32_max_abs_dlogprob), pp.max_kl,
                   pp.float32_max_abs_dlogprob)


def _num(x: Optional[float]) -> str:
    return A.fmt_small(x, 6)


def agreement_failures(s: dict[str, Any], tol: Tolerances) -> list[tuple[str, str]]:
    """(en, zh) reasons why a comparison summary is outside the tolerances; empty when within."""
    out = []
    if not s.get("positions"):
        return [("no position compared (no prompt in common)", "没有可比较的位置（没有共同的提示）")]
    t1, md, mx, kl = s.get("top1_agreement"), s.get("mean_abs_dlogprob"), s.get("max_abs_dlogprob"), s.get("mean_kl")
    if t1 is None or t1 < tol.min_top1:
        out.append((f"top-1 agreement {_num(t1)} < {tol.min_top1}", f"top-1 一致率 {_num(t1)} < {tol.min_top1}"))
    if md is None or md > tol.max_mean_abs_dlogprob:
        out.append((f"mean |Δ logprob| {_num(md)} > {tol.max_mean_abs_dlogprob}",
                    f"平均 |Δ logprob| {_num(md)} > {tol.max_mean_abs_dlogprob}"))
    if tol.max_abs_dlogprob is not None and (mx is None or mx > tol.max_abs_dlogprob):
        out.append((f"max |Δ logprob| {_num(mx)} > {tol.max_abs_dlogprob}",
                    f"最大 |Δ logprob| {_num(mx)} > {tol.max_abs_dlogprob}"))
    if kl is None:
        out.append(("KL could not be computed exactly at any position", "KL 在任何位置都无法精确计算"))
    elif kl > tol.max_kl:
        out.append((f"mean KL ({s.get('kl_basis')}) {_num(kl)} > {tol.max_kl}",
                    f"平均 KL（{s.get('kl_basis')}）{_num(kl)} > {tol.max_kl}"))
    return out


def _figures(s: dict[str, Any]) -> tuple[str, str]:
    kl = f"{_num(s.get('mean_kl'))} ({s.get('kl_basis') or 'n/a'})"
    en = (f"top-1 {_num(s.get('top1_agreement'))}, mean |Δ| {_num(s.get('mean_abs_dlogprob'))}, "
          f"max |Δ| {_num(s.get('max_abs_dlogprob'))}, mean KL {kl} over {s.get('positions', 0)} positions")
    zh = (f"top-1 {_num(s.get('top1_agreement'))}，平均 |Δ| {_num(s.get('mean_abs_dlogprob'))}，"
          f"最大 |Δ| {_num(s.get('max_abs_dlogprob'))}，平均 KL {kl}，共 {s.get('positions', 0)} 个位置")
    return en, zh


def judge_agreement(pair: str, s: dict[str, Any], tol: Tolerances) -> Check:
    """Teacher-forced agreement of one pair (`pair` like "engine-vs-reference") from its summary."""
    en, zh = _figures(s)
    bad = agreement_failures(s, tol)
    if bad:
        return CHECKS["agreement"].row("fail", "; ".join(b[0] for b in bad) + f" ({en})", "；".join(b[1] for b in bad) + f"（{zh}）",
                             item=pair)
    return CHECKS["agreement"].row("pass", en, zh, item=pair)


def judge_logprobs_close(pair: str, s: dict[str, Any]) -> Check:
    """check_logprobs_close on every prompt of one pair."""
    n, c = s.get("prompts", 0), s.get("close", 0)
    lens = " ".join(f"{m}/{g}" for m, g in zip(s.get("exact_match_lens", []), s.get("gen_lens", [])))
    en = f"{c}/{n} prompts close; exact-match lengths {lens or 'none'}"
    zh = f"{c}/{n} 个提示接近；完全一致长度 {lens or '无'}"
    if not n:
        return CHECKS["logprobs_close"].row("fail", "no prompt compared: " + en, "没有比较任何提示：" + zh, item=pair)
    return CHECKS["logprobs_close"].row("pass" if c == n else "fail", en, zh, item=pair)


def judge_baseline(index: int, path: str, *, error: Optional[str] = None, summary: Optional[dict] = None,
                   same_model: bool = True, tol: Optional[Tolerances] = None) -> Check:
    """A baseline run (precision.baselines[index]) against this run's engine."""
    item = str(index)
    if error is not None:
        return CHECKS["baseline"].row("fail", error, error, item=item)
    if summary is None or tol is None:
        raise ValueError("judge_baseline needs either error or summary and tol")
    en, zh = _figures(summary)
    bad = agreement_failures(summary, tol)
    if not summary.get("prompts") or summary.get("close", 0) < summary.get("prompts", 0):
        bad.append((f"greedy continuations not close on {summary.get('prompts', 0) - summary.get('close', 0)} prompts",
                    f"{summary.get('prompts', 0) - summary.get('close', 0)} 个提示的贪心续写不接近"))
    if bad:
        return CHECKS["baseline"].row("fail", f"{path}: " + "; ".join(b[0] for b in bad) + f" ({en})",
                            f"{path}：" + "；".join(b[1] for b in bad) + f"（{zh}）", item=item)
    if not same_model:
        return CHECKS["baseline"].row("warn", f"{path}: different weights sha256, not the same model ({en})",
                            f"{path}：权重 sha256 不同，不是同一模型（{zh}）", item=item)
    return CHECKS["baseline"].row("pass", f"{path}: {en}", f"{path}：{zh}", item=item)


# -- implementations ------------------------------------------------------------------------------------------
class Implementation(Protocol):
    label: str

    def greedy(self, prompts: Sequence[Sequence[int]], max_new_tokens: int, k: int) -> list[tuple[list[int], list[A.Row]]]:
        """Per prompt: greedy new ids and, per generated token, its top-k row."""

    def score_full(self, seqs: Sequence[Sequence[int]]) -> Optional[list[Any]]:
        """Per sequence: [len-1, vocab] log-probabilities (row i about seq[i+1]), or None if it cannot."""

    def score_topk(self, seqs: Sequence[Sequence[int]], k: int) -> list[list[A.Row]]:
        """Per sequence: per position the top-k and the actual token (when score_full cannot)."""


class ReferenceImpl:
    """The project's fp32 reference (model.reference)."""

    def __init__(self, model_dir: Path, max_model_len: Optional[int] = None):
        from bitcpm_validation.model.reference import ReferenceModel

        self.ref = ReferenceModel.from_pretrained(model_dir, max_model_len=max_model_len)
        self.label = "reference fp32"

    def greedy(self, prompts, max_new_tokens, k):
        out = []
        for ids in prompts:
            new, steps = self.ref.greedy(ids, max_new_tokens=max_new_tokens, top_k=k)
            out.append((list(new), [dict(zip(s.top_ids, s.top_logprobs)) for s in steps]))
        return out

    def score_full(self, seqs):
        return [self.ref.logprobs(s)[:-1].numpy() for s in seqs]

    def score_topk(self, seqs, k):  # pragma: no cover - score_full always works here
        raise NotImplementedError


class TransformersImpl:
    """transformers with the directory's own remote code, float32 on the host CPU."""

    def __init__(self, model: Any):
        self.model = model
        self.label = "transformers fp32 (remote code)"
        eos = getattr(model.generation_config, "eos_token_id", None) or getattr(model.config, "eos_token_id", None)
        self.eos = list(eos) if isinstance(eos, (list, tuple)) else ([eos] if eos is not None else [])

    def greedy(self, prompts, max_new_tokens, k):
        import torch

        out = []
        for ids in prompts:
            x = torch.tensor([list(ids)])
            with torch.no_grad():
                g = self.model.generate(x, attention_mask=torch.ones_like(x), max_new_tokens=max_new_tokens,
                                        do_sample=False, temperature=None, top_p=None, top_k=None,
                                        eos_token_id=self.eos or None, pad_token_id=(self.eos or [0])[0],
                                        return_dict_in_generate=True, output_logits=True)
            new = g.sequences[0, len(ids):].tolist()
            rows = []
            for step in g.logits[: len(new)]:
                lp = torch.log_softmax(step[0].float(), dim=-1)
                v, i = lp.topk(k)
                rows.append(dict(zip(i.tolist(), v.tolist())))
            out.append((new, rows))
        return out

    def score_full(self, seqs):
        import torch

        out = []
        for s in seqs:
            with torch.no_grad():
                logits = self.model(torch.tensor([list(s)]), use_cache=False).logits[0].float()
            out.append(torch.log_softmax(logits, dim=-1)[:-1].numpy())
        return out

    def score_topk(self, seqs, k):  # pragma: no cover - score_full always works here
        raise NotImplementedError


class EngineImpl:
    """A vLLM engine (offline, or the run's shared one): whole-vocabulary scoring where it offers it."""

    def __init__(self, eng: Any, label: str):
        self.eng = eng
        self.label = label
        self.full_error: Optional[str] = None  # why whole-vocabulary rows were not available

    def greedy(self, prompts, max_new_tokens, k):
        gens = self.eng.generate([list(p) for p in prompts], max_tokens=max_new_tokens, logprobs=k)
        return [(list(g.token_ids), [dict(r) for r in (g.logprobs or [])]) for g in gens]

    def score_full(self, seqs):
        from bitcpm_validation.engine.offline import EngineError

        fn = getattr(self.eng, "prompt_logprobs_full", None)
        if fn is None:
            self.full_error = f"{type(self.eng).__name__} offers no whole-vocabulary prompt logprobs"
            return None
        try:
            return fn([list(s) for s in seqs])
        except EngineError as e:
            self.full_error = str(e)
            return None

    def score_topk(self, seqs, k):
        gens = self.eng.generate([list(s) for s in seqs], max_tokens=1, prompt_logprobs=k)
        return [[dict(r) for r in (g.prompt_logprobs or [])[1:]] for g in gens]


def load_transformers(model_dir: Path) -> Any:
    """AutoModelForCausalLM with the directory's remote code, float32, eval mode. Raises RuntimeError with
    one line (the installed transformers' own error) when it does not load."""
    try:
        import torch
        from transformers import AutoModelForCausalLM
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # "Loading weights" bars say nothing in a report
        return AutoModelForCausalLM.from_pretrained(str(model_dir), trust_remote_code=True,
                                                    dtype=torch.float32).eval()
    except Exception as err:  # any import/config/code error of the remote code: report it, do not hide it
        from bitcpm_validation.engine.offline import one_line

        raise RuntimeError(one_line(err)) from None


def choose_golden(model_dir: Path) -> tuple[str, str, str]:
    """("reference" | "transformers", reason_en, reason_zh): the project's reference is the golden where
    the directory's architecture is one it implements; otherwise transformers alone."""
    import json

    try:
        archs = json.loads((Path(model_dir) / "config.json").read_text(encoding="utf-8")).get("architectures") or []
    except (OSError, ValueError, AttributeError) as e:
        return "transformers", f"config.json unreadable for the reference ({e})", f"参考实现无法读取 config.json（{e}）"
    if any(a in REFERENCE_ARCHITECTURES for a in archs):
        return ("reference", f"architecture {', '.join(archs)}: the project's fp32 reference implements it",
                f"架构 {', '.join(archs)}：项目的 fp32 参考实现支持它")
    return ("transformers", f"architecture {', '.join(archs) or 'unknown'}: the project has no reference for it",
            f"架构 {', '.join(archs) or '未知'}：项目没有它的参考实现")


def golden_bundle(impl: Implementation, items: Sequence[tuple[str, list[int]]], k: int, max_new_tokens: int,
                  environment: Optional[dict] = None, model: Optional[dict] = None) -> tuple[dict, dict[str, Any]]:
    """The golden on (id, prompt ids): greedy continuation, then whole-vocabulary rows on prompt + continuation."""
    gens = impl.greedy([ids for _, ids in items], max_new_tokens, k)
    seqs = [list(ids) + new for (_, ids), (new, _) in zip(items, gens)]
    full = impl.score_full(seqs)
    if full is None:
        raise RuntimeError(f"{impl.label} cannot give whole-vocabulary rows: it cannot be the golden")
    out, full_by_id = [], {}
    for (pid, ids), (new, gen_rows), seq, f in zip(items, gens, seqs, full):
        tf_rows = [A.row_to_pairs(A.row_from_full(f[i], k, also=[seq[i + 1]])) for i in range(len(seq) - 1)]
        out.append({"id": pid, "prompt_ids": list(ids), "tf_ids": seq, "tf_rows": tf_rows,
                    "gen_ids": new, "gen_rows": [A.row_to_pairs(r) for r in gen_rows]})
        full_by_id[pid] = f
    return ({"version": A.BUNDLE_VERSION, "label": impl.label, "k": k, "environment": environment or {},
             "model": model or {}, "items": out}, full_by_id)


def follower_bundle(impl: Implementation, golden: dict, golden_full: dict[str, Any], k: int, max_new_tokens: int,
                    environment: Optional[dict] = None, model: Optional[dict] = None,
                    settings: Optional[dict] = None) -> tuple[dict, Optional[dict[str, Any]]]:
    """Another implementation on the golden's sequences: its rows list its own top-k, the actual token and
    the golden's top-k (exact top-k KL in any later comparison with the golden); whole rows where it can."""
    items = golden["items"]
    seqs = [it["tf_ids"] for it in items]
    full = impl.score_full(seqs)
    if full is not None:
        tf_all = []
        for it, f in zip(items, full):
            g = golden_full[it["id"]]
            tf_all.append([A.row_from_full(f[i], k, also=[it["tf_ids"][i + 1], *A.full_topk(g[i], k)])
                           for i in range(len(it["tf_ids"]) - 1)])
    else:
        tf_all = impl.score_topk(seqs, k)
    gens = impl.greedy([it["prompt_ids"] for it in items], max_new_tokens, k)
    out = [{"id": it["id"], "prompt_ids": list(it["prompt_ids"]), "tf_ids": list(it["tf_ids"]),
            "tf_rows": [A.row_to_pairs(r) for r in rows], "gen_ids": new, "gen_rows": [A.row_to_pairs(r) for r in gr]}
           for it, rows, (new, gr) in zip(items, tf_all, gens)]
    b = {"version": A.BUNDLE_VERSION, "label": impl.label, "k": k, "environment": environment or {},
         "model": model or {}, "items": out}
    if settings:
        b["settings"] = settings
    return b, ({it["id"]: f for it, f in zip(items, full)} if full is not None else None)


# -- presentation -------------------------------------------------------------------------------------------
SUMMARY_HEADERS = [T("对比", "Comparison"), T("top-1 一致率", "top-1 agreement"), "max |Δ logprob|",
                   "mean |Δ logprob|", "mean KL", T("KL 基础", "KL basis"), T("完全一致长度", "exact match"),
                   T("接近", "close")]


def summary_row(label: Any, s: dict[str, Any]) -> list[Any]:
    return [label, *A.summary_cells(s)]


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


def encode_items(prompts: Iterable[Any], model_dir: str | Path) -> list[tuple[str, list[int]]]:
    """(prompt id, engine token ids) through the project's single prompt → ids function (prompting)."""
    from bitcpm_validation.engine import prompting

    return [(p.id, list(prompting.prompt_ids(p, model_dir))) for p in prompts]


def plot_abs_delta(cmp: dict[str, Any], path: Optional[str | Path] = None, title: str = "", lang: str = "en"):
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
    ax.set_xlabel("位置（点线：提示结束）" if lang == "zh" else "position (dotted: end of prompt)")
    ax.set_ylabel("|Δ logprob|")
    ax.set_title(title or f"{cmp['b']} vs {cmp['a']}")
    ax.legend(fontsize=7, ncol=3)
    fig.tight_layout()
    if path:
        fig.savefig(path)
    return fig
