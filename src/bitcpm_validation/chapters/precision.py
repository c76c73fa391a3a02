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
    tie_margin: float = 0.0          # nats: a top-1 flip below the golden's margin is a tie (the dtype's noise)
    min_decisive_share: float = 0.0  # a comparison counts only with at least this share of decisive positions

    @classmethod
    def engine(cls, pp: Any, dtype: Optional[str] = None) -> "Tolerances":
        """A pair with the engine at its dtype (BF16 rounding expected)."""
        return cls(pp.min_top1_agreement, pp.max_mean_abs_dlogprob, pp.max_kl,
                   tie_margin=tie_margin_of(pp, dtype), min_decisive_share=pp.min_decisive_share)

    @classmethod
    def float32(cls, pp: Any) -> "Tolerances":
        """Two float32 implementations: the same arithmetic, so the differences must be rounding-small."""
        return cls(pp.min_top1_agreement, min(pp.max_mean_abs_dlogprob, pp.float32_max_abs_dlogprob), pp.max_kl,
                   pp.float32_max_abs_dlogprob, tie_margin=tie_margin_of(pp, "float32"),
                   min_decisive_share=pp.min_decisive_share)


def tie_margin_of(pp: Any, dtype: Optional[str]) -> float:
    """precision.tie_margin of an engine dtype (the largest one listed where the dtype is unknown)."""
    margins = dict(getattr(pp, "tie_margin", {}) or {})
    if not margins:
        return 0.0
    return float(margins.get(str(dtype), max(margins.values())))


def _num(x: Optional[float]) -> str:
    return A.fmt_small(x, 6)


def agreement_failures(s: dict[str, Any], tol: Tolerances) -> list[tuple[str, str]]:
    """(en, zh) reasons why a comparison summary is outside the tolerances; empty when within."""
    out = []
    if not s.get("positions"):
        return [("no position compared (no prompt in common)", "没有可比较的位置（没有共同的提示）")]
    t1, md, mx, kl = s.get("top1_agreement"), s.get("mean_abs_dlogprob"), s.get("max_abs_dlogprob"), s.get("mean_kl")
    if tol.min_decisive_share and s.get("decisive_share") is not None:
        t1 = s.get("top1_agreement_decisive")  # ties (flips below the dtype's noise) are not disagreements
        if s["decisive_share"] < tol.min_decisive_share:
            out.append((f"only {s['decisive_share']:.0%} of the positions are decisive (golden's top-1 margin ≥ "
                        f"{tol.tie_margin} nat; needs ≥ {tol.min_decisive_share:.0%}): flat logits cannot pass",
                        f"只有 {s['decisive_share']:.0%} 的位置是决定性的（黄金实现 top-1 边际 ≥ {tol.tie_margin} 奈特；需要 ≥ "
                        f"{tol.min_decisive_share:.0%}）：平坦的对数几率不能通过"))
    if t1 is None or t1 < tol.min_top1:
        out.append((f"top-1 agreement {_num(t1)} < {tol.min_top1}", f"top-1 一致率 {_num(t1)} < {tol.min_top1}"))
    if md is None or md > tol.max_mean_abs_dlogprob:
        out.append((f"mean |Δ logprob| {_num(md)} > {tol.max_mean_abs_dlogprob}",
                    f"平均 |Δ 对数概率| {_num(md)} > {tol.max_mean_abs_dlogprob}"))
    if tol.max_abs_dlogprob is not None and (mx is None or mx > tol.max_abs_dlogprob):
        out.append((f"max |Δ logprob| {_num(mx)} > {tol.max_abs_dlogprob}",
                    f"最大 |Δ 对数概率| {_num(mx)} > {tol.max_abs_dlogprob}"))
    if kl is None:
        out.append(("KL could not be computed exactly at any position", "KL 在任何位置都无法精确计算"))
    elif kl > tol.max_kl:
        out.append((f"mean KL ({s.get('kl_basis')}) {_num(kl)} > {tol.max_kl}",
                    f"平均 KL（{basis_zh(s.get('kl_basis'))}）{_num(kl)} > {tol.max_kl}"))
    return out


# the KL's basis (model.agreement's kl_basis) in Chinese (top-k is a name)
KL_BASIS_ZH = {"full": "整个词表", "top-k": "top-k", "shared top-k support": "双方共同列出的 top-k"}


def basis_zh(basis: Optional[str]) -> str:
    return KL_BASIS_ZH.get(basis or "", basis or "无")


def region_split(s: dict[str, Any]) -> tuple[str, str]:
    """Top-1 agreement on the prompt's positions and on the generated ones, each with its n (the decisive positions
    it is computed over): a flip in the prompt does not change what is generated; "" when the summary has no split."""
    pr, ge = s.get("prompt_region"), s.get("generated_region")
    if not pr and not ge:
        return "", ""
    pr, ge = pr or {}, ge or {}
    return (f"prompt positions {_num(pr.get('top1_agreement'))} (n = {pr.get('decisive', 0):,}), generated "
            f"{_num(ge.get('top1_agreement'))} (n = {ge.get('decisive', 0):,})",
            f"提示位置 {_num(pr.get('top1_agreement'))}（n = {pr.get('decisive', 0):,}），生成位置 "
            f"{_num(ge.get('top1_agreement'))}（n = {ge.get('decisive', 0):,}）")


def _figures(s: dict[str, Any]) -> tuple[str, str]:
    kl = f"{_num(s.get('mean_kl'))} nat ({s.get('kl_basis') or 'n/a'})"
    split_en, split_zh = region_split(s)
    en = (f"top-1 {_num(s.get('top1_agreement'))}" + (f" [{split_en}]" if split_en else "")
          + f", mean |Δ logprob| {_num(s.get('mean_abs_dlogprob'))} nat, max |Δ logprob| {_num(s.get('max_abs_dlogprob'))} nat, "
          f"mean KL {kl} over n = {s.get('positions', 0):,} positions")
    zh = (f"top-1 {_num(s.get('top1_agreement'))}" + (f"［{split_zh}］" if split_zh else "")
          + f"，平均 |Δ 对数概率| {_num(s.get('mean_abs_dlogprob'))} 奈特，最大 |Δ 对数概率| {_num(s.get('max_abs_dlogprob'))} 奈特，"
          f"平均 KL {_num(s.get('mean_kl'))} 奈特（{basis_zh(s.get('kl_basis'))}），共 n = {s.get('positions', 0):,} 个位置")
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


def topk_rows(full: Any, seq: Sequence[int], k: int) -> list[A.Row]:
    """Per position the top-k and the actual token of a whole-vocabulary row set (as an engine's prompt_logprobs=k)."""
    return [A.row_from_full(full[i], k, also=[seq[i + 1]]) for i in range(len(seq) - 1)]


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

    def greedy_with_rows(self, prompt, max_new_tokens, k):
        """One prompt: (new ids, per-step top-k rows, [len(prompt + new) - 1, vocab] rows) from one prefill: the
        teacher-forced rows of its own continuation without a second forward over the prompt."""
        new, steps, rows = self.ref.greedy_with_rows(prompt, max_new_tokens=max_new_tokens, top_k=k)
        return list(new), [dict(zip(s.top_ids, s.top_logprobs)) for s in steps], rows.numpy()

    def score_topk(self, seqs, k):
        return [topk_rows(self.score_full([s])[0], s, k) for s in seqs]


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

    def score_topk(self, seqs, k):
        return [topk_rows(self.score_full([s])[0], s, k) for s in seqs]


class EngineImpl:
    """A vLLM engine (offline, or the run's shared one): whole-vocabulary scoring where it offers it."""

    def __init__(self, eng: Any, label: str, ids_only: bool = False):
        self.eng = eng
        self.label = label
        self.full_error: Optional[str] = None  # why whole-vocabulary rows were not available
        # token ids only (a synthetic checkpoint: its head scores ids its tokenizer cannot decode; offline engine)
        self.ids_only: dict[str, Any] = {"detokenize": False} if ids_only else {}

    def greedy(self, prompts, max_new_tokens, k):
        gens = self.eng.generate([list(p) for p in prompts], max_tokens=max_new_tokens, logprobs=k, **self.ids_only)
        return [(list(g.token_ids), [dict(r) for r in (g.logprobs or [])]) for g in gens]

    def score_full(self, seqs):
        from bitcpm_validation.engine.base import EngineError

        if self.full_error:  # refused once (probe_whole_vocab): top-k rows from then on
            return None
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
        gens = self.eng.generate([list(s) for s in seqs], max_tokens=1, prompt_logprobs=k, **self.ids_only)
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
        from bitcpm_validation.engine.base import error_line

        raise RuntimeError(error_line(err)) from None


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


# -- prompt families, lengths and engine features -----------------------------------------------------------
LONG_TEXT = Path(__file__).resolve().parents[1] / "model" / "corpus" / "long_text.txt"  # public domain (long_text.md)
WHOLE_VOCAB_PROBE_LEN = 3  # tokens of the first whole-vocabulary request: small, so a refusal costs nothing


@dataclass
class FamilyItem:
    id: str            # unique prompt id, e.g. "long-1024"
    group: str         # one table row / check item: "zh", "chat", "long-1024", "kv-block-129"
    family: str        # short | zh | chat | long | long_zh | kv-block
    ids: list[int]
    whole_vocab: bool  # whole-vocabulary rows (short prompts only; top-k for the long ones)
    source: str = ""   # chat: "server chat path" (its template's ids) or "project ChatML" (no server)
    project_ids: Optional[list[int]] = None  # chat: the project's own ChatML encoding, for the comparison


def long_text(lang: str) -> str:
    """The shipped public-domain text of one language (zh: lines with CJK ideographs, en: the others)."""
    lines = [ln for ln in LONG_TEXT.read_text(encoding="utf-8").splitlines() if ln.strip()]
    cjk = [any("\u4e00" <= ch <= "\u9fff" for ch in ln) for ln in lines]
    return "\n".join(ln for ln, z in zip(lines, cjk) if z == (lang == "zh"))


def _special_ids(model_dir: Path, key: str) -> set[int]:
    import json

    try:
        e = json.loads((Path(model_dir) / "config.json").read_text(encoding="utf-8")).get(key)
    except (OSError, ValueError):
        return set()
    return set(e) if isinstance(e, list) else ({e} if isinstance(e, int) else set())


def long_ids(model_dir: Path, lang: str, n: int, skip_paragraphs: int = 0) -> list[int]:
    """The first n token ids of the shipped text (from paragraph `skip_paragraphs`), encoded as a raw prompt
    (BOS as the tokenizer config says); the text is cycled when it is shorter than n tokens."""
    from bitcpm_validation.engine import prompting

    text = "\n".join(long_text(lang).splitlines()[skip_paragraphs:])
    ids = list(prompting.prompt_ids(text, model_dir))
    eos = _special_ids(model_dir, "eos_token_id")
    while ids and ids[-1] in eos:
        ids.pop()
    body = ids[1:] if ids and ids[0] in _special_ids(model_dir, "bos_token_id") else ids  # cycle without the BOS
    out = list(ids)
    while len(out) < n:
        out += body
    return out[:n]


def long_lengths(pp: Any, max_model_len: int, max_new_tokens: int) -> list[int]:
    """precision.long_lengths resolved for this profile (-1: max_model_len - new tokens), deduplicated."""
    cap = max_model_len - max_new_tokens
    out = []
    for n in pp.long_lengths:
        n = cap if n == -1 else n
        if 2 <= n <= cap and n not in out:
            out.append(n)
    return out


def family_items(prompts: Sequence[Any], pp: Any, model_dir: Path, max_model_len: int,
                 block_size: Optional[int], max_new_tokens: int, chat_path: Any = None) -> list[FamilyItem]:
    """The prompt families beyond today's short English ones: Chinese and chat (ChatML, no BOS, as the server's
    chat path) from the probe set; long English prompts at precision.long_lengths and one long Chinese prompt,
    from the shipped text; prompts of block size - 1, block size, block size + 1 tokens. `chat_path(messages)`
    (the shared server's chat_prompt_ids): the chat prompts' ids as the server's chat path builds them."""
    from bitcpm_validation.engine import prompting

    out: list[FamilyItem] = []
    raw = [p for p in prompts if not getattr(p, "chat", False)]
    for p in [p for p in raw if p.lang == "zh"][: pp.family_prompts]:
        out.append(FamilyItem(p.id, "zh", "zh", list(prompting.prompt_ids(p, model_dir)), True))
    for p in [p for p in raw if p.lang == "en"][: pp.family_prompts]:
        c = prompting.with_chat(p)
        own = list(prompting.prompt_ids(c, model_dir))
        served = chat_path([{"role": "user", "content": p.prompt}]) if chat_path is not None else None
        out.append(FamilyItem(c.id, "chat", "chat", list(served) if served else own, True,
                              "server chat path" if served else "project ChatML", own))
    cap = max_model_len - max_new_tokens
    for n in long_lengths(pp, max_model_len, max_new_tokens):
        out.append(FamilyItem(f"long-{n}", f"long-{n}", "long", long_ids(model_dir, "en", n), False))
    n_zh = min(1024, cap)
    if n_zh >= 2:
        out.append(FamilyItem(f"long_zh-{n_zh}", f"long_zh-{n_zh}", "long_zh", long_ids(model_dir, "zh", n_zh), False))
    if pp.block_boundaries and block_size:
        for n in (block_size - 1, block_size, block_size + 1):
            if 2 <= n <= cap:
                out.append(FamilyItem(f"kv-block-{n}", f"kv-block-{n}", "kv-block", long_ids(model_dir, "en", n, 1),
                                      False))
    return out


def engine_block_size(eng: Any) -> tuple[Optional[int], str]:
    """(KV block size in tokens, where it was read): the offline engine's vllm_config.cache_config, or the shared
    server's /metrics (vllm:cache_config_info)."""
    if hasattr(eng, "metrics"):  # the shared server's client
        try:
            v = eng.metrics().get("cache_config.block_size")
        except Exception as err:  # noqa: BLE001  (the server's own error, reported as the source)
            return None, f"server /metrics unreadable ({type(err).__name__})"
        return (int(v), "server /metrics (vllm:cache_config_info)") if v and str(v).isdigit() else (None, "not in /metrics")
    cc = getattr(getattr(getattr(getattr(eng, "llm", None), "llm_engine", None), "vllm_config", None), "cache_config", None)
    bs = getattr(cc, "block_size", None)
    return (int(bs), "vllm_config.cache_config") if bs else (None, "no cache_config on the engine")


def probe_whole_vocab(eng_impl: "EngineImpl", ids: Sequence[int], alive: Any = None) -> dict[str, Any]:
    """A small first whole-vocabulary request (WHOLE_VOCAB_PROBE_LEN tokens). On a refusal or a dead engine
    the EngineImpl is switched to top-k rows (full_error set) and the reason returned:
    {"ok", "error", "engine_alive"}. `alive()` says whether the engine still answers (the shared server's
    /health); None: assumed alive."""
    ids = list(ids)[:WHOLE_VOCAB_PROBE_LEN]
    rows = eng_impl.score_full([ids]) if len(ids) >= 2 else None
    ok = rows is not None and len(rows) == 1 and rows[0].shape[0] == len(ids) - 1
    is_alive = bool(alive()) if alive is not None else True
    if not ok and not eng_impl.full_error:
        eng_impl.full_error = "the first whole-vocabulary request returned no rows"
    return {"ok": ok, "error": None if ok else eng_impl.full_error, "engine_alive": is_alive}


def judge_whole_vocab(probe: dict[str, Any]) -> Check:
    if probe["ok"]:
        return CHECKS["whole_vocab"].row("pass", "a 3-token request with prompt_logprobs = -1 returned whole rows",
                                         "3 个词元的请求（prompt_logprobs = -1）返回了整行")
    dead = "" if probe.get("engine_alive", True) else "; the engine died and was replaced"
    dead_zh = "" if probe.get("engine_alive", True) else "；引擎退出，已换用新的引擎"
    return CHECKS["whole_vocab"].row(
        "warn", f"refused ({probe.get('error')}){dead}: top-k rows, KL exact on the shared support",
        f"被拒绝（{probe.get('error')}）{dead_zh}：改用 top-k 行，KL 在共同支撑上精确计算")


def _golden_items(impl: Implementation, items: Sequence[FamilyItem], k: int, max_new_tokens: int,
                  keep_full: bool) -> tuple[list[dict], dict[str, Any]]:
    """The golden's bundle items one prompt at a time (a whole-vocabulary row set of a 4,000-token prompt on a
    73,448-token vocabulary is 1.2 GB: only short prompts keep theirs, `keep_full`)."""
    out, full = [], {}
    with_rows = getattr(impl, "greedy_with_rows", None)  # the reference: rows from the greedy's own prefill
    for it in items:
        if with_rows is not None:
            new, gen_rows, f = with_rows(it.ids, max_new_tokens, k)
        else:
            (new, gen_rows), = impl.greedy([it.ids], max_new_tokens, k)
            f = impl.score_full([list(it.ids) + list(new)])[0]
        seq = list(it.ids) + list(new)
        out.append({"id": it.id, "prompt_ids": list(it.ids), "tf_ids": seq,
                    "tf_rows": [A.row_to_pairs(A.row_from_full(f[i], k, also=[seq[i + 1]])) for i in range(len(seq) - 1)],
                    "gen_ids": list(new), "gen_rows": [A.row_to_pairs(r) for r in gen_rows]})
        if keep_full:
            full[it.id] = f
        del f
    return out, full


def run_families(golden: Implementation, engine: "EngineImpl", items: Sequence[FamilyItem], pp: Any,
                 tie_margin: float, label_golden: str = "golden", label_engine: str = "engine") -> dict[str, Any]:
    """Engine vs golden on every family item: {"golden": bundle, "engine": bundle, "comparison": compare_bundles,
    "groups": {group: summary}, "families": {group: family}, "lengths": {group: [prompt lengths]}}.
    Short items: whole-vocabulary rows (top_k); long ones: top-k rows (top_k_long), KL on the listed support."""
    import time

    short = [it for it in items if it.whole_vocab]
    long_ = [it for it in items if not it.whole_vocab]
    t0 = time.monotonic()
    g_short, g_full = _golden_items(golden, short, pp.top_k, pp.max_new_tokens, keep_full=True)
    g_long, _ = _golden_items(golden, long_, pp.top_k_long, pp.max_new_tokens, keep_full=False)
    golden_s = time.monotonic() - t0
    gb_short = {"version": A.BUNDLE_VERSION, "label": label_golden, "k": pp.top_k, "items": g_short}
    gb_long = {"version": A.BUNDLE_VERSION, "label": label_golden, "k": pp.top_k_long, "items": g_long}
    t0 = time.monotonic()
    eb_short, e_full = follower_bundle(engine, gb_short, g_full, pp.top_k, pp.max_new_tokens) if short else (
        {**gb_short, "items": []}, None)
    eb_long = {"version": A.BUNDLE_VERSION, "label": label_engine, "k": pp.top_k_long, "items": []}
    if long_:
        seqs = [it["tf_ids"] for it in g_long]
        rows = engine.score_topk(seqs, pp.top_k_long)
        gens = engine.greedy([it["prompt_ids"] for it in g_long], pp.max_new_tokens, pp.top_k_long)
        eb_long["items"] = [{"id": it["id"], "prompt_ids": it["prompt_ids"], "tf_ids": it["tf_ids"],
                             "tf_rows": [A.row_to_pairs(r) for r in rw], "gen_ids": new,
                             "gen_rows": [A.row_to_pairs(r) for r in gr]}
                            for it, rw, (new, gr) in zip(g_long, rows, gens)]
    engine_s = time.monotonic() - t0
    c_short = A.compare_bundles(gb_short, eb_short, full=(g_full, e_full) if e_full else None, tie_margin=tie_margin)
    c_long = A.compare_bundles(gb_long, eb_long, tie_margin=tie_margin)
    per = c_short["per_prompt"] + c_long["per_prompt"]
    group_of = {it.id: it.group for it in items}
    groups: dict[str, dict] = {}
    for g in dict.fromkeys(it.group for it in items):
        groups[g] = A.summarize([p for p in per if group_of[p["id"]] == g])
    return {"golden": {"short": gb_short, "long": gb_long}, "engine": {"short": eb_short, "long": eb_long},
            "per_prompt": per, "groups": groups, "families": {it.group: it.family for it in items},
            "lengths": {g: [len(it.ids) for it in items if it.group == g] for g in groups},
            "whole_vocab": {g: any(it.whole_vocab for it in items if it.group == g) for g in groups},
            "timings": {"golden_s": round(golden_s, 2), "engine_s": round(engine_s, 2)}}


def judge_family(group: str, s: dict[str, Any], tol: Tolerances) -> Check:
    """Engine vs golden on one family / length (family_agreement)."""
    en, zh = _figures(s)
    extra_en = (f"; {s.get('decisive_share', 0):.0%} decisive, {s.get('ties', 0)} ties, {s.get('flips', 0)} flips"
                if s.get("decisive_share") is not None else "")
    extra_zh = (f"；决定性位置 {s.get('decisive_share', 0):.0%}，平局 {s.get('ties', 0)}，翻转 {s.get('flips', 0)}"
                if s.get("decisive_share") is not None else "")
    bad = agreement_failures(s, tol)
    if bad:
        return CHECKS["family_agreement"].row("fail", "; ".join(b[0] for b in bad) + f" ({en}{extra_en})",
                                              "；".join(b[1] for b in bad) + f"（{zh}{extra_zh}）", item=group)
    return CHECKS["family_agreement"].row("pass", en + extra_en, zh + extra_zh, item=group)


def chunk_split(per: Sequence[dict[str, Any]], budget: int) -> dict[str, Any]:
    """Positions of prompts longer than `budget` (max_num_batched_tokens) split into the first chunk (rows
    computed from tokens < budget: an unchunked prefill) and the later chunks (reading the KV of earlier chunks)."""
    longer = [p for p in per if (p["teacher_forced"].get("prompt_len") or 0) > budget]
    first = A.region_stats(longer, lambda pos, pl: pos <= budget) if longer else None
    later = A.region_stats(longer, lambda pos, pl: budget < pos < pl) if longer else None
    return {"budget": budget, "prompts": [p["id"] for p in longer], "first_chunk": first, "later_chunks": later}


def judge_chunked(split: Optional[dict[str, Any]], tol: Tolerances, reason_en: str = "", reason_zh: str = "") -> Check:
    if split is None or not split.get("prompts"):
        return CHECKS["chunked_prefill"].not_run(reason_en or "no prompt longer than max_num_batched_tokens",
                                                 reason_zh or "没有长于 max_num_batched_tokens 的提示")
    later, first = split["later_chunks"], split["first_chunk"]
    fmt = lambda r: (f"top-1 {_num(r.get('top1_agreement'))}, mean |Δ| {_num(r.get('mean_abs_dlogprob'))}, "  # noqa: E731
                     f"max |Δ| {_num(r.get('max_abs_dlogprob'))} over {r.get('positions', 0)} positions")
    fmt_zh = lambda r: (f"top-1 {_num(r.get('top1_agreement'))}，平均 |Δ| {_num(r.get('mean_abs_dlogprob'))}，"  # noqa: E731
                        f"最大 |Δ| {_num(r.get('max_abs_dlogprob'))}，共 {r.get('positions', 0)} 个位置")
    en = (f"budget {split['budget']} tokens, {len(split['prompts'])} prompts chunked; later chunks: {fmt(later)}; "
          f"first chunk: {fmt(first)}")
    zh = (f"预算 {split['budget']} 个词元，{len(split['prompts'])} 个提示被分块；之后各块：{fmt_zh(later)}；第一块：{fmt_zh(first)}")
    bad = []
    if not later.get("positions"):
        bad.append("no position after the first chunk")
    if later.get("top1_agreement") is None or later["top1_agreement"] < tol.min_top1:
        bad.append(f"top-1 {_num(later.get('top1_agreement'))} < {tol.min_top1}")
    if later.get("mean_abs_dlogprob") is None or later["mean_abs_dlogprob"] > tol.max_mean_abs_dlogprob:
        bad.append(f"mean |Δ| {_num(later.get('mean_abs_dlogprob'))} > {tol.max_mean_abs_dlogprob}")
    if later.get("positions") and later.get("decisive", 0) / later["positions"] < tol.min_decisive_share:
        bad.append(f"only {later['decisive'] / later['positions']:.0%} of the positions decisive")
    if bad:
        return CHECKS["chunked_prefill"].row("fail", "; ".join(bad) + f" ({en})", "；".join(bad) + f"（{zh}）")
    return CHECKS["chunked_prefill"].row("pass", en, zh)


def cached_generate(eng: Any, ids: Sequence[int], max_new_tokens: int, k: int) -> tuple[Any, Optional[int], str]:
    """(Generation, prompt tokens served from the prefix cache, where that number came from). The offline engine
    reports num_cached_tokens per request; the shared server in its usage only with
    --enable-prompt-tokens-details, else from its /metrics counters (vllm:prefix_cache_hits, _queries) read
    before and after this request alone."""
    import time

    before = eng.metrics() if hasattr(eng, "metrics") else None
    g = eng.generate([list(ids)], max_tokens=max_new_tokens, logprobs=k)[0]
    if g.num_cached_tokens is not None:
        return g, int(g.num_cached_tokens), "num_cached_tokens"
    if before is None:
        return g, None, "the engine reports no cached tokens"
    q0, h0 = before.get("vllm:prefix_cache_queries_total", 0.0), before.get("vllm:prefix_cache_hits_total", 0.0)
    deadline = time.monotonic() + 5.0
    while True:  # the counters are updated by the server's output loop, just after the response
        after = eng.metrics()
        if after.get("vllm:prefix_cache_queries_total", 0.0) - q0 >= len(ids) or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    if "vllm:prefix_cache_hits_total" not in after:
        return g, None, "server /metrics has no vllm:prefix_cache_hits"
    return g, int(after["vllm:prefix_cache_hits_total"] - h0), "server /metrics (vllm:prefix_cache_hits)"


def _gen_delta(a: Any, b: Any) -> dict[str, Any]:
    """Two generations of the same prompt: common prefix of tokens, max |Δ logprob| of the chosen tokens there."""
    n = A.common_prefix(a.token_ids, b.token_ids)
    d = [abs(a.logprobs[i][t] - b.logprobs[i][t]) for i, t in enumerate(a.token_ids[:n])
         if a.logprobs and b.logprobs and t in a.logprobs[i] and t in b.logprobs[i]]
    return {"same_tokens": list(a.token_ids) == list(b.token_ids), "match_len": n,
            "len": max(len(a.token_ids), len(b.token_ids)), "max_abs_dlogprob": max(d) if d else None}


def prefix_cache_probe(eng: Any, ids: Sequence[int], golden_ids: Sequence[int], golden_rows: Sequence[A.Row],
                       max_new_tokens: int, k: int) -> dict[str, Any]:
    """Send a prompt of more than two KV blocks twice (cold, then cached); compare the generated tokens and
    logprobs of the two and each with the golden's greedy continuation (free_running)."""
    cold, c_cold, src = cached_generate(eng, ids, max_new_tokens, k)
    warm, c_warm, _ = cached_generate(eng, ids, max_new_tokens, k)
    fr = lambda g: A.free_running(list(golden_ids), list(golden_rows), g.token_ids, g.logprobs or [], k)  # noqa: E731
    return {"prompt_len": len(ids), "cached_cold": c_cold, "cached_warm": c_warm, "cached_source": src,
            "cold_vs_warm": _gen_delta(cold, warm), "cold_vs_golden": fr(cold), "warm_vs_golden": fr(warm)}


def judge_prefix_cache(probe: dict[str, Any], max_abs: float) -> Check:
    d, cw = probe["cold_vs_warm"], probe.get("cached_warm")
    en = (f"{probe['prompt_len']}-token prompt: cached tokens {probe.get('cached_cold')} cold, {cw} second "
          f"({probe.get('cached_source')}); tokens {d['match_len']}/{d['len']} equal, max |Δ logprob| "
          f"{_num(d.get('max_abs_dlogprob'))} (≤ {max_abs})")
    zh = (f"{probe['prompt_len']} 个词元的提示：缓存词元冷请求 {probe.get('cached_cold')}，第二次 {cw}"
          f"（`{probe.get('cached_source')}`）；词元 {d['match_len']}/{d['len']} 相同，最大 |Δ 对数概率| "
          f"{_num(d.get('max_abs_dlogprob'))}（≤ {max_abs}）")
    if cw is None:
        return CHECKS["prefix_cache"].not_run("the engine reports no cached-token count: " + en,
                                              "引擎没有报告缓存词元数：" + zh)
    bad = []
    if cw <= 0:
        bad.append(("the second request did not hit the prefix cache (is prefix caching on?)",
                    "第二次请求没有命中前缀缓存（前缀缓存是否开启？）"))
    if not d["same_tokens"] or d.get("max_abs_dlogprob") is None or d["max_abs_dlogprob"] > max_abs:
        bad.append(("the cached request differs from the cold one (stale or misplaced KV?)",
                    "缓存请求与冷请求不同（KV 过期或错位？）"))
    for key, en_, zh_ in (("cold_vs_golden", "cold", "冷请求"), ("warm_vs_golden", "cached", "缓存请求")):
        if not probe[key]["close"]:
            bad.append((f"the {en_} request is not close to the golden at token {probe[key]['first_divergence']}",
                        f"{zh_}在第 {probe[key]['first_divergence']} 个词元处与黄金实现不接近"))
    if bad:
        return CHECKS["prefix_cache"].row("fail", "; ".join(b[0] for b in bad) + f" ({en})",
                                          "；".join(b[1] for b in bad) + f"（{zh}）")
    return CHECKS["prefix_cache"].row("pass", en, zh)


def batch_probe(eng: Any, prompts: Sequence[tuple[str, Sequence[int]]], max_new_tokens: int, k: int) -> dict[str, Any]:
    """The prompts as one batch (the shared server: concurrent requests) vs each alone."""
    batch = eng.generate([list(ids) for _, ids in prompts], max_tokens=max_new_tokens, logprobs=k)
    alone = [eng.generate([list(ids)], max_tokens=max_new_tokens, logprobs=k)[0] for _, ids in prompts]
    per = {}
    for (pid, ids), b, a in zip(prompts, batch, alone):
        per[pid] = {"prompt_len": len(ids), **_gen_delta(a, b),
                    "close": A.free_running(a.token_ids, a.logprobs or [], b.token_ids, b.logprobs or [], k)["close"]}
    return {"per_prompt": per}


def judge_batch(probe: dict[str, Any], max_abs: float) -> Check:
    per = probe["per_prompt"]
    same = [p for p, d in per.items() if d["same_tokens"] and (d["max_abs_dlogprob"] or 0.0) <= max_abs]
    worst = max((d["max_abs_dlogprob"] or 0.0 for d in per.values()), default=0.0)
    lens = sorted({d["prompt_len"] for d in per.values()})
    en = (f"{len(same)}/{len(per)} prompts (lengths {lens[0] if lens else 0}–{lens[-1] if lens else 0}) identical "
          f"in the batch and alone; max |Δ logprob| {_num(worst)} (≤ {max_abs})")
    zh = (f"{len(same)}/{len(per)} 个提示（长度 {lens[0] if lens else 0}–{lens[-1] if lens else 0}）在批内与单独发送时相同；"
          f"最大 |Δ 对数概率| {_num(worst)}（≤ {max_abs}）")
    if not per:
        return CHECKS["batch_mixed"].not_run("no prompt sent", "没有发送提示")
    if len(same) == len(per):
        return CHECKS["batch_mixed"].row("pass", en, zh)
    far = [p for p, d in per.items() if not d["close"]]
    tail_en = f"; not close (check_logprobs_close) on {', '.join(far)}" if far else "; every difference is close"
    tail_zh = f"；不接近（check_logprobs_close）：{', '.join(far)}" if far else "；所有差异都接近"
    return CHECKS["batch_mixed"].row("warn", en + tail_en + " (vLLM does not promise batch invariance)",
                                     zh + tail_zh + "（vLLM 不保证批不变性）")


def compared_shapes(model_dir: Path, groups: dict[str, dict], lengths: dict[str, list[int]]) -> str:
    """One line for page one: the shape compared and the prompt lengths per family (tokens)."""
    import json

    try:
        c = json.loads((Path(model_dir) / "config.json").read_text(encoding="utf-8"))
        shape = (f"{c.get('num_hidden_layers')}L×{c.get('hidden_size')}, "
                 f"GQA {c.get('num_attention_heads')}:{c.get('num_key_value_heads')}, vocab {c.get('vocab_size'):,}")
    except (OSError, ValueError, TypeError):
        shape = "shape unknown"
    parts = []
    for g in groups:
        ls = lengths.get(g) or []
        parts.append(f"{g} {min(ls)}–{max(ls)}" if len(set(ls)) > 1 else f"{g} {ls[0] if ls else 0}")
    return f"{Path(model_dir).name} ({shape}): " + ", ".join(parts) + " tokens"


def alive_check(eng: Any) -> Optional[Any]:
    """A function saying whether the engine still answers: the shared server's /health; None for an offline
    engine in this process (if it died, the chapter's next call raises)."""
    info = getattr(eng, "info", None)
    if info is None:
        return None
    from bitcpm_validation.engine import shared

    return lambda: shared.alive(info)


def run_features(eng: Any, golden: Implementation, fam: dict[str, Any], short_items: Sequence[tuple[str, list[int]]],
                 fam_items: Sequence[FamilyItem], settings: dict[str, Any], block_size: Optional[int], pp: Any,
                 max_model_len: int, model_dir: Path, tol: Tolerances) -> dict[str, Any]:
    """Chunked prefill (from the families' long prompts), prefix caching and a mixed-length batch:
    {"checks": [Check, ...], "data": {...}} (when precision.features is off, the checks are not run)."""
    off = ("precision.features is false", "`precision.features` 为 `false`")
    if not pp.features:
        return {"checks": [CHECKS[c].not_run(*off) for c in ("chunked_prefill", "prefix_cache", "batch_mixed")],
                "data": {}}
    checks, data = [], {}
    budget = settings.get("max_num_batched_tokens")
    if budget:
        split = chunk_split(fam["per_prompt"], int(budget))
        checks.append(judge_chunked(split, tol, f"no prompt longer than max_num_batched_tokens ({budget})",
                                    f"没有长于 max_num_batched_tokens（{budget}）的提示"))
        data["chunked_prefill"] = split
    else:
        checks.append(judge_chunked(None, tol, "engine.max_num_batched_tokens is not set: vLLM's default budget "
                                    "(2,048-8,192 tokens) chunks no prompt of this run; set it below the long prompts",
                                    "未设置 engine.max_num_batched_tokens：vLLM 的默认预算（2,048–8,192 个词元）不会切分本次运行的任何提示；"
                                    "请设为低于长提示的值"))
    cap = max_model_len - pp.max_new_tokens
    n_pc = 3 * block_size - 7 if block_size else 0  # hits are whole blocks: more than two of them
    if not block_size or n_pc > cap:
        why = (f"no KV block size from the engine, or 3 blocks ({n_pc}) exceed max_model_len - new tokens ({cap})",
               f"引擎没有报告 KV 块大小，或 3 个块（{n_pc}）超过 max_model_len 减去续写长度（{cap}）")
        checks.append(CHECKS["prefix_cache"].not_run(*why))
    else:
        pc_ids = long_ids(model_dir, "en", n_pc, skip_paragraphs=2)  # a text no other request of the run began with
        (g_new, g_rows), = golden.greedy([pc_ids], pp.max_new_tokens, pp.top_k_long)
        probe = prefix_cache_probe(eng, pc_ids, g_new, g_rows, pp.max_new_tokens, pp.top_k_long)
        checks.append(judge_prefix_cache(probe, tol.tie_margin))
        data["prefix_cache"] = probe
    mix = list(short_items[:2]) + [(it.id, it.ids) for it in fam_items if it.family == "chat"][:1]
    longs = [it for it in fam_items if it.family == "long"]
    if longs:
        mix.append((longs[-1].id, longs[-1].ids))
    bp = batch_probe(eng, mix, pp.max_new_tokens, pp.top_k_long)
    checks.append(judge_batch(bp, tol.tie_margin))
    data["batch_mixed"] = bp
    return {"checks": checks, "data": data}


FAMILY_HEADERS = [T("类别 / 长度", "Family / length"), T("提示长度", "Prompt tokens"), T("行 / KL 基础", "Rows / KL basis"),
                  T("top-1（提示）", "top-1 (prompt)"), T("top-1（生成）", "top-1 (generated)"),
                  T("平均 |Δ 对数概率|", "mean |Δ logprob|"), T("最大 |Δ 对数概率|", "max |Δ logprob|"), T("平均 KL（奈特）", "mean KL (nats)"),
                  T("决定性", "decisive"), T("平局 / 翻转", "ties / flips")]


def rows_and_basis(whole: bool, kl_basis: Optional[str]) -> Any:
    """The rows scored and the KL's basis in one short cell: "whole vocabulary" where the KL is over it too,
    "top-k, shared" where it is over the tokens both sides list; anything else spelled out."""
    basis = kl_basis or "n/a"
    if whole and basis == "full":
        return T("整个词表", "whole vocabulary")
    if not whole and basis == "top-k":
        return "top-k"
    if not whole and basis == "shared top-k support":
        return T("top-k（双方共同列出）", "top-k, shared")
    return T(f"{'整个词表' if whole else 'top-k'}；KL：{basis_zh(kl_basis)}", f"{'whole vocabulary' if whole else 'top-k'}; KL: {basis}")


def family_row(group: str, s: dict[str, Any], lengths: Sequence[int], whole: bool) -> list[Any]:
    ls = sorted(set(lengths))
    return [T(f"`{group}`", group),  # a prompt family's id: code in the Chinese file
            "–".join(str(x) for x in (ls[0], ls[-1])) if len(ls) > 1 else str(ls[0] if ls else 0),
            rows_and_basis(whole, s.get("kl_basis")),
            A.fmt_small((s.get("prompt_region") or {}).get("top1_agreement")),
            A.fmt_small((s.get("generated_region") or {}).get("top1_agreement")),
            A.fmt_small(s.get("mean_abs_dlogprob")), A.fmt_small(s.get("max_abs_dlogprob")),
            A.fmt_small(s.get("mean_kl"), 6),
            f"{s.get('decisive_share') or 0:.0%}", f"{s.get('ties', 0)} / {s.get('flips', 0)}"]


def plot_by_position(per: Sequence[dict[str, Any]], tolerance: float, path: Optional[str | Path] = None,
                     title: str = "", lang: str = "en"):
    """|Δ logprob| by position, one line per prompt (log scale), the tolerance line, top-1 flips (×) and ties (○)."""
    from bitcpm_validation.report import plots

    plots.setup()
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 3.6))
    for p in per:
        tf = p["teacher_forced"]
        pts = [(x, max(d, 1e-7)) for x, d in zip(tf["position_index"], tf["abs_dlogprob"]) if d is not None]
        if not pts:
            continue
        line, = ax.plot([x for x, _ in pts], [y for _, y in pts], lw=0.8, label=p["id"])
        at = dict(pts)
        flips = [x for x in tf.get("flips_at", tf["disagree_at"]) if x in at]
        ties = [x for x, _ in tf.get("ties_at", []) if x in at]
        ax.scatter(flips, [at[x] for x in flips], marker="x", color=line.get_color(), s=30, zorder=3)
        ax.scatter(ties, [at[x] for x in ties], marker="o", facecolors="none", edgecolors=line.get_color(), s=24, zorder=3)
    ax.axhline(tolerance, color="black", ls="--", lw=0.8)
    ax.set_xscale("symlog", linthresh=64)
    ax.set_yscale("log")
    ax.set_xlabel("位置（× top-1 翻转，○ 平局；虚线：容差）" if lang == "zh" else
                  "position (× top-1 flip, ○ tie; dashed: tolerance)")
    ax.set_ylabel("|Δ logprob| (nat)")
    ax.set_title(title)
    ax.legend(fontsize=6, ncol=4)
    fig.tight_layout()
    if path:
        fig.savefig(path)
    return fig


# -- presentation -------------------------------------------------------------------------------------------
SUMMARY_HEADERS = [T("对比", "Comparison"), T("top-1 一致率", "top-1 agreement"), T("最大 |Δ 对数概率|", "max |Δ logprob|"),
                   T("平均 |Δ 对数概率|", "mean |Δ logprob|"), T("平均 KL", "mean KL"), T("KL 基础", "KL basis"), T("完全一致长度", "exact match"),
                   T("接近", "close")]


def summary_row(label: Any, s: dict[str, Any]) -> list[Any]:
    cells = A.summary_cells(s)
    cells[4] = T(basis_zh(s.get("kl_basis")), cells[4])  # the KL basis: a word of the report's language
    return [label, *cells]


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


# -- the full shape on every host ---------------------------------------------------------------------------
SHAPE_KEYS = ("hidden_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads", "intermediate_size",
              "vocab_size")


def shape_of(model_dir: Path) -> dict[str, Any]:
    import json

    try:
        c = json.loads((Path(model_dir) / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return {k: c.get(k) for k in SHAPE_KEYS}


def full_shape_plan(model_dir: Path, dummy_config: Optional[Path], enabled: bool) -> tuple[bool, str, str]:
    """(run the synthetic full-shape comparison?, why en, why zh): where the model is smaller than the profile's
    full-size architecture (the stand-in) and precision.full_shape is on."""
    if not enabled:
        return False, "precision.full_shape is false", "`precision.full_shape` 为 `false`"
    if dummy_config is None or not (Path(dummy_config) / "config.json").is_file():
        return False, "model.dummy_config names no architecture directory", "model.dummy_config 没有指向架构目录"
    if shape_of(model_dir) == shape_of(dummy_config):
        return False, "the model itself is at the full shape", "模型本身就是完整形状"
    return True, f"the model is smaller than {Path(dummy_config).name}", f"模型小于 {Path(dummy_config).name}"


def full_shape_items(prompts: Sequence[Any], full_dir: Path, n_long: int, max_model_len: int,
                     max_new_tokens: int) -> list[FamilyItem]:
    """Two short English prompts (whole-vocabulary rows) and one long prompt of n_long tokens (top-k), encoded by
    the synthetic directory's own tokenizer."""
    from bitcpm_validation.engine import prompting

    raw = [p for p in prompts if not getattr(p, "chat", False) and p.lang == "en"][:2]
    out = [FamilyItem(f"full-{p.id}", "full-shape/short", "short", list(prompting.prompt_ids(p, full_dir)), True)
           for p in raw]
    n = min(n_long, max_model_len - max_new_tokens)
    out.append(FamilyItem(f"full-long-{n}", f"full-shape/long-{n}", "long", long_ids(full_dir, "en", n), False))
    return out
