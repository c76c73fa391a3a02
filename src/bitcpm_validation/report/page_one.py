"""Page one of the report: what was validated (model, weights, engine, device), the verdict per scope, the
findings and the results card, as JSON-ready data (`page_one`) and as tables.

Page one (the notebook's first cells) is a results card: the identity line (`validated_line`), the verdict per
scope with its plain reason (`scopes_table`; a check family's reasons grouped), the findings (`findings_table`,
at most PAGE_ONE_FINDINGS rows), one line on the document's claims, and one table (`results_card`:
metric | value | unit | n / ± | measured on | chapter); each fact once.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Optional

from bitcpm_validation.report import results as R
from bitcpm_validation.report.checks import CheckSpec
from bitcpm_validation.report.display import T
from bitcpm_validation.report.findings import Finding, document_claims, document_line
from bitcpm_validation.report.matrix import (KeyMetric, MatrixRow, chapter_results, check_matrix, format_value,
                                             key_metrics, run_info, selected_chapters, short, tdict)
from bitcpm_validation.report.verdicts import (RERUN_PERFORMANCE, SCOPE_WORD, VERDICT_WORD, ScopeVerdict,
                                               first_line, overall, scope_verdicts)

_ASCEND_RUN = T("请在昇腾主机上运行 `make report PARAMS=params/ascend-910b3.yaml`（先设置 model.path，或使用 "
                "`MODEL=openbmb/BitCPM4-0.5B`）。",
                "On an Ascend host run make report PARAMS=params/ascend-910b3.yaml (set model.path, or "
                "MODEL=openbmb/BitCPM4-0.5B).")
NEXT_COMMAND = T("本次运行验证的是流程本身，而不是 BitCPM4 在昇腾上的表现。" + _ASCEND_RUN.zh,
                 "This run validates the pipeline, not BitCPM4 on Ascend. " + _ASCEND_RUN.en)
NEXT_COMMAND_CPU = T("本次运行在 CPU 上验证该模型，而不是在昇腾上。" + _ASCEND_RUN.zh,
                     "This run validates the model on a CPU, not on Ascend. " + _ASCEND_RUN.en)


WEIGHTS_TEXT = {
    "stand-in": T("替身模型：项目自行训练的小型三值 MiniCPM，不是 BitCPM4", "stand-in: the project's small ternary "
                  "MiniCPM, not BitCPM4"),
    "real": T("真实权重（来自 model.path）", "real weights (from model.path)"),
    "synthetic": T("合成权重：按模型结构以固定种子生成的三值权重，不是 BitCPM4", "synthetic: seeded ternary weights at "
                   "the model's shape, not BitCPM4"),
    "dummy": T("随机权重（仅完整尺寸结构）", "dummy weights (random values, full-size shape only)"),
    "unknown": T("未知：第 02 章未记录加载了哪些权重", "unknown: chapter 02 did not record which weights it loaded"),
}


def measured_on_parts(text: str) -> tuple[str, str, str]:
    """("model", "weights", "device") of a Metric.measured_on text "model · weights · device" ("" where absent)."""
    parts = [p.strip() for p in (text or "").split("·")]
    parts += [""] * (3 - len(parts))
    return parts[0], parts[1], parts[2]


def _weights(is_stand_in: bool, loading: Optional[R.ChapterResult]) -> str:
    if is_stand_in:
        return "stand-in"
    data = loading.data if loading else {}
    if data.get("real"):
        return "real"
    if data.get("dummy"):
        return "dummy"
    return "unknown"


def _engine_text(env: Optional[R.ChapterResult]) -> T:
    if env is None:
        return T("未检测（第 01 章没有结果）", "not detected (chapter 01 has no results)")
    versions = env.data.get("versions") or {}
    vllm = versions.get("vllm") or env.metric("vllm")
    ascend = versions.get("vllm_ascend")
    if not vllm:
        return T("未检测到 vLLM", "vLLM not detected")
    s = f"vLLM {vllm}" + (f" + vLLM-Ascend {ascend}" if ascend else "")
    return T(s, s)


def _device(env: Optional[R.ChapterResult]) -> tuple[T, Optional[str]]:
    if env is None:
        return T("未检测（第 01 章没有结果）", "not detected (chapter 01 has no results)"), None
    name, kind = env.metric("device"), env.metric("device_kind")
    if not name:
        return T("未检测", "not detected"), kind
    count = env.metric("device_count")
    s = str(name) + (f" × {count}" if isinstance(count, int) and count > 1 and kind != "cpu" else "")
    return T(s, s), kind


def _source(params: Any) -> Optional[dict[str, Any]]:
    src = getattr(getattr(params, "model", None), "source", None)
    if src is None:
        return None
    return {k: getattr(src, k, None) for k in ("hub", "repo_id", "revision", "commit")}


def next_command(is_stand_in: bool, device_kind: Optional[str]) -> Optional[T]:
    """Page one's highlighted box: what this run does not show and the command that does, or None.
    A stand-in run or a CPU run says nothing about BitCPM4 on Ascend."""
    if is_stand_in:
        return NEXT_COMMAND
    return NEXT_COMMAND_CPU if device_kind == "cpu" else None


def _params_from_run_json(run_dir: Path) -> Any:
    """The few params page one needs, from the runner's run.json (for a reader without the run's params)."""
    from types import SimpleNamespace

    info = run_info(run_dir)
    model = SimpleNamespace(name=info.get("model") or "?", is_stand_in=bool(info.get("is_stand_in")), source=None)
    return SimpleNamespace(model=model, profile=info.get("profile"))


def platform_override(run_dir: Path) -> Optional[dict[str, str]]:
    """Page one's note where the run went on past a platform mismatch (run.json platform_check, --allow-platform-mismatch)."""
    c = run_info(run_dir).get("platform_check") or {}
    if not c.get("allowed"):
        return None
    return tdict(T(f"配置要求 {c.get('profile')}，本次运行在 {c.get('detected')} 上（--allow-platform-mismatch 强制继续）",
                   f"the profile asks for {c.get('profile')}; this run ran on {c.get('detected')} "
                   f"(forced with --allow-platform-mismatch)"))


def page_one(run_dir: str | Path, params: Any = None, rows: Optional[list[MatrixRow]] = None,
             specs: Iterable[CheckSpec] = ()) -> dict[str, Any]:
    """What page one shows (JSON-ready; texts as {"zh", "en"}): see data["page_one"] in the module docstring.
    `params` is the run's Params (model.name, model.is_stand_in, model.source, profile); None reads the
    model and stand-in flag from the run's run.json."""
    run_dir = Path(run_dir)
    params = _params_from_run_json(run_dir) if params is None else params
    specs = list(specs)
    rows = check_matrix(run_dir, selected_chapters(params)) if rows is None else rows
    res = chapter_results(run_dir)
    env, loading = res.get("01_environment"), res.get("02_loading")
    is_stand_in = bool(params.model.is_stand_in)
    # what the model directory declares (model.weights_kind); a run.json of older runs has no such field
    weights = "synthetic" if getattr(params.model, "weights_kind", None) == "synthetic" else _weights(is_stand_in, loading)
    device, kind = _device(env)
    verdicts = scope_verdicts(rows, specs)
    # figures measured on other weights than the run's own (issue 11: stand-in beside full-size dummy figures)
    labels = {measured_on_parts(m.measured_on)[1] for m in key_metrics(run_dir)}
    other = (lambda w: "dummy" not in w) if weights == "dummy" else (lambda w: "dummy" in w or "random" in w)
    also = sorted(w for w in labels if w and w not in ("—", "-") and other(w))
    nxt = next_command(is_stand_in, kind)
    perf = verdicts.get("performance")
    return {
        "model": params.model.name,
        "weights": weights,
        "weights_text": tdict(WEIGHTS_TEXT[weights]),
        "also_measured_on": also,
        "source": _source(params),
        "engine": tdict(_engine_text(env)),
        "device": tdict(device),
        "device_kind": kind,
        "profile": getattr(params, "profile", None),
        "first_line": tdict(first_line(verdicts)),
        "verdict": overall(verdicts),
        "next_command": tdict(nxt) if nxt else None,
        "document_line": tdict(doc) if (doc := document_line(document_claims(rows))) else None,
        "platform_override": platform_override(run_dir),
        "performance_basis": performance_basis(res.get("07_performance")),
        "rerun_performance": (RERUN_PERFORMANCE.format(run=run_dir.name)
                              if perf is not None and perf.verdict == "not_comparable" else None),
    }


def performance_basis(perf: Optional[R.ChapterResult]) -> Optional[dict[str, str]]:
    """What the performance figures were judged against (chapter 07's data["judged_against"]: {"zh", "en"}), so
    that the performance verdict never reads as an absolute "fast" or "slow"."""
    basis = (perf.data.get("judged_against") if perf is not None else None) or None
    return {"zh": str(basis.get("zh", "")), "en": str(basis.get("en", ""))} if isinstance(basis, dict) else None


# -- tables (cells are T: one language at a time, see report.display) ----------------------------------
def validated_table(page: dict[str, Any], also_measured: bool = True) -> tuple[list[T], list[list[Any]]]:
    """What was validated: model, weights, engine, device, profile (and the hub source where there is one);
    `also_measured`: the weights row names the other weights some metrics were measured on."""
    def t(d: dict[str, str]) -> T:
        return T(d["zh"], d["en"])

    weights = t(page["weights_text"])
    if page["also_measured_on"] and also_measured:
        extra = "、".join(page["also_measured_on"]), ", ".join(page["also_measured_on"])
        weights = T(f"{weights.zh}；另有测量基于：{extra[0]}", f"{weights.en}; some metrics on: {extra[1]}")
    rows: list[list[Any]] = [[T("模型", "Model"), page["model"]], [T("权重", "Weights"), weights]]
    src = page.get("source")
    if src and src.get("repo_id"):
        rev = src.get("commit") or src.get("revision") or "—"
        rows.append([T("来源", "Source"), f"{src.get('hub')}: {src['repo_id']} @ {str(rev)[:12]}"])
    if page.get("platform_override"):
        rows.append([T("⚠️ 平台", "⚠️ Platform"), t(page["platform_override"])])
    rows += [[T("引擎", "Engine"), t(page["engine"])], [T("设备", "Device"), t(page["device"])],
             [T("配置", "Profile"), page.get("profile") or "—"]]
    return [T("项目", "Item"), T("内容", "Value")], rows


def validated_line(page: dict[str, Any]) -> T:
    """What was validated, as one Markdown paragraph per language (values escaped: names come from files)."""
    from bitcpm_validation.report.textsafe import md_escape

    _, rows = validated_table(page, also_measured=False)  # the results card says what each figure was measured on
    parts = [(k, v) for k, v in rows if k.en != "Profile"]  # the report's header names the profile
    return T(" · ".join(f"**{k.zh}** {md_escape(v.zh if isinstance(v, T) else v)}" for k, v in parts),
             " · ".join(f"**{k.en}** {md_escape(v.en if isinstance(v, T) else v)}" for k, v in parts))


def scopes_table(verdicts: dict[str, ScopeVerdict], page: Optional[dict[str, Any]] = None
                 ) -> tuple[list[T], list[list[Any]]]:
    """One row per verdict scope. With `page` (page_one's data), the performance row says what its figures were
    judged against and, when not comparable, the command that re-runs them."""
    headers = [T("范围", "Scope"), T("结论", "Verdict"), T("检查项", "Checks"), T("说明", "Why")]
    body = []
    page = page or {}
    for v in verdicts.values():
        c = v.counts
        counts = "\u2002".join(f"{R.STATUS_MARK[k]}\u00a0{c[k]}" for k in R.STATUS_MARK if c[k]) or "—"
        said = v.flagged if v.verdict in ("fail", "warn", "not_comparable") else v.reasons  # what decided it
        why = said[:1]  # page one: the first (failures first); all of them are in data["scopes"]
        more = len(said) - len(why)
        why_t = T("；".join(short(r.zh, 70) for r in why) + (f"；另 {more} 项" if more else ""),
                  "; ".join(short(r.en, 70) for r in why) + (f"; {more} more" if more else ""))
        if v.scope == "performance" and (page.get("performance_basis") or page.get("rerun_performance")):
            basis, cmd = page.get("performance_basis"), page.get("rerun_performance")
            zh = ([why_t.zh] if said else []) + ([f"相对于：{basis['zh']}"] if basis else []) + \
                ([f"请在空闲主机上重新运行：`{cmd}`"] if cmd else [])  # a command: shown as code
            en = ([why_t.en] if said else []) + ([f"relative to: {basis['en']}"] if basis else []) + \
                ([f"re-run on a quiet host: `{cmd}`"] if cmd else [])
            why_t, said = T("；".join(zh), "; ".join(en)), True
        body.append([SCOPE_WORD[v.scope], T(f"{v.mark}\u00a0{VERDICT_WORD[v.verdict].zh}",
                                            f"{v.mark}\u00a0{VERDICT_WORD[v.verdict].en.replace(' ', chr(0xa0))}"),
                     counts, why_t if said else "—"])
    return headers, body


PAGE_ONE_FINDINGS = 6  # page one fits one A4 page: beyond this many findings, one row points to the check matrix


def _cut(text: str, limit: int) -> str:
    """At most `limit` characters, cut at a space where there is one in the second half (… marks the cut)."""
    s = " ".join(str(text or "").split())
    if len(s) <= limit:
        return s
    cut = s[: limit - 1]
    space = cut.rfind(" ")
    return (cut[:space] if space > limit // 2 else cut).rstrip(" ,;:，；：") + "…"


def findings_table(found: list[Finding], *, document: bool = True, limit: Optional[int] = None,
                   not_comparable: bool = True) -> tuple[list[Any], list[list[Any]]]:
    """The findings as a table (mark, what, impact, what to do): one row each; `document=False` leaves out the
    original document's claims (page one gives them one line, `document_line`); `not_comparable=False` the
    invalid measurements (page one's performance row says why and gives the re-run command). With `limit`, more
    findings than that keep the first `limit - 1` rows and one row that counts the rest (all are in the check
    matrix)."""
    headers = ["", T("发现", "Finding"), T("影响与处理", "Impact and what to do")]
    found = [f for f in found if (document or f.scope != "document")
             and (not_comparable or f.status != "not_comparable")]
    if limit is None:
        body = [[f.mark, f.what, T(f"{f.impact.zh}；{f.remedy.zh}", f"{f.impact.en}; {f.remedy.en}")] for f in found]
    else:  # page one: a line or two each (the chapter and the check matrix say the rest)
        body = [[f.mark, T(_cut(f.what.zh, 60), _cut(f.what.en, 110)),
                 T(f"{_cut(f.impact.zh, 24)}；{_cut(f.remedy.zh, 20)}", f"{_cut(f.impact.en, 45)}; {_cut(f.remedy.en, 40)}")]
                for f in found]
    if limit is not None and len(body) > limit:
        rest = found[limit - 1:]
        marks = " ".join(f"{m}\u00a0{sum(f.mark == m for f in rest)}" for m in dict.fromkeys(f.mark for f in rest))
        body = body[:limit - 1] + [["…", T(f"另有 {len(rest)} 项（{marks}）", f"{len(rest)} more ({marks})"),
                                    T("见检查矩阵与各章", "see the check matrix and the chapters")]]
    return headers, body


# -- page one's results card (issue 20.1): one row per figure, named, with its unit, n, what it was measured on ----
# a figure's name on page one: what it is, never how it is computed (the chapter gives the formula)
CARD_NAMES = {
    "decode_tok_s": T("单请求解码速度", "Batch-1 decode speed"),
    "prefill_tok_s": T("预填充速度", "Prefill speed"),
    "serve_b1_output_tok_s": T("单请求输出速度（端到端）", "Batch-1 output speed, end to end"),
    "ttft_ms_p50": T("首词元时延，中位数", "Time to first token, median"),
    "tpot_ms_p50": T("每输出词元时间，中位数", "Time per output token, median"),
    "kv_cache_tokens": T("KV 缓存容量", "KV cache capacity"),
    "max_concurrency": T("KV 缓存可容纳的满长请求", "Full-length requests the KV cache holds"),
    "identical_tokens": T("重复运行中相同的词元", "Identical tokens in repeated runs"),
    "probes_passed": T("探针通过（已评判的）", "Probes passed, of those judged"),
    "zh_passed": T("中文输出通过（已评判的）", "Chinese outputs passed, of those judged"),
    "greedy_equal": T("服务与离线的贪心输出一致", "Greedy answers equal, server and offline"),
    "compression_base3": T("可达压缩率（三进制打包，整模型）", "Achievable size reduction, base-3 packing"),
    "remote_code_files": T("执行的远程代码文件", "Remote-code files executed"),
}
# shown in the identity line or the header already: never a row
CARD_ELSEWHERE = {"device", "vllm", "model_commit", "git_commit"}
# one fact, two metrics: the second is left out where the first is there (the run's shared server is the engine
# chapter 02 timed)
CARD_SAME_FACT = {"server_startup_s": "init_s"}
CARD_UNIT_ZH = {"tokens": "词元", "requests": "个请求", "nat": "奈特"}
_FRACTION = re.compile(r"^\s*([\d,]+)\s*/\s*([\d,]+)\s*$")
_N_IN_NAME = re.compile(r"\s*[（(]n\s*([\d,]+)[)）]\s*$")
_REQUESTS_UNIT = re.compile(r"^×\s*([\d,]+)-token requests$")


@dataclass
class CardRow:
    chapter: str
    id: str
    name: T
    value: str
    unit: T
    n: str  # the sample behind the figure ("—" where it is one measurement)
    measured_on: T


def measured_on_label(text: str) -> T:
    """A metric's "model · weights · device" as page one's short label: stand-in, full shape (with its weights)
    or real model; "—" for a fact of the run (no model behind it)."""
    model, weights, _ = measured_on_parts(text)
    if not model or model in ("—", "-"):
        return T("—", "—")
    if model == "stand-in":
        return T("替身模型", "stand-in")
    if weights == "dummy weights":
        return T("完整规模（随机权重）", "full shape, dummy weights")
    if weights == "random weights":
        return T("完整规模（合成权重）", "full shape, synthetic weights")
    if model.endswith(" shape"):
        return T("完整规模", "full shape")
    return T("真实模型", "real model")


def _figure_samples(results: dict[str, R.ChapterResult]) -> dict[tuple[str, str], Any]:
    """(chapter, metric id) -> the samples behind it, where a chapter's data lists them (chapter 07's figures)."""
    out: dict[tuple[str, str], Any] = {}
    for cid, res in results.items():
        figures = res.data.get("figures") if isinstance(res.data, dict) else None
        for row in (figures or {}).get("rows", []) if isinstance(figures, dict) else []:
            if isinstance(row, dict) and row.get("id") and row.get("samples") is not None:
                out[(cid, row["id"])] = row["samples"]
    return out


def _score_spread(results: dict[str, R.ChapterResult]) -> dict[str, tuple[Any, Any]]:
    """task -> (n, standard error as a fraction) of chapter 09's headline scores (data["tasks"][i]["score"]: points)."""
    acc = results.get("09_accuracy")
    out: dict[str, tuple[Any, Any]] = {}
    for t in (acc.data.get("tasks") or []) if acc is not None and isinstance(acc.data, dict) else []:
        score = t.get("score") if isinstance(t, dict) else None
        if isinstance(score, dict) and t.get("task"):
            se = score.get("se")
            out[str(t["task"])] = (score.get("n"), se / 100 if isinstance(se, (int, float)) else None)
    return out


def card_name(m: KeyMetric) -> T:
    """A key metric's name as page one (and the published site) shows it: CARD_NAMES, else its own name without a
    formula (" = …") or an "(n …)" the n column carries."""
    name = CARD_NAMES.get(m.id) or T(m.name_zh or m.name_en, m.name_en or m.name_zh)
    return T(_N_IN_NAME.sub("", name.zh).split(" = ")[0], _N_IN_NAME.sub("", name.en).split(" = ")[0])


def results_card(km: list[KeyMetric], results: Optional[dict[str, R.ChapterResult]] = None) -> list[CardRow]:
    """Page one's figures, one row each: key metrics less those the identity line shows, a second copy of one
    fact, descriptive texts (the chapter shows them) and fractions of nothing judged ("0/0")."""
    ids = {m.id for m in km}
    samples = _figure_samples(results or {})
    spread = _score_spread(results or {})
    rows: list[CardRow] = []
    for m in km:
        if m.id in CARD_ELSEWHERE or CARD_SAME_FACT.get(m.id) in ids:
            continue
        name = card_name(m)
        found_n = _N_IN_NAME.search(m.name_en or "")
        n = found_n.group(1) if found_n else None
        unit: T = T(CARD_UNIT_ZH.get(m.unit, m.unit), m.unit)
        value = m.value
        if isinstance(value, int) and not isinstance(value, bool) and m.unit.startswith("/"):  # 3 of "/3"
            value, unit = f"{value}{m.unit}", T("", "")
        frac = _FRACTION.match(value) if isinstance(value, str) else None
        if frac:
            if int(frac.group(2).replace(",", "")) == 0:
                continue  # nothing judged: the verdict's reason says why
            text, n = f"{frac.group(1)}/{frac.group(2)}", frac.group(2)
            unit = unit if m.unit == "tokens" else T("", "")
        elif isinstance(value, str):
            continue  # a description (shapes compared, a granularity): the chapter shows it
        else:
            text = format_value(value)
            req = _REQUESTS_UNIT.match(m.unit or "")
            if req:
                unit = T(f"个 {req.group(1)} 词元的请求", f"requests of {req.group(1)} tokens")
        if n is None and (m.chapter, m.id) in samples:
            n = format_value(samples[(m.chapter, m.id)])
        task = m.id.rsplit("_", 1)[0] if m.chapter == "09_accuracy" else None
        if task in spread:  # an accuracy score: its n and standard error
            items, se = spread[task]
            n = (format_value(items) if items is not None else n or "—") + (f" / ±{format_value(se)}" if se else "")
        rows.append(CardRow(m.chapter, m.id, name, text, unit, n or "—", measured_on_label(m.measured_on)))
    return rows


def compared_line(km: list[KeyMetric]) -> Optional[T]:
    """Which shapes and prompt lengths the precision chapter compared with its golden (its `compared_lengths`
    metric, a description the card leaves out), as one line under the card: what the engine verdict covers."""
    m = next((m for m in km if m.id == "compared_lengths" and m.value), None)
    if m is None:
        return None
    value = str(m.value).replace("`", "'")
    return T(f"引擎结论所覆盖的比较（与黄金实现，按形状与提示长度，单位词元）：`{value}`",
             f"What the engine verdict covers (compared with the golden, by shape and prompt length in tokens): `{value}`")


def results_card_table(rows: list[CardRow]) -> tuple[list[T], list[list[Any]]]:
    """The results card as a table: metric | value | unit | n | measured on | chapter (a link to it: the chapter
    cell is HTML made here, show with `trusted_cols=(5,)`)."""
    from bitcpm_validation.report.textsafe import html_escape

    headers = [T("指标", "Metric"), T("值", "Value"), T("单位", "Unit"), T("样本 n / 标准误", "n / ±"),
               T("测量对象", "Measured on"), T("章节", "Chapter")]
    body = [[r.name, r.value, r.unit, r.n, r.measured_on,
             f'<a href="#ch-{html_escape(r.chapter)}">{html_escape(r.chapter.split("_", 1)[0])}</a>'] for r in rows]
    return headers, body
