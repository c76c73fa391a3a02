"""The summary chapter (notebooks/00_summary.ipynb), derived from a run's results files, never written by hand:
what it stores (`summary_data`), the check matrix and check registry as tables, the engine starts table,
and the `summary` command's Markdown tables. The parts live in their own modules:

    rows = matrix.check_matrix(run_dir)              # one row per check, plus one per chapter that did not finish
    specs = bitcpm_validation.chapters.registry()    # (the notebook passes it in: report never imports a chapter)
    scopes = verdicts.scope_verdicts(rows, specs)    # {"engine": ScopeVerdict, "model": ScopeVerdict, ...}
    found = findings.findings(rows, specs)           # each ❌ / ⚠️ in one line: what, impact, what to do
    claims = findings.document_claims(rows)          # the original document's claims (never in a verdict)
    page = page_one.page_one(run_dir, params, rows, specs)  # everything page one shows, as JSON-ready data

Data the summary notebook stores in results/00_summary.json (`data[...]`, read by render and publish;
every text is {"zh": ..., "en": ...}, marks are ✅ ⚠️ ❌ —):

- data["page_one"]: {"model", "weights" ("stand-in" | "real" | "dummy" | "unknown"), "weights_text",
  "also_measured_on" [weights labels of key metrics other than the run's own weights], "source"
  ({hub, repo_id, revision, commit} or None), "engine", "device", "device_kind", "profile",
  "first_line" (the assessed / not assessed sentence), "verdict" (overall), "next_command" (text or None:
  the highlighted box of a stand-in or CPU run), "document_line" (one line on the original document's
  claims, or None), "performance_basis" (what the performance figures were judged against, from chapter 07's
  data["judged_against"], or None), "rerun_performance" (the command, when the performance verdict is not
  comparable, else None)}
- data["scopes"]: {scope: {"verdict", "mark", "assessed", "counts" {pass, warn, fail, not_run},
  "reasons" [text: why incomplete / not assessed], "flagged" [text: the checks that gave a fail / warn
  verdict], "chapters" [chapter ids]}} for engine, model, performance and repository
- data["findings"]: [{"status", "mark", "scope" (engine | model | document | None), "chapter", "check_id",
  "what", "impact", "remedy", "line"}]: fail first, then warn
- data["document"]: [{"chapter", "check_id", "status", "mark", "claim", "says"}]
- data["matrix"]: [{"chapter", "chapter_title", "chapter_status", "kind" (check | chapter), "check_id", "scope",
  "status", "mark", "name", "reason"}] (every row, unfolded; reason shortened to one line)
- data["registry"]: [{"id", "chapter", "scope", "name", "criterion", "worst", "worst_reason"}]
- data["key_metrics"]: [{"chapter", "id", "name" (card_name: a name, never a formula), "value", "unit", "text",
  "measured_on"}] (not timing);
  data["timings"]["key_metrics"]: the same for timing metrics (volatile between runs)
- data["chapters"]: {chapter id: ok | failed | skipped | running | missing | unreadable}
- data["sections"]: {"probes"} (report.sections.sections_data); data["timings"]["sections"]: {"commands",
  "evidence", "change_log"} (run paths, file sizes and the previous run differ between identical runs)

Metrics: "verdict" (the overall verdict, report.verdicts.overall), "verdict_<scope>", "checks_<status>" (counts of
the rows in a verdict).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable, Optional, Sequence

from bitcpm_validation.report import results as R
from bitcpm_validation.report.checks import CheckSpec
from bitcpm_validation.report.display import T
from bitcpm_validation.report.findings import document_claims, findings
from bitcpm_validation.report.matrix import (KeyMetric, MatrixRow, chapter_statuses, check_matrix, common_reason,
                                             key_metrics, selected_chapters, short, spec_index, tdict)
from bitcpm_validation.report.page_one import card_name, page_one
from bitcpm_validation.report.verdicts import SCOPE_WORD, scope_verdicts


def matrix_display(rows: list[MatrixRow], specs: Iterable[CheckSpec] = (), limit: int = 60,
                   fold: int = 3, document: bool = True) -> tuple[list[T], list[list[Any]]]:
    """The compact check matrix: chapter (on its first row only), mark, check name, short reason.

    `fold` or more consecutive ✅ rows of a chapter become one row "n checks passed" naming them, and `fold` or
    more consecutive — rows of one family (one probe per row, ...) one row "name (n items)" with their shared
    reason; every ❌ and ⚠️ keeps its own row. Details stay in the chapters."""
    index = spec_index(specs)
    headers = [T("章节", "Chapter"), "", T("检查项", "Check"), T("原因", "Reason")]
    if not document:  # the original document's claims have their own table: not twice
        rows = [r for r in rows if r.scope != "document"]
    first = {}
    for i, r in enumerate(rows):
        first.setdefault((r.chapter, r.base_id), i)
    rows = sorted(rows, key=lambda r: first[(r.chapter, r.base_id)])  # stable: a family's rows side by side

    def fold_key(r: MatrixRow) -> Optional[tuple]:
        if r.kind != "check":
            return None
        if r.status == "pass":
            return (r.chapter, "pass")
        if r.status == "not_run" and ":" in r.check_id:
            return (r.chapter, r.base_id, "not_run")
        return None

    groups: list[list[MatrixRow]] = []
    for r in rows:
        key = fold_key(r)
        if key is not None and groups and fold_key(groups[-1][-1]) == key:
            groups[-1].append(r)
        else:
            groups.append([r])
    body, last = [], None
    for g in groups:
        r = g[0]
        chapter = r.title if r.chapter != last else ""
        last = r.chapter
        if len(g) >= fold and r.status == "pass":
            names = list(dict.fromkeys((x.name_t.zh, x.name_t.en) for x in g))
            body.append([chapter, r.mark, T(f"{len(g)} 项检查通过", f"{len(g)} checks passed"),
                         T(short("、".join(n[0] for n in names), limit // 2 + 5), short(", ".join(n[1] for n in names), limit))])
            continue
        if len(g) >= fold:
            spec = index.get((r.chapter, r.base_id))
            base_zh, base_en = (spec.name_zh, spec.name_en) if spec else (r.base_id, r.base_id)
            name: Any = T(f"{base_zh}（{len(g)} 项）", f"{base_en} ({len(g)} items)")
            reason: Any = T(common_reason([x.reason_t.zh for x in g], limit // 2 + 5),
                            common_reason([x.reason_t.en for x in g], limit))
            body.append([chapter, r.mark, name, reason])
            continue
        for x in g:
            reason = T(short(x.reason_t.zh, limit // 2 + 5), short(x.reason_t.en, limit)) if x.reason_en or x.reason_zh else ""
            body.append([chapter, x.mark, x.name_t, reason])
            chapter = ""
    return headers, body


def registry_rows(specs: Iterable[CheckSpec]) -> list[dict[str, Any]]:
    return [{"id": s.id, "chapter": s.chapter, "scope": s.scope, "name": {"zh": s.name_zh, "en": s.name_en},
             "criterion": {"zh": s.criterion_zh, "en": s.criterion_en}, "worst": s.worst,
             "worst_reason": {"zh": s.worst_reason_zh or s.worst_reason, "en": s.worst_reason} if s.worst_reason else None,
             "family": s.family} for s in specs]


def registry_table(specs: Iterable[CheckSpec]) -> tuple[list[T], list[list[Any]]]:
    """The appendix: every registered check with its chapter (on its first row), scope and worst status; the
    check cell is "**name** (id): criterion" (a check whose worst is ⚠️ says why after it), HTML made here
    from escaped parts: show with `trusted_cols=(1,)`."""
    from bitcpm_validation.report.display import note_html as e  # escaped; `settings`, `commands` as code
    from bitcpm_validation.report.textsafe import html_escape

    headers = [T("章节", "Chapter"), T("检查项与判据", "Check and criterion"), T("范围", "Scope"), T("最差", "Worst")]
    body, last = [], None
    for s in specs:
        cid = f"<code>{html_escape(s.id)}</code>"  # an identifier (checks.yaml), not a word of either language
        zh = f"<b>{html_escape(s.name_zh)}</b>（{cid}）：{e(s.criterion_zh)}"
        en = f"<b>{html_escape(s.name_en)}</b> ({cid}): {e(s.criterion_en)}"
        if s.worst_reason:
            zh = zh.rstrip("。") + f"。最差为 ⚠️：{e(s.worst_reason_zh or s.worst_reason)}"
            en = en.rstrip(".") + f". At worst ⚠️: {e(s.worst_reason)}"
        body.append([s.chapter.split("_", 1)[0] if s.chapter != last else "", T(zh, en), SCOPE_WORD[s.scope],
                     R.STATUS_MARK[s.worst]])
        last = s.chapter
    return headers, body


# -- one language's Markdown tables (the `summary` command of the CLI) ------------------------------------------
def matrix_markdown(rows: list[MatrixRow], lang: str = "en") -> str:
    """The check matrix as one language's Markdown table (the `summary` command, report.md)."""
    from bitcpm_validation.report.textsafe import md_table

    pick = (lambda x: x.zh) if lang == "zh" else (lambda x: x.en)
    headers = [pick(T("章节", "Chapter")), pick(T("检查项", "Check")), pick(T("状态", "Status")), pick(T("说明", "Reason"))]
    return md_table(headers, [[pick(r.title), pick(r.name_t), r.mark, pick(r.reason_t)] for r in rows], trusted_cols=(2,))


def metrics_markdown(km: list[KeyMetric], lang: str = "en") -> str:
    from bitcpm_validation.report.textsafe import md_table

    pick = (lambda x: x.zh) if lang == "zh" else (lambda x: x.en)
    return md_table([pick(T("指标", "Metric")), pick(T("值", "Value")), pick(T("测量对象", "Measured on"))],
                    [[m.name_zh if lang == "zh" else m.name_en, m.value_text, m.measured_on or "—"] for m in km])


def counts_line(counts: dict[str, int]) -> str:
    return " · ".join(f"{R.STATUS_MARK[k]} {counts.get(k, 0)}" for k in R.STATUS_MARK)


# -- what the summary notebook stores -------------------------------------------------------------------
def summary_data(run_dir: str | Path, params: Any, specs: Sequence[CheckSpec] = ()) -> dict[str, Any]:
    """Every data key of results/00_summary.json (see the module docstring), computed once."""
    rows = check_matrix(run_dir, selected_chapters(params))
    verdicts = scope_verdicts(rows, specs)
    km = key_metrics(run_dir)

    def metric_data(m: KeyMetric) -> dict[str, Any]:
        return {"chapter": m.chapter, "id": m.id, "name": tdict(card_name(m)), "value": m.value,
                "unit": m.unit, "text": m.value_text, "measured_on": m.measured_on}

    return {
        "page_one": page_one(run_dir, params, rows, specs),
        "scopes": {s: v.to_data() for s, v in verdicts.items()},
        "findings": [f.to_data() for f in findings(rows, specs)],
        "document": document_claims(rows),
        "matrix": [{"chapter": r.chapter, "chapter_title": tdict(r.title), "chapter_status": r.chapter_status,
                    "kind": r.kind, "check_id": r.check_id, "scope": r.scope,
                    "status": r.status, "mark": r.mark, "name": tdict(r.name_t),
                    "reason": {"zh": short(r.reason_t.zh, 45), "en": short(r.reason_t.en, 90)}} for r in rows],
        "registry": registry_rows(specs),
        "key_metrics": [metric_data(m) for m in km if not m.timing],
        "timings": {"key_metrics": [metric_data(m) for m in km if m.timing]},
        "chapters": chapter_statuses(run_dir),
    }


# -- engine starts ------------------------------------------------------------------------------------------------
# The reasons the project's own start sites give (engine.offline / engine.server `why=`), in Chinese; any other
# reason is shown as recorded.
START_REASON_ZH = {
    "the run's shared engine (every chapter that can share it)": "本次运行共享的引擎（所有可共享的章节都使用它）",
    "the full-size architecture with dummy weights (load_format=dummy)": "完整尺寸结构，随机权重（load_format=dummy）",
    "the full-size architecture with the synthetic checkpoint (seeded ternary weights, read from files)":
        "完整尺寸结构，合成检查点（固定种子的三值权重，从文件读入）",
    "the full 0.5B shape: a synthetic checkpoint vs the fp32 reference": "完整 0.5B 形状：合成检查点与 fp32 参考实现比较",
    "restart": "重启：与第一次运行的输出比较",
    "float32 engine: separates BF16 rounding from implementation differences": "float32 引擎：区分 BF16 舍入与实现差异",
    "the benchmark's server (07_performance, the full 0.5B shape, synthetic checkpoint), started by the runner "
    "together with the shared engine": "第 07 章基准测试的服务（完整 0.5B 形状，合成检查点），由运行器与共享引擎一同启动",
    "the benchmark's server (07_performance, the full 0.5B shape, dummy weights), started by the runner together "
    "with the shared engine": "第 07 章基准测试的服务（完整 0.5B 形状，随机权重），由运行器与共享引擎一同启动",
    "benchmarks at the full 0.5B shape (dummy weights)": "完整 0.5B 形状的基准测试（随机权重）",
    "benchmarks at the full 0.5B shape (synthetic checkpoint)": "完整 0.5B 形状的基准测试（合成检查点）",
    "benchmarks on the model's own weights": "模型自身权重上的基准测试",
    "base model for the document's speed claim": "原文档速度说法所需的基础模型",
    "offline reference for the server comparison (chapter 04 left none)": "服务对比的离线参考（第 04 章未留下）",
}


# an engine start's weights (engine.identity.model_source's `which`) in Chinese
START_WEIGHTS_ZH = {"real": "真实权重", "synthetic": "合成权重", "dummy": "随机权重"}


# Phases of an engine start (engine.startup.phases; a server's: engine.startup.server_phases) and where it ran
# (engine.startup.choose_mode)
START_PHASES = {"import": ("导入 vLLM", "import vLLM"), "config": ("参数与检查", "config"),
                "api_server_process": ("API 服务进程启动", "API server process"),
                "engine_core_process": ("引擎核心进程启动", "engine core process"),
                "worker_process": ("工作进程启动", "worker process"), "model_load": ("模型加载", "model load"),
                "kv_cache_and_warmup": ("KV 缓存与预热", "KV cache and warm-up"), "compile": ("编译", "compile"),
                "other": ("其余", "other"), "to_healthy": ("至健康检查通过", "until healthy")}
START_MODES = {"in-process": ("进程内", "in process"), "multiprocess": ("多进程", "multiprocess")}


def start_phases_text(start: dict[str, Any]) -> T:
    """One start's mode and phases as one line ("in process: import vLLM 11.2 s · config 0.8 s · …"); — without."""
    phases = start.get("phases") or {}
    if not phases:
        return T("—", "—")
    zh = " · ".join(f"{START_PHASES.get(k, (k, k))[0]} {v:,.1f} s" for k, v in phases.items())
    en = " · ".join(f"{START_PHASES.get(k, (k, k))[1]} {v:,.1f} s" for k, v in phases.items())
    mode = START_MODES.get(start.get("mode") or "")
    return T(f"{mode[0]}：{zh}", f"{mode[1]}: {en}") if mode else T(zh, en)


def engine_starts_table(run: dict[str, Any]) -> tuple[list[T], list[list[Any]]]:
    """Every engine / server start of a run (engine.starts.of_run): chapter, kind, weights, seconds, phases, why."""
    kind = {"offline": T("离线引擎", "offline engine"), "server": T("服务", "server"),
            "shared-server": T("共享服务", "shared server"), "benchmark": T("基准测试服务", "benchmark server")}
    rows = []
    for s in run.get("starts", []):
        why = s.get("why") or ""
        seconds = "—" if s.get("seconds") is None else f"{s['seconds']:,.1f} s"
        status = seconds if s.get("ok", True) else T(f"失败：{s.get('error') or ''}", f"failed: {s.get('error') or ''}")
        which = s.get("which", "—")
        chapter = T("运行器", "runner") if s.get("chapter") == "runner" else s.get("chapter", "—")  # the server it starts first
        rows.append([chapter, kind.get(s.get("kind"), s.get("kind")), T(START_WEIGHTS_ZH.get(which, which), which), status,
                     start_phases_text(s), T(START_REASON_ZH.get(why, why), why)])
    return [T("章节", "Chapter"), T("类型", "Kind"), T("权重", "Weights"), T("就绪耗时", "Ready in"),
            T("各阶段", "Phases"), T("原因", "Why")], rows
