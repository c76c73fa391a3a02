"""Findings and the original document's claims (report.findings): each ❌ / ⚠️ in one line with its impact and what
to do; the claims are findings, never in a verdict, shown once in full with the chapters pointing there."""
from __future__ import annotations

from bitcpm_validation.report import findings as F
from bitcpm_validation.report import results as R
from bitcpm_validation.report import verdicts as V
from fake_run import chk, spec, scoped_run, SPECS, GOOD


def test_document_fail_is_a_finding_not_a_verdict(tmp_path):
    rows = scoped_run(tmp_path, GOOD | {"10_quantization": [chk("ratio", "fail", "document", "0.29 of BF16, not ~0.10")]})
    v = V.scope_verdicts(rows, SPECS)
    assert (v["engine"].verdict, v["model"].verdict) == ("pass", "pass") and V.verdict(rows, SPECS) == "pass"
    assert V.verdict(V.verdict_counts(rows)) == "pass"  # the legacy counts path leaves the claim out too
    claims = F.document_claims(rows)
    assert [(c["check_id"], c["mark"]) for c in claims] == [("ratio", "❌")] and "0.29" in claims[0]["says"]["en"]
    f = F.findings(rows, SPECS)
    assert [x.scope for x in f] == ["document"] and "(no verdict)" in f[0].impact.en
    # page one gives the claims one line (the table follows)
    assert F.document_line(claims).en == ("Original document's claims: 1 checked (❌ 1), [table on the next page](#claims); "
                                         "never in a verdict.")
    assert F.document_line(claims).zh.startswith("原文档的说法：核对 1 条（❌ 1）")
    assert F.document_line([]) is None


def test_claims_are_shown_once_in_full_and_the_chapters_point_there(tmp_path):
    """Issue 20.2: the summary's claims table holds each claim's finding in full; a chapter that checked claims
    gives one line (each claim's mark and a link to the table), not the rows again."""
    long = "full 0.5B shape, analytic: " + "packed 71.8 % smaller than stored; " * 6
    rows = scoped_run(tmp_path, GOOD | {"10_quantization": [chk("ratio", "fail", "document", long)]})
    _, body = F.document_table(F.document_claims(rows))
    assert body[0][2].en == long and body[0][1] == "❌"  # not cut short: nowhere else shows it
    claims = [R.Check("ratio", "fail", "Original claim: ~90% compression", "原文档：约 90% 压缩", long, "详", "document"),
              R.Check("bits", "pass", "Original claim: ~1.58 bit", "原文档：约 1.58 bit", "ok", "好", "document")]
    line = F.document_pointer(claims)
    assert line.en == ("❌ Original claim: ~90% compression; ✅ Original claim: ~1.58 bit. Each claim with what the files "
                       "and measurements say: the summary's [claims table](#claims).")
    assert line.zh.startswith("❌ 原文档：约 90% 压缩；✅ 原文档：约 1.58 bit。") and "(#claims)" in line.zh
    assert long not in line.en  # the finding is in the table only
    assert F.document_pointer([]).en == "This chapter checked no claim of the original document."


def test_findings_one_line_each_with_impact_and_remedy(tmp_path):
    specs = SPECS[:-1] + [spec("fidelity", "06_precision", "engine", impact_en="logprobs drift", impact_zh="对数概率偏离",
                               remedy_en="run with dtype float32", remedy_zh="用 float32 运行")]
    rows = scoped_run(tmp_path, GOOD | {"06_precision": [chk("fidelity", "fail", "engine", "KL 0.3 > 0.05.\nMore text")],
                                        "03_inference": [chk("probe:paris", "warn", "model", "answered Lyon")]},
                      {"07_performance": "failed"})
    f = F.findings(rows, specs)
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


def test_a_family_with_one_status_is_one_finding(tmp_path):
    why = "answer wrong: expected Paris"
    rows = scoped_run(tmp_path, GOOD | {"03_inference": [
        R.Check("probe:paris", "fail", "Probe paris", "探针 paris", why, why, "model"),
        R.Check("probe:four", "fail", "Probe four", "探针 four", why, why, "model"),
        R.Check("probe:poem", "warn", "Probe poem", "探针 poem", "short", "短", "model")]})
    f = F.findings(rows, SPECS)
    fails = [x for x in f if x.chapter == "03_inference" and x.status == "fail"]
    assert len(fails) == 1 and "(2 items)" in fails[0].what.en and why in fails[0].what.en
    assert [x.check_id for x in f if x.chapter == "03_inference" and x.status == "warn"] == ["probe:poem"]
