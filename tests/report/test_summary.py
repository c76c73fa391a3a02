"""The summary is derived from results files: failed / skipped / missing / unreadable / new chapters,
verdicts per scope, findings, page one. And notebooks/00_summary.ipynb executed (papermill, no engine) on a fake
stand-in CPU run: page one's highlighted next-command box, one language per output, and the data keys render/publish
read."""
from __future__ import annotations

import re
from pathlib import Path
from types import SimpleNamespace

import nbformat
import papermill as pm
import pytest

from bitcpm_validation.paths import NOTEBOOKS_DIR, PROJECT_ROOT
from bitcpm_validation.report import results as R
from bitcpm_validation.report import summary as S
from bitcpm_validation.report.checks import CheckSpec
from bitcpm_validation.report.contents import all_chapters
from bitcpm_validation.report.display import LANG_KEY, T


def put(run: Path, chapter: str, status: str, checks=(), metrics=(), **kw) -> None:
    r = R.ChapterResult(chapter=chapter, title_en=chapter, title_zh=chapter, status=status, **kw)
    r.checks = [c if isinstance(c, R.Check) else R.Check(*c) for c in checks]
    r.metrics = [m if isinstance(m, R.Metric) else R.Metric(*m) for m in metrics]
    R.save(r, run / "results" / f"{chapter}.json")


def chk(cid, status, scope, detail="", name=None):
    return R.Check(cid, status, name or cid, (name or cid) + "（中）", detail, detail + "（中）" if detail else "", scope)


def spec(cid, chapter, scope, **kw) -> CheckSpec:
    # built directly, not with checks.define: tests must not add checks to the project's registry
    return CheckSpec(cid, chapter, scope, cid, cid, "criterion", "判据", **kw)


@pytest.fixture
def run(tmp_path) -> Path:
    put(tmp_path, "01_environment", "ok", checks=[("platform", "pass", "Device matches", "设备一致", "cpu", "cpu")],
        metrics=[("device", "CPU", "", "Device", "设备", True)])
    put(tmp_path, "02_loading", "failed", checks=[("config", "pass", "Config", "配置"), ("weights", "warn", "W", "权重", "slow")],
        metrics=[("init_s", 12.345, "s", "Init", "初始化", True, True), ("other", 1, "", "o", "o")],
        error="RuntimeError: engine died <script>")
    put(tmp_path, "03_inference", "skipped", reason_en="no model", reason_zh="无模型")
    put(tmp_path, "04_determinism", "running")
    put(tmp_path, "42_newthing", "ok", checks=[("x", "fail", "New check", "新检查", "bad")])
    (tmp_path / "results" / "05_chinese.json").write_text("{oops")
    put(tmp_path, "00_summary", "ok", checks=[("s", "pass", "S", "S")])
    return tmp_path


def by_chapter(rows):
    out = {}
    for r in rows:
        out.setdefault(r.chapter, []).append(r)
    return out


def test_matrix_covers_every_case(run):
    rows = by_chapter(S.check_matrix(run))
    assert "00_summary" not in rows  # the summary does not list itself
    assert [r.status for r in rows["01_environment"]] == ["pass"]
    failed = rows["02_loading"]
    assert failed[0].status == "fail" and "engine died" in failed[0].reason_en and failed[0].chapter_status == "failed"
    assert failed[0].kind == "chapter" and failed[0].scope is None
    assert [r.status for r in failed[1:]] == ["pass", "warn"]  # checks recorded before the failure are kept
    assert rows["03_inference"][0].status == "not_run" and "no model" in rows["03_inference"][0].reason_en
    assert rows["03_inference"][0].mark == "—" and "无模型" in rows["03_inference"][0].reason_zh
    assert rows["04_determinism"][0].status == "fail" and "interrupted" in rows["04_determinism"][0].reason_en
    assert rows["05_chinese"][0].status == "fail" and rows["05_chinese"][0].chapter_status == "unreadable"
    assert rows["42_newthing"][0].status == "fail"  # a chapter nobody registered still shows up
    assert rows["03_inference"][0].title == ("03 推理测试", "03 Inference")
    for c in all_chapters():  # every registered chapter appears even without a results file
        if c.id != "00_summary":
            assert c.id in rows
    missing = [r for r in S.check_matrix(run) if r.chapter_status == "missing"]
    assert missing and all(r.status == "not_run" and r.mark == "—" for r in missing)


def test_key_metrics_only_key(run):
    km = S.key_metrics(run)
    assert [(m.chapter, m.id) for m in km] == [("01_environment", "device"), ("02_loading", "init_s")]
    assert km[1].value_text == "12.35 s"


def test_counts_leave_out_unscoped_rows_and_document_claims(run):
    rows = S.check_matrix(run)
    c = S.verdict_counts(rows)
    # only the chapter-level rows count here: 02 failed, 04 interrupted, 05 unreadable (fail); the
    # checks in this fixture are legacy rows without a scope and count in no verdict
    assert c == {"pass": 0, "warn": 0, "fail": 3, "not_run": sum(r.kind == "chapter" and r.status == "not_run" for r in rows),
                 "not_comparable": 0}
    assert S.verdict(c) == "fail"
    assert S.verdict({"pass": 3, "warn": 0, "fail": 0, "not_run": 1}) == "pass"
    assert S.verdict({"pass": 3, "warn": 1, "fail": 0, "not_run": 0}) == "warn"


def test_statuses(run):
    st = S.chapter_statuses(run)
    assert st["02_loading"] == "failed" and st["03_inference"] == "skipped" and st["05_chinese"] == "unreadable"
    assert st["06_precision"] == "missing" and "00_summary" not in st


def test_markdown_escapes_untrusted_reason(run):
    md = S.matrix_markdown(S.check_matrix(run))
    assert "<script>" not in md and "&lt;script&gt;" in md
    assert md.count("\n") == len(S.check_matrix(run)) + 1  # one line per row, none broken


def test_empty_run(tmp_path):
    rows = S.check_matrix(tmp_path)
    assert rows and all(r.status == "not_run" for r in rows)
    assert S.key_metrics(tmp_path) == []
    v = S.scope_verdicts(rows)
    assert v["engine"].verdict == v["model"].verdict == "not_assessed"  # nothing ran, nothing failed


def test_format_value_reads_plainly():
    assert S.format_value(None, "s") == "—"
    assert S.format_value(1234567, "tokens") == "1,234,567 tokens"
    assert S.format_value(0.123456, "") == "0.1235"
    assert S.format_value(True) == "yes"
    assert S.format_value(16898.63, "ms") == "16,898.6 ms"  # was "1.69e+04 ms"
    assert S.format_value(0.0073, "GB") == "0.0073 GB"
    assert S.format_value(1.2e-7, "") == "0.00000012"
    assert S.format_value(123456.7, "tok/s") == "123,457 tok/s"
    assert S.format_value(0.0, "s") == "0 s"
    for v in (1e-9, 3.3e-5, 0.5, 7.0, 99999.0, 1e12):
        assert "e" not in S.format_value(v), v


def test_short_keeps_one_line():
    assert S.short("First sentence. Second one.") == "First sentence."
    assert S.short("第一句。第二句。") == "第一句。"
    s = S.short("word " * 50, 40)
    assert len(s) <= 40 and s.endswith("…") and "\n" not in s
    assert S.short("a\nb  c") == "a b c"


# -- verdicts per scope ----------------------------------------------------------------------------------
def scoped_run(tmp: Path, checks: dict[str, list[R.Check]], statuses: dict[str, str] | None = None) -> list[S.MatrixRow]:
    """A run where every registered chapter has results (status ok unless given) with the given checks."""
    statuses = statuses or {}
    for c in all_chapters():
        if c.id != "00_summary" and statuses.get(c.id) != "missing":
            extra = {"error": "boom"} if statuses.get(c.id) == "failed" else {}
            extra |= {"reason_en": "not on this host", "reason_zh": "不适用于此主机"} if statuses.get(c.id) == "skipped" else {}
            put(tmp, c.id, statuses.get(c.id, "ok"), checks=checks.get(c.id, []), **extra)
    return S.check_matrix(tmp)


SPECS = [spec("kv", "02_loading", "engine"), spec("probe", "03_inference", "model", family=True),
         spec("ratio", "10_quantization", "document"), spec("fidelity", "06_precision", "engine")]
GOOD = {"02_loading": [chk("kv", "pass", "engine")], "03_inference": [chk("probe:paris", "pass", "model")],
        "06_precision": [chk("fidelity", "pass", "engine")], "10_quantization": [chk("ratio", "pass", "document")]}


def test_all_pass(tmp_path):
    v = S.scope_verdicts(scoped_run(tmp_path, GOOD), SPECS)
    assert (v["engine"].verdict, v["model"].verdict) == ("pass", "pass")
    assert v["engine"].counts["pass"] == 2 and v["engine"].chapters == ["02_loading", "06_precision"]
    assert S.overall(v) == "pass"


def test_document_fail_is_a_finding_not_a_verdict(tmp_path):
    rows = scoped_run(tmp_path, GOOD | {"10_quantization": [chk("ratio", "fail", "document", "0.29 of BF16, not ~0.10")]})
    v = S.scope_verdicts(rows, SPECS)
    assert (v["engine"].verdict, v["model"].verdict) == ("pass", "pass") and S.verdict(rows, SPECS) == "pass"
    assert S.verdict(S.verdict_counts(rows)) == "pass"  # the legacy counts path leaves the claim out too
    claims = S.document_claims(rows)
    assert [(c["check_id"], c["mark"]) for c in claims] == [("ratio", "❌")] and "0.29" in claims[0]["says"]["en"]
    f = S.findings(rows, SPECS)
    assert [x.scope for x in f] == ["document"] and "(no verdict)" in f[0].impact.en
    # page one gives the claims one line (the table follows)
    assert S.document_line(claims).en == ("Original document's claims: 1 checked (❌ 1), [table on the next page](#claims); "
                                         "never in a verdict.")
    assert S.document_line(claims).zh.startswith("原文档的说法：核对 1 条（❌ 1）")
    assert S.document_line([]) is None


def test_claims_are_shown_once_in_full_and_the_chapters_point_there(tmp_path):
    """Issue 20.2: the summary's claims table holds each claim's finding in full; a chapter that checked claims
    gives one line (each claim's mark and a link to the table), not the rows again."""
    long = "full 0.5B shape, analytic: " + "packed 71.8 % smaller than stored; " * 6
    rows = scoped_run(tmp_path, GOOD | {"10_quantization": [chk("ratio", "fail", "document", long)]})
    _, body = S.document_table(S.document_claims(rows))
    assert body[0][2].en == long and body[0][1] == "❌"  # not cut short: nowhere else shows it
    claims = [R.Check("ratio", "fail", "Original claim: ~90% compression", "原文档：约 90% 压缩", long, "详", "document"),
              R.Check("bits", "pass", "Original claim: ~1.58 bit", "原文档：约 1.58 bit", "ok", "好", "document")]
    line = S.document_pointer(claims)
    assert line.en == ("❌ Original claim: ~90% compression; ✅ Original claim: ~1.58 bit. Each claim with what the files "
                       "and measurements say: the summary's [claims table](#claims).")
    assert line.zh.startswith("❌ 原文档：约 90% 压缩；✅ 原文档：约 1.58 bit。") and "(#claims)" in line.zh
    assert long not in line.en  # the finding is in the table only
    assert S.document_pointer([]).en == "This chapter checked no claim of the original document."


def test_engine_fail_and_model_warn(tmp_path):
    rows = scoped_run(tmp_path, GOOD | {"02_loading": [chk("kv", "fail", "engine", "KV 0 tokens")],
                                        "03_inference": [chk("probe:paris", "warn", "model", "close")]})
    v = S.scope_verdicts(rows, SPECS)
    assert (v["engine"].verdict, v["model"].verdict) == ("fail", "warn")
    assert S.overall(v) == "fail"
    assert v["engine"].flagged == [("02 kv（中）", "02 kv")]  # what decided the verdict, shown as its "why"
    _, body = S.scopes_table(v)
    assert body[0][3].en == "02 kv" and body[1][3].en == "03 probe:paris"
    assert body[0][2] == "✅\u00a01\u2002❌\u00a01"  # counts without zeros, kept whole
    f = S.findings(rows, SPECS)
    headers, table = S.findings_table(f)
    assert [h.en if isinstance(h, S.T) else h for h in headers] == ["", "Finding", "Impact and what to do"]
    assert [r[0] for r in table] == ["❌", "⚠️"]
    assert table[0][2].en == "engine not faithful here: engine verdict ❌; see chapter 02"
    assert table[0][2].zh == "引擎在此设备上未忠实运行该模型，引擎结论失败；见第 02 章"


PERF_SPECS = SPECS + [spec("decode_of_limit", "07_performance", "performance"),
                      spec("requests_completed", "07_performance", "engine"),
                      spec("round_trip", "02_loading", "repository")]


def test_a_slow_host_or_a_bad_file_never_makes_the_engine_fail(tmp_path):
    """Issue 23: performance and the model's own files have verdicts of their own; the engine's stays the
    faithfulness verdict."""
    rows = scoped_run(tmp_path, GOOD | {
        "02_loading": [chk("kv", "pass", "engine"), chk("round_trip", "fail", "repository", "the files lose 'k'")],
        "07_performance": [chk("decode_of_limit", "fail", "performance", "3 tok/s is 7.5 % of 40 tok/s"),
                           chk("requests_completed", "pass", "engine")]})
    v = S.scope_verdicts(rows, PERF_SPECS)
    assert list(v) == ["engine", "model", "performance", "repository"]
    assert (v["engine"].verdict, v["performance"].verdict, v["repository"].verdict) == ("pass", "fail", "fail")
    f = {x.check_id: x for x in S.findings(rows, PERF_SPECS)}
    assert "the engine verdict is not affected" in f["decode_of_limit"].impact.en
    assert "the engine verdict is not affected" in f["round_trip"].impact.en
    line = S.first_line(v)
    assert "engine ✅ pass" in line.en and "performance ❌ fail" in line.en and "repository ❌ fail" in line.en


def test_a_busy_host_makes_performance_not_comparable_with_what_to_do(tmp_path):
    busy = ("not comparable: host busy: other processes used 0.90 of 2 cores over 60 s (more than 0.25) (during the "
            "benchmark sweep); re-run on a quiet host: make report RESUME=runs/<id> ONLY=performance")
    rows = scoped_run(tmp_path, GOOD | {"07_performance": [chk("decode_of_limit", "not_comparable", "performance", busy),
                                                           chk("prefill", "not_comparable", "performance", busy),
                                                           chk("requests_completed", "pass", "engine")]})
    v = S.scope_verdicts(rows, PERF_SPECS)
    assert v["performance"].verdict == "not_comparable" and v["performance"].mark == "⊘"
    assert v["engine"].verdict == "pass" and S.overall(v) == "not_comparable"
    assert "host busy: other processes used 0.90 of 2 cores" in v["performance"].flagged[0].en
    f = [x for x in S.findings(rows, PERF_SPECS) if x.status == "not_comparable"]
    assert len(f) == 1 and f[0].mark == "⊘" and "ONLY=performance" in f[0].remedy.en and "不是 ❌" in f[0].impact.zh
    assert f[0].what.en.startswith("07 Performance decode_of_limit, prefill: not comparable: host busy")  # one line
    # page one: the performance row says what to re-run and what its figures are relative to
    perf = R.ChapterResult("07_performance", "Performance", "性能", status="ok",
                           checks=[chk("decode_of_limit", "not_comparable", "performance", busy)],
                           data={"judged_against": {"en": "decode 6.7 tok/s, what this device reaches",
                                                    "zh": "解码 6.7 tok/s，本设备可达到的速度"}})
    R.save(perf, tmp_path / "results" / "07_performance.json")
    page = S.page_one(tmp_path, SimpleNamespace(model=SimpleNamespace(name="m", is_stand_in=True, source=None)),
                      rows, PERF_SPECS)
    assert page["rerun_performance"] == f"make report RESUME=runs/{tmp_path.name} ONLY=performance"
    assert page["performance_basis"]["en"].startswith("decode 6.7 tok/s")
    _, body = S.scopes_table(v, page)
    row = next(r for r in body if r[0].en == "performance")
    assert row[1].en.startswith("⊘") and "relative to: decode 6.7 tok/s" in row[3].en
    assert f"make report RESUME=runs/{tmp_path.name} ONLY=performance" in row[3].en and "相对于" in row[3].zh


def test_incomplete_when_a_chapter_of_the_scope_failed_or_was_skipped(tmp_path):
    rows = scoped_run(tmp_path, GOOD, {"06_precision": "failed"})
    v = S.scope_verdicts(rows, SPECS)
    assert v["engine"].verdict == "incomplete" and v["model"].verdict == "pass"  # 06 has engine checks only
    assert any("06 Precision failed: boom" in r.en for r in v["engine"].reasons)
    rows = scoped_run(tmp_path, GOOD, {"06_precision": "skipped"})
    v = S.scope_verdicts(rows, SPECS)
    assert v["engine"].verdict == "incomplete" and "skipped" in v["engine"].reasons[0].en


def test_incomplete_when_a_needed_check_did_not_run(tmp_path):
    rows = scoped_run(tmp_path, GOOD | {"06_precision": [S_not_run("fidelity", "engine", "no reference")]})
    v = S.scope_verdicts(rows, SPECS)
    assert v["engine"].verdict == "incomplete" and "no reference" in v["engine"].reasons[0].en


def S_not_run(cid, scope, why):
    return chk(cid, "not_run", scope, why)


def test_not_assessed_says_why(tmp_path):
    why = "stand-in trained on the probes"
    rows = scoped_run(tmp_path, GOOD | {"03_inference": [S_not_run("probe:paris", "model", why),
                                                         S_not_run("probe:four", "model", why)]})
    v = S.scope_verdicts(rows, SPECS)
    assert v["model"].verdict == "not_assessed" and not v["model"].assessed
    # one check family, one shared reason: one grouped line (issue 20.2), never one line per probe
    assert [r.en for r in v["model"].reasons] == [f"probe (all 2 not judged): {why}"]
    assert v["model"].reasons[0].zh.startswith("probe（2 项均未评判）：")
    assert v["engine"].verdict == "pass" and S.overall(v) == "pass"  # not_assessed never decides the run
    line = S.first_line(v)
    assert line.en.startswith("Assessed: engine ✅ pass.") and "Not assessed: model (" in line.en and why in line.en
    assert line.zh.startswith("已评估：引擎 ✅ 通过。未评估：模型（")


def test_a_failed_model_chapter_is_incomplete_not_unassessed(tmp_path):
    rows = scoped_run(tmp_path, {k: v for k, v in GOOD.items() if k != "03_inference"}, {"03_inference": "failed"})
    assert S.scope_verdicts(rows, SPECS)["model"].verdict == "incomplete"


def test_a_missing_chapter_with_unknown_scopes_touches_every_scope(tmp_path):
    rows = scoped_run(tmp_path, GOOD, {"08_serving": "missing"})
    v = S.scope_verdicts(rows, SPECS)  # 08 has no registered checks here: its scopes are unknown
    assert v["engine"].verdict == v["model"].verdict == "incomplete"
    assert any("08 Serving did not run" in r.en for r in v["model"].reasons)


def test_rows_without_scope_never_count_silently(tmp_path):
    legacy = R.Check("kv", "fail", "KV", "KV", "old row")  # scope None: written before the registry
    rows = scoped_run(tmp_path, GOOD | {"02_loading": [legacy]})
    v = S.scope_verdicts(rows, SPECS)
    assert v["engine"].verdict == "incomplete" and v["engine"].counts["fail"] == 0
    assert any("without a scope" in r.en for r in v["engine"].reasons)
    assert v["model"].verdict == "pass"  # 02's registered checks are engine checks
    only_legacy = scoped_run(tmp_path, {"03_inference": [R.Check("probe:a", "pass", "P", "P")]})
    assert S.scope_verdicts(only_legacy, SPECS)["model"].verdict == "incomplete"  # not "not assessed", not "pass"
    f = [x for x in S.findings(rows, SPECS) if x.check_id == "kv"]
    assert f and f[0].scope is None and "counts in no verdict" in f[0].impact.en


# -- findings ------------------------------------------------------------------------------------------
def test_findings_one_line_each_with_impact_and_remedy(tmp_path):
    specs = SPECS[:-1] + [spec("fidelity", "06_precision", "engine", impact_en="logprobs drift", impact_zh="对数概率偏离",
                               remedy_en="run with dtype float32", remedy_zh="用 float32 运行")]
    rows = scoped_run(tmp_path, GOOD | {"06_precision": [chk("fidelity", "fail", "engine", "KL 0.3 > 0.05.\nMore text")],
                                        "03_inference": [chk("probe:paris", "warn", "model", "answered Lyon")]},
                      {"07_performance": "failed"})
    f = S.findings(rows, specs)
    assert [x.status for x in f] == ["fail", "fail", "warn"]
    fid = next(x for x in f if x.check_id == "fidelity")
    assert fid.line.en == "❌ 06 Precision fidelity: KL 0.3 > 0.05: logprobs drift; run with dtype float32"
    assert fid.line.zh.startswith("❌ 06 精度对比 fidelity（中）：KL 0.3 > 0.05：对数概率偏离") and fid.line.zh.endswith("；用 float32 运行")
    perf = next(x for x in f if x.chapter == "07_performance")
    assert "failed: boom" in perf.what.en and "evidence/07_performance.log" in perf.remedy.en
    probe = next(x for x in f if x.check_id == "probe:paris")  # no remedy registered: points to its chapter
    assert probe.remedy.en == "see chapter 03" and probe.impact.en == "model quality in doubt"
    for x in f:
        assert "\n" not in x.line.en and "\n" not in x.line.zh


# -- page one ------------------------------------------------------------------------------------------
def env_result(tmp: Path, kind: str, name: str, vllm="0.11.0", ascend=None) -> None:
    r = R.ChapterResult("01_environment", "Environment", "运行环境", status="ok")
    r.metrics = [R.Metric("device", name, "", "Device", "设备", key=True), R.Metric("device_kind", kind, "", "k", "k"),
                 R.Metric("device_count", 1, "", "n", "n")]
    r.data = {"versions": {"vllm": vllm, "vllm_ascend": ascend}}
    R.save(r, tmp / "results" / "01_environment.json")


def params(stand_in: bool, name="openbmb/BitCPM4-0.5B", source=None):
    return SimpleNamespace(profile="p", model=SimpleNamespace(name=name, is_stand_in=stand_in, source=source))


def test_stand_in_run_shows_the_next_command(tmp_path):
    from bitcpm_validation.params import load_params

    p = load_params("params/default.yaml")  # the shipped default profile: the stand-in
    assert p.model.is_stand_in
    env_result(tmp_path, "cpu", "CPU")
    page = S.page_one(tmp_path, p)
    assert page["weights"] == "stand-in" and "not BitCPM4" in page["weights_text"]["en"]
    assert page["next_command"]["en"].startswith("This run validates the pipeline, not BitCPM4 on Ascend.")
    assert "make report PARAMS=params/ascend-910b3.yaml" in page["next_command"]["en"]
    assert "make report PARAMS=params/ascend-910b3.yaml" in page["next_command"]["zh"]
    assert page["device"]["en"] == "CPU" and page["engine"]["en"] == "vLLM 0.11.0"


def test_real_weights_on_ascend_need_no_next_command(tmp_path):
    env_result(tmp_path, "npu", "Ascend910B3", ascend="0.11.0rc1")
    put(tmp_path, "02_loading", "ok", data={"real": {"smoke": True}, "dummy": {"smoke": True}},
        metrics=[R.Metric("kv", 10, "tokens", "KV", "KV", key=True, measured_on="BitCPM4-0.5B · real · Ascend910B3"),
                 R.Metric("tps", 10.0, "tok/s", "tps", "tps", key=True,
                          measured_on="BitCPM4-0.5B · full-size dummy · Ascend910B3")])
    src = SimpleNamespace(hub="huggingface", repo_id="openbmb/BitCPM4-0.5B", revision=None, commit="abcdef0123456789")
    page = S.page_one(tmp_path, params(False, source=src))
    assert page["next_command"] is None and page["weights"] == "real"
    assert page["engine"]["en"] == "vLLM 0.11.0 + vLLM-Ascend 0.11.0rc1" and page["device_kind"] == "npu"
    assert page["also_measured_on"] == ["full-size dummy"] and page["source"]["commit"] == "abcdef0123456789"
    headers, rows = S.validated_table(page)
    cells = {r[0].en: r[1] for r in rows}
    assert cells["Source"] == "huggingface: openbmb/BitCPM4-0.5B @ abcdef012345"
    assert "some metrics on: full-size dummy" in cells["Weights"].en
    # a CPU run with real weights still says it is not an Ascend validation
    env_result(tmp_path, "cpu", "CPU")
    box = S.page_one(tmp_path, params(False))["next_command"]
    assert box["en"].startswith("This run validates the model on a CPU, not on Ascend. On an Ascend host run make "
                                "report PARAMS=params/ascend-910b3.yaml")


def test_unknown_weights_and_device_are_said(tmp_path):
    page = S.page_one(tmp_path, params(False))
    assert page["weights"] == "unknown" and "not detected" in page["device"]["en"]
    assert page["next_command"] is None  # neither stand-in nor a detected CPU


def test_tables_are_one_language_per_cell(tmp_path):
    rows = scoped_run(tmp_path, GOOD | {"02_loading": [chk("kv", "warn", "engine", "a" * 300)]})
    v = S.scope_verdicts(rows, SPECS)
    for headers, body in (S.scopes_table(v), S.matrix_display(rows), S.registry_table(SPECS),
                          S.results_card_table(S.results_card(S.key_metrics(tmp_path))), S.document_table(S.document_claims(rows)),
                          S.validated_table(S.page_one(tmp_path, params(True)))):
        for cell in [*headers, *(c for r in body for c in r)]:
            text = cell.en if isinstance(cell, S.T) else str(cell)
            if isinstance(cell, S.T):  # no "中文 · English" labels: the English text carries no Chinese
                assert not re.search(r"[\u4e00-\u9fff（），。：；]", cell.en), cell
            assert "\n" not in text and "Check(" not in text and "{'" not in text
    matrix = S.matrix_display(rows)[1]
    assert all(len(r[3].en) <= 70 for r in matrix if isinstance(r[3], S.T))  # short reasons: details in the chapter
    chapters = [r[0] for r in matrix if r[0]]
    assert len(chapters) == len({r.chapter for r in rows})  # chapter named once, on its first row


def test_summary_data_keys(tmp_path):
    rows_specs = SPECS
    scoped_run(tmp_path, GOOD)
    env_result(tmp_path, "cpu", "CPU")
    d = S.summary_data(tmp_path, params(True), rows_specs)
    assert set(d) >= {"page_one", "scopes", "findings", "document", "matrix", "registry", "key_metrics", "timings",
                      "chapters"}
    assert set(d["scopes"]) == {"engine", "model", "performance", "repository"} and d["scopes"]["engine"]["verdict"] == "pass"
    assert d["registry"][0]["id"] == "kv" and d["registry"][0]["criterion"]["zh"] == "判据"
    R.validate({"chapter": "00_summary", "title_en": "s", "title_zh": "s", "data": d})  # JSON-ready


def test_validated_line_escapes_names_from_files(tmp_path):
    page = S.page_one(tmp_path, params(False, name="evil/*model*<b>"))
    line = S.validated_line(page)
    assert line.en.startswith("**Model** evil/\\*model\\*&lt;b&gt; · **Weights** unknown")
    assert line.zh.startswith("**模型** evil/") and "**设备** 未检测" in line.zh and "Profile" not in line.en


def test_results_card_escapes_the_chapter_link():
    km = [S.KeyMetric("02_<i>", "h", "a", "A<i>", "甲", 1.5, "s", measured_on="stand-in · trained · CPU")]
    body = S.results_card_table(S.results_card(km))[1]
    assert body[0][5] == '<a href="#ch-02_&lt;i&gt;">02</a>' and body[0][0].en == "A<i>"  # a T cell: escaped on show


def test_matrix_folds_long_families_but_never_a_failure(tmp_path):
    why = [f"the model was trained on this prompt: {p}'s text occurs verbatim" for p in ("a", "b", "c", "d")]
    probes = [chk(f"probe:{p}", "not_run", "model", w) for p, w in zip("abcd", why)]
    probes += [chk("probe:e", "fail", "model", "answered noise"), chk("probe:f", "pass", "model", "ok"),
               chk("probe:g", "pass", "model", "ok")]
    rows = scoped_run(tmp_path, GOOD | {"03_inference": probes})
    spec_probe = spec("probe", "03_inference", "model", family=True)
    body = [r for r in S.matrix_display(rows, [spec_probe])[1] if r[0] == ("03 推理测试", "03 Inference") or
            (r[0] == "" and isinstance(r[2], S.T) and "probe" in r[2].en)]
    assert [(r[1], r[2].en, r[3].en) for r in body] == [
        ("—", "probe (4 items)", "the model was trained on this prompt…"),  # folded, with the reason they share
        ("❌", "probe:e", "answered noise"), ("✅", "probe:f", "ok"), ("✅", "probe:g", "ok")]  # 2 < fold: kept
    assert body[0][2].zh == "probe（4 项）"


def test_registry_appendix_says_why_a_check_cannot_fail():
    specs = [spec("batch", "04_determinism", "engine", worst="warn", worst_reason="no batch-invariance promise",
                  worst_reason_zh="不保证批次不变"), spec("restart", "04_determinism", "engine")]
    specs.append(spec("x<y", "05_chinese", "model"))
    headers, body = S.registry_table(specs)
    assert [h.en for h in headers] == ["Chapter", "Check and criterion", "Scope", "Worst"]
    assert [r[0] for r in body] == ["04", "", "05"] and [r[3] for r in body] == ["⚠️", "❌", "❌"]
    assert body[0][1].en == "<b>batch</b> (<code>batch</code>): criterion. At worst ⚠️: no batch-invariance promise"
    assert body[0][1].zh == "<b>batch</b>（<code>batch</code>）：判据。最差为 ⚠️：不保证批次不变"
    assert body[2][1].en == "<b>x&lt;y</b> (<code>x&lt;y</code>): criterion"  # a trusted cell: every part escaped
    data = S.registry_rows(specs)
    assert data[0]["worst_reason"] == {"zh": "不保证批次不变", "en": "no batch-invariance promise"}
    assert data[1]["worst_reason"] is None


def test_registry_appendix_shows_ids_and_backquoted_settings_as_code():
    """The Chinese appendix carries no English words: a check's id and `settings` in its criterion are code."""
    s = CheckSpec("repeat", "04_determinism", "engine", "repeat", "repeat", "runs `x` and a<b", "运行 `vllm bench serve` 且 a<b")
    _, body = S.registry_table([s])
    assert body[0][1].zh == "<b>repeat</b>（<code>repeat</code>）：运行 <code>vllm bench serve</code> 且 a&lt;b"
    assert body[0][1].en.endswith("runs <code>x</code> and a&lt;b")


def test_fake_run_with_the_stand_in_flag_gets_the_next_command_box(tmp_path):
    from fake_run import make_run  # run.json says is_stand_in: true; results carry untrusted text

    run = make_run(tmp_path / "run")
    page = S.page_one(run)  # no params: model and stand-in flag from run.json
    assert page["weights"] == "stand-in" and page["model"] == "openbmb/BitCPM4-0.5B"
    assert page["next_command"] == S.tdict(S.NEXT_COMMAND)
    assert "make report PARAMS=params/ascend-910b3.yaml" in page["next_command"]["zh"]
    f = S.findings(S.check_matrix(run))
    assert any(x.chapter == "04_determinism" and x.status == "fail" for x in f)  # its failed chapter is a finding


def test_chapters_the_profile_did_not_select_say_so(tmp_path):
    p = SimpleNamespace(chapters=["environment", "03"], profile="p",
                        model=SimpleNamespace(name="m", is_stand_in=False, source=None))
    assert S.selected_chapters(p) == ["01_environment", "03_inference"]
    assert S.selected_chapters(SimpleNamespace(chapters=["all"])) is None
    put(tmp_path, "03_inference", "ok", checks=[chk("probe:a", "pass", "model")])
    rows = S.check_matrix(tmp_path, S.selected_chapters(p))
    serving = next(r for r in rows if r.chapter == "08_serving")
    assert serving.chapter_status == "not_selected" and serving.reason_en == "not selected in this profile"
    assert next(r for r in rows if r.chapter == "01_environment").chapter_status == "missing"  # selected, no results
    v = S.scope_verdicts(rows)
    assert v["model"].verdict == "incomplete"
    assert any(r.en == "chapter 08 Serving not selected by the profile" for r in v["model"].reasons)


def test_engine_starts_table_names_each_start_in_one_language():
    run = {"count": 2, "seconds": 60.0, "failed": 1, "starts": [
        {"chapter": "runner", "kind": "shared-server", "which": "real", "seconds": 32.1, "ok": True,
         "why": "the run's shared engine (every chapter that can share it)"},
        {"chapter": "04_determinism", "kind": "offline", "which": "real", "seconds": 28.0, "ok": True, "why": "restart",
         "mode": "in-process", "phases": {"import": 11.0, "config": 0.5, "model_load": 0.2, "other": 3.25}},
        {"chapter": "07_performance", "kind": "benchmark", "which": "dummy", "seconds": None, "ok": False,
         "why": "a reason the project does not know", "error": "port taken"}]}
    headers, rows = S.engine_starts_table(run)
    assert [h.en for h in headers] == ["Chapter", "Kind", "Weights", "Ready in", "Phases", "Why"]
    assert rows[0][3] == "32.1 s" and rows[0][5].zh.startswith("本次运行共享的引擎") and rows[0][1].en == "shared server"
    assert rows[1][5] == S.T("重启：与第一次运行的输出比较", "restart")
    assert rows[1][4] == S.T("进程内：导入 vLLM 11.0 s · 参数与检查 0.5 s · 模型加载 0.2 s · 其余 3.2 s",
                             "in process: import vLLM 11.0 s · config 0.5 s · model load 0.2 s · other 3.2 s")
    assert rows[0][4] == S.T("—", "—")  # a start recorded before phases were: nothing made up
    assert rows[2][3].en == "failed: port taken" and rows[2][5].zh == rows[2][5].en == "a reason the project does not know"
    assert rows[0][2] == S.T("真实权重", "real") and rows[2][2] == S.T("随机权重", "dummy")
    synthetic = {"chapter": "02_loading", "kind": "offline", "which": "synthetic", "seconds": 40.0, "ok": True,
                 "why": "the full-size architecture with the synthetic checkpoint (seeded ternary weights, read from files)"}
    _, (row,) = S.engine_starts_table({"starts": [synthetic]})
    assert row[2] == S.T("合成权重", "synthetic") and row[5].zh.startswith("完整尺寸结构，合成检查点")


def test_a_server_starts_phases_are_named_in_each_language():
    start = {"chapter": "runner", "kind": "shared-server", "which": "real", "seconds": 41.8, "ok": True, "why": "",
             "mode": "", "phases": {"api_server_process": 10.2, "engine_core_process": 10.4, "model_load": 0.0,
                                    "to_healthy": 4.1}}
    assert S.start_phases_text(start) == S.T(
        "API 服务进程启动 10.2 s · 引擎核心进程启动 10.4 s · 模型加载 0.0 s · 至健康检查通过 4.1 s",
        "API server process 10.2 s · engine core process 10.4 s · model load 0.0 s · until healthy 4.1 s")


def test_matrix_folds_a_chapters_passes_and_keeps_every_warning():
    def row(cid, status, name):
        return S.MatrixRow("02_loading", "02 · Loading", "ok", cid, name, name, status, "why " + name, "why " + name,
                           kind="check", title=S.T("02 模型加载", "02 Loading"))
    rows = [row("a", "pass", "A"), row("b", "pass", "B"), row("c", "pass", "C"), row("d", "warn", "D"), row("e", "pass", "E")]
    _, body = S.matrix_display(rows)
    assert [b[1] for b in body] == ["✅", "⚠️", "✅"]
    assert body[0][2].en == "3 checks passed" and body[0][3].en == "A, B, C" and body[0][0].en == "02 Loading"
    assert body[1][2].en == "D" and body[2][2].en == "E"  # fewer than three passes in a row stay as they are


def test_synthetic_weights_are_named_as_such_on_page_one(tmp_path):
    """A directory that declares synthetic weights (model.weights_kind) is never shown as 'real weights'."""
    env_result(tmp_path, "cpu", "CPU")
    put(tmp_path, "02_loading", "ok", data={"real": {"smoke": True}})
    p = SimpleNamespace(profile="p", model=SimpleNamespace(name="m", is_stand_in=False, source=None,
                                                           weights_kind="synthetic"))
    page = S.page_one(tmp_path, p)
    assert page["weights"] == "synthetic" and "not BitCPM4" in page["weights_text"]["en"]
    assert "合成权重" in page["weights_text"]["zh"]
    p.model.weights_kind = "real"
    assert S.page_one(tmp_path, p)["weights"] == "real"


def test_results_card_one_named_row_per_figure_with_n_and_what_it_was_measured_on():
    on, full = "stand-in · trained ternary · CPU", "BitCPM4-0.5B shape · dummy weights · CPU"
    km = [S.KeyMetric("01_environment", "", "device", "Device", "设备", "CPU", ""),
          S.KeyMetric("02_loading", "", "init_s", "Engine init time", "引擎初始化总时间", 56.22, "s", measured_on=on),
          S.KeyMetric("08_serving", "", "server_startup_s", "Server start to healthy", "服务启动至健康", 56.2, "s",
                      measured_on=on),
          S.KeyMetric("02_loading", "", "max_concurrency", "Concurrency at context", "上下文并发", 256.0,
                      "× 2,048-token requests", measured_on=on),
          S.KeyMetric("03_inference", "", "probes_passed", "Probes passed", "探针通过", "0/0", "judged probes",
                      measured_on=on),
          S.KeyMetric("04_determinism", "", "identical_tokens", "x", "x", "1,280/1,280", "tokens", measured_on=on),
          S.KeyMetric("06_precision", "", "compared_lengths", "Shapes", "形状", "4 shapes", "", measured_on=on),
          S.KeyMetric("07_performance", "", "decode_tok_s", "Batch-1 decode tok/s = 1000 / TPOT p50",
                      "单请求解码速度 = 1000 / TPOT 中位数", 22.4, "tok/s", measured_on=full),
          S.KeyMetric("08_serving", "", "greedy_equal", "Greedy", "贪心", 3, "/3"),
          S.KeyMetric("09_accuracy", "", "ceval_acc", "ceval acc (n 260)", "ceval acc（n 260）", 0.25, "",
                      measured_on=on)]
    perf = R.ChapterResult("07_performance", "Performance", "性能", status="ok")
    perf.data = {"figures": {"rows": [{"id": "decode_tok_s", "samples": 8}]}}
    acc = R.ChapterResult("09_accuracy", "Accuracy", "基准精度", status="ok")
    acc.data = {"tasks": [{"task": "ceval", "score": {"points": 25.0, "se": 2.7, "n": 260}}]}
    rows = S.results_card(km, {"07_performance": perf, "09_accuracy": acc})
    got = {r.id: (r.name.en, r.value, r.unit.en, r.n, r.measured_on.en) for r in rows}
    # the device is on the identity line, the server start is the engine init, "0/0" judged nothing, a text is
    # the chapter's: none is a row
    assert list(got) == ["init_s", "max_concurrency", "identical_tokens", "decode_tok_s", "greedy_equal", "ceval_acc"]
    assert got["decode_tok_s"] == ("Batch-1 decode speed", "22.40", "tok/s", "8", "full shape, dummy weights")
    assert got["max_concurrency"][2] == "requests of 2,048 tokens"
    assert got["identical_tokens"][1:4] == ("1,280/1,280", "tokens", "1,280")
    assert got["greedy_equal"][1:] == ("3/3", "", "3", "—")
    assert got["ceval_acc"][:2] == ("ceval acc", "0.25") and got["ceval_acc"][3] == "260 / ±0.027"  # n and its stderr
    assert all(" = " not in r.name.en and " = " not in r.name.zh for r in rows)  # names, not formulas
    headers, body = S.results_card_table(rows)
    assert [h.en for h in headers] == ["Metric", "Value", "Unit", "n / ±", "Measured on", "Chapter"]
    assert body[3][5] == '<a href="#ch-07_performance">07</a>' and body[0][2].zh == "s"
    assert body[2][2].zh == "词元"  # the Chinese unit is a Chinese word


def test_page_one_findings_keep_to_a_limit():
    found = [S.Finding("warn", "engine", "02_loading", f"c{i}", T(f"w{i}", f"w{i}"), T("i", "i"), T("r", "r"))
             for i in range(10)]
    _, body = S.findings_table(found, limit=4)
    assert len(body) == 4 and body[-1][1].en == "7 more (⚠️\u00a07)"
    assert len(S.findings_table(found)[1]) == 10


def test_a_family_with_one_status_is_one_finding(tmp_path):
    why = "answer wrong: expected Paris"
    rows = scoped_run(tmp_path, GOOD | {"03_inference": [
        R.Check("probe:paris", "fail", "Probe paris", "探针 paris", why, why, "model"),
        R.Check("probe:four", "fail", "Probe four", "探针 four", why, why, "model"),
        R.Check("probe:poem", "warn", "Probe poem", "探针 poem", "short", "短", "model")]})
    f = S.findings(rows, SPECS)
    fails = [x for x in f if x.chapter == "03_inference" and x.status == "fail"]
    assert len(fails) == 1 and "(2 items)" in fails[0].what.en and why in fails[0].what.en
    assert [x.check_id for x in f if x.chapter == "03_inference" and x.status == "warn"] == ["probe:poem"]


def test_matrix_leaves_the_claims_to_their_own_table(tmp_path):
    rows = scoped_run(tmp_path, GOOD | {"10_quantization": [
        R.Check("doc_ratio", "fail", "Original: ~90%", "原文档：约 90%", "71.8%", "71.8%", "document")]})
    names = lambda body: [c.en for r in body for c in r if isinstance(c, T)]  # noqa: E731
    assert "Original: ~90%" in names(S.matrix_display(rows)[1])
    assert "Original: ~90%" not in names(S.matrix_display(rows, document=False)[1])


def test_page_one_findings_leave_out_what_the_performance_row_says():
    f = [S.Finding("not_comparable", "performance", "07_performance", "decode", T("忙", "busy"), T("i", "i"), T("r", "r")),
         S.Finding("warn", "engine", "06_precision", "top1", T("w", "w"), T("i", "i"), T("r", "r"))]
    assert [r[1].en for r in S.findings_table(f, not_comparable=False)[1]] == ["w"]
    assert len(S.findings_table(f)[1]) == 2


def test_card_name_is_a_name_not_a_formula():
    m = S.KeyMetric("07_performance", "", "prefill_tok_s", "Prefill tok/s = input_len / TTFT p50",
                    "预填充速度 = 输入长度 / TTFT 中位数", 12.0, "tok/s")
    assert S.card_name(m).en == "Prefill speed" and S.card_name(m).zh == "预填充速度"
    m = S.KeyMetric("09_accuracy", "", "quiz_acc", "quiz acc = right / all (n 40)", "测验（n 40）", 0.5, "")
    assert (S.card_name(m).en, S.card_name(m).zh) == ("quiz acc", "测验")


def test_page_one_findings_are_short_and_keep_what_to_do():
    f = [S.Finding("fail", "engine", "02_loading", "c", T("长" * 100, "word " * 60), T("影响" * 30, "impact " * 30),
                   T("处理" * 30, "remedy " * 30))]
    row = S.findings_table(f, limit=6)[1][0]
    assert len(row[1].en) <= 110 and len(row[1].zh) <= 60 and row[1].en.endswith("…")
    assert "; remedy" in row[2].en and "；处理" in row[2].zh  # what to do survives the cut
    assert S.findings_table(f)[1][0][1].en == "word " * 60  # elsewhere: whole


def test_page_one_says_which_shapes_and_lengths_the_engine_verdict_covers():
    """The precision chapter's compared_lengths (a description the card leaves out) is one line under the card."""
    value = "stand-in (4L×256): short 6–11, long-1024 1024 tokens; synthetic bitcpm4-0.5b (24L×1024): full-shape/long-1024 1024"
    km = [S.KeyMetric("06_precision", "", "compared_lengths", "Shapes and prompt lengths compared with the golden",
                      "与黄金实现比较的形状与提示长度", value, ""),
          S.KeyMetric("06_precision", "", "top1", "Top-1", "Top-1", 0.99, "")]
    assert all(r.id != "compared_lengths" for r in S.results_card(km))
    line = S.compared_line(km)
    assert f"`{value}`" in line.en and f"`{value}`" in line.zh and line.zh.startswith("引擎结论所覆盖的比较")
    assert S.compared_line(km[1:]) is None


# -- the summary notebook executed on a fake stand-in CPU run ---------------------------------------------------
CJK = re.compile(r"[\u4e00-\u9fff（），。：；]")


def fake_stand_in_cpu_run(run: Path) -> None:
    env = R.ChapterResult("01_environment", "Environment", "运行环境", status="ok")
    env.metrics = [R.Metric("device", "CPU", "", "Device", "设备", key=True, measured_on="— · — · CPU"),
                   R.Metric("device_kind", "cpu", "", "Device kind", "设备类型")]
    env.data = {"versions": {"vllm": "0.11.0"}}
    R.save(env, run / "results" / "01_environment.json")
    inf = R.ChapterResult("03_inference", "Inference", "推理测试", status="ok")
    inf.checks = [R.Check("probe:paris", "not_run", "Probe paris", "探针 paris", "stand-in trained on the probes",
                          "替身模型在探针上训练过", "model"),
                  R.Check("kv", "warn", "KV <b>capacity</b>", "KV 容量", "12 tokens < 64", "12 个 token < 64", "engine")]
    inf.metrics = [R.Metric("latency", 16898.63, "ms", "Latency", "延迟", key=True,
                            measured_on="stand-in · trained ternary · CPU")]
    R.save(inf, run / "results" / "03_inference.json")
    quant = R.ChapterResult("10_quantization", "Quantization", "三值量化", status="ok")
    quant.checks = [R.Check("doc_ratio", "fail", "Original claim: ~90% compression", "原文档：约 90% 压缩",
                            "71.8% smaller", "小 71.8%", "document")]
    R.save(quant, run / "results" / "10_quantization.json")
    failed = R.ChapterResult("07_performance", "Performance", "性能", status="failed", error="RuntimeError: died")
    R.save(failed, run / "results" / "07_performance.json")


@pytest.fixture(scope="module")
def executed(tmp_path_factory) -> tuple[nbformat.NotebookNode, R.ChapterResult]:
    run = tmp_path_factory.mktemp("run")
    fake_stand_in_cpu_run(run)
    out = run / "00_summary.ipynb"
    pm.execute_notebook(str(NOTEBOOKS_DIR / "00_summary.ipynb"), str(out), kernel_name="python3", progress_bar=False,
                        cwd=str(PROJECT_ROOT), parameters={"params_path": "params/default.yaml", "run_dir": str(run)})
    return nbformat.read(out, as_version=4), R.load(run / "results" / "00_summary.json")


def notebook_outputs(nb, lang):
    for c in nb.cells:
        for o in c.get("outputs", []):
            if o.get("metadata", {}).get(LANG_KEY) == lang:
                yield "".join(o["data"].get("text/html", "") or o["data"].get("text/markdown", ""))


def test_next_command_box_in_both_languages(executed):
    nb, _ = executed
    for lang in ("zh", "en"):
        boxes = [o for o in notebook_outputs(nb, lang) if "bv-note-warn" in o]
        assert len(boxes) == 1, lang
        assert "make report PARAMS=params/ascend-910b3.yaml" in boxes[0]
    assert "This run validates the pipeline, not BitCPM4 on Ascend." in next(o for o in notebook_outputs(nb, "en") if "bv-note" in o)


def test_page_one_says_what_and_which_scopes_were_assessed(executed):
    nb, res = executed
    en = "\n".join(notebook_outputs(nb, "en"))
    # a verdict per scope with its plain reason, once (no first line that repeats the table)
    assert "not\u00a0assessed" in en and "stand-in trained on the probes" in en and "Assessed: engine" not in en
    # the results card: metric | value | unit | n | measured on | chapter (a link to it)
    card = next(o for o in notebook_outputs(nb, "en") if "bv-card" in o)
    assert re.search(r"<td>Latency</td><td[^>]*>16,898.6</td><td>ms</td><td>—</td><td>stand-in</td>", card)
    assert '<a href="#ch-03_inference">03</a>' in card
    assert ">Device<" not in card  # the identity line names the device: no fact twice
    assert "07 Performance" in en and "RuntimeError: died" in en  # a chapter failure is a finding
    assert "Original document&#x27;s claims: 1 checked (❌ 1)" in en or "Original document's claims: 1 checked (❌ 1)" in en  # one line on page one, then the table
    findings = [o for o in notebook_outputs(nb, "en") if "bv-findings" in o]
    assert len(findings) == 1 and "RuntimeError: died" in findings[0] and "&lt;b&gt;" in findings[0]
    assert "90% compression" not in findings[0] and "90% compression" in en  # the claim: in its own table
    assert "&lt;b&gt;capacity" in en and "<b>capacity" not in en  # row names are escaped
    for o in notebook_outputs(nb, "en"):  # one language per output
        assert not CJK.search(o), o[:200]
    assert res.data["page_one"]["weights"] == "stand-in" and res.data["page_one"]["next_command"]
    assert res.data["scopes"]["model"]["verdict"] == "not_assessed"
    assert res.data["scopes"]["engine"]["verdict"] == "incomplete"  # warn, and chapter 07 failed
    assert res.metric("verdict") == "incomplete" and res.metric("verdict_model") == "not_assessed"
    assert {"findings", "document", "matrix", "registry", "key_metrics", "chapters"} <= set(res.data)
    text = "\n".join(str(o) for c in nb.cells for o in c.get("outputs", []))
    assert "Metric(" not in text and "Check(" not in text and "ScopeVerdict(" not in text
