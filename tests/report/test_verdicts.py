"""The verdict per scope (report.verdicts): engine, model, performance and repository each answer one question; a
slow host or a bad file never makes the engine fail; incomplete, not comparable and not assessed say why."""
from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from bitcpm_validation.report import findings as F
from bitcpm_validation.report import matrix as M
from bitcpm_validation.report import page_one as P1
from bitcpm_validation.report import results as R
from bitcpm_validation.report import verdicts as V
from bitcpm_validation.report.display import T
from fake_run import chk, spec, scoped_run, SPECS, GOOD, every_case_run


@pytest.fixture
def run(tmp_path) -> Path:
    return every_case_run(tmp_path)


def test_counts_leave_out_unscoped_rows_and_document_claims(run):
    rows = M.check_matrix(run)
    c = V.verdict_counts(rows)
    # only the chapter-level rows count here: 02 failed, 04 interrupted, 05 unreadable (fail); the
    # checks in this fixture are legacy rows without a scope and count in no verdict
    assert c == {"pass": 0, "warn": 0, "fail": 3, "not_run": sum(r.kind == "chapter" and r.status == "not_run" for r in rows),
                 "not_comparable": 0}
    assert V.verdict(c) == "fail"
    assert V.verdict({"pass": 3, "warn": 0, "fail": 0, "not_run": 1}) == "pass"
    assert V.verdict({"pass": 3, "warn": 1, "fail": 0, "not_run": 0}) == "warn"


def test_all_pass(tmp_path):
    v = V.scope_verdicts(scoped_run(tmp_path, GOOD), SPECS)
    assert (v["engine"].verdict, v["model"].verdict) == ("pass", "pass")
    assert v["engine"].counts["pass"] == 2 and v["engine"].chapters == ["02_loading", "06_precision"]
    assert V.overall(v) == "pass"


def test_engine_fail_and_model_warn(tmp_path):
    rows = scoped_run(tmp_path, GOOD | {"02_loading": [chk("kv", "fail", "engine", "KV 0 tokens")],
                                        "03_inference": [chk("probe:paris", "warn", "model", "close")]})
    v = V.scope_verdicts(rows, SPECS)
    assert (v["engine"].verdict, v["model"].verdict) == ("fail", "warn")
    assert V.overall(v) == "fail"
    assert v["engine"].flagged == [("02 kv（中）", "02 kv")]  # what decided the verdict, shown as its "why"
    _, body = P1.scopes_table(v)
    assert body[0][3].en == "02 kv" and body[1][3].en == "03 probe:paris"
    assert body[0][2] == "✅\u00a01\u2002❌\u00a01"  # counts without zeros, kept whole
    f = F.findings(rows, SPECS)
    headers, table = P1.findings_table(f)
    assert [h.en if isinstance(h, T) else h for h in headers] == ["", "Finding", "Impact and what to do"]
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
    v = V.scope_verdicts(rows, PERF_SPECS)
    assert list(v) == ["engine", "model", "performance", "repository"]
    assert (v["engine"].verdict, v["performance"].verdict, v["repository"].verdict) == ("pass", "fail", "fail")
    f = {x.check_id: x for x in F.findings(rows, PERF_SPECS)}
    assert "the engine verdict is not affected" in f["decode_of_limit"].impact.en
    assert "the engine verdict is not affected" in f["round_trip"].impact.en
    line = V.first_line(v)
    assert "engine ✅ pass" in line.en and "performance ❌ fail" in line.en and "repository ❌ fail" in line.en


def test_a_busy_host_makes_performance_not_comparable_with_what_to_do(tmp_path):
    busy = ("not comparable: host busy: other processes used 0.90 of 2 cores over 60 s (more than 0.25) (during the "
            "benchmark sweep); re-run on a quiet host: make report RESUME=runs/<id> ONLY=performance")
    rows = scoped_run(tmp_path, GOOD | {"07_performance": [chk("decode_of_limit", "not_comparable", "performance", busy),
                                                           chk("prefill", "not_comparable", "performance", busy),
                                                           chk("requests_completed", "pass", "engine")]})
    v = V.scope_verdicts(rows, PERF_SPECS)
    assert v["performance"].verdict == "not_comparable" and v["performance"].mark == "⊘"
    assert v["engine"].verdict == "pass" and V.overall(v) == "not_comparable"
    assert "host busy: other processes used 0.90 of 2 cores" in v["performance"].flagged[0].en
    f = [x for x in F.findings(rows, PERF_SPECS) if x.status == "not_comparable"]
    assert len(f) == 1 and f[0].mark == "⊘" and "ONLY=performance" in f[0].remedy.en and "不是 ❌" in f[0].impact.zh
    assert f[0].what.en.startswith("07 Performance decode_of_limit, prefill: not comparable: host busy")  # one line
    # page one: the performance row says what to re-run and what its figures are relative to
    perf = R.ChapterResult("07_performance", "Performance", "性能", status="ok",
                           checks=[chk("decode_of_limit", "not_comparable", "performance", busy)],
                           data={"judged_against": {"en": "decode 6.7 tok/s, what this device reaches",
                                                    "zh": "解码 6.7 tok/s，本设备可达到的速度"}})
    R.save(perf, tmp_path / "results" / "07_performance.json")
    page = P1.page_one(tmp_path, SimpleNamespace(model=SimpleNamespace(name="m", is_stand_in=True, source=None)),
                      rows, PERF_SPECS)
    assert page["rerun_performance"] == f"make report RESUME=runs/{tmp_path.name} ONLY=performance"
    assert page["performance_basis"]["en"].startswith("decode 6.7 tok/s")
    _, body = P1.scopes_table(v, page)
    row = next(r for r in body if r[0].en == "performance")
    assert row[1].en.startswith("⊘") and "relative to: decode 6.7 tok/s" in row[3].en
    assert f"make report RESUME=runs/{tmp_path.name} ONLY=performance" in row[3].en and "相对于" in row[3].zh


def test_incomplete_when_a_chapter_of_the_scope_failed_or_was_skipped(tmp_path):
    rows = scoped_run(tmp_path, GOOD, {"06_precision": "failed"})
    v = V.scope_verdicts(rows, SPECS)
    assert v["engine"].verdict == "incomplete" and v["model"].verdict == "pass"  # 06 has engine checks only
    assert any("06 Precision failed: boom" in r.en for r in v["engine"].reasons)
    rows = scoped_run(tmp_path, GOOD, {"06_precision": "skipped"})
    v = V.scope_verdicts(rows, SPECS)
    assert v["engine"].verdict == "incomplete" and "skipped" in v["engine"].reasons[0].en


def test_incomplete_when_a_needed_check_did_not_run(tmp_path):
    rows = scoped_run(tmp_path, GOOD | {"06_precision": [S_not_run("fidelity", "engine", "no reference")]})
    v = V.scope_verdicts(rows, SPECS)
    assert v["engine"].verdict == "incomplete" and "no reference" in v["engine"].reasons[0].en


def S_not_run(cid, scope, why):
    return chk(cid, "not_run", scope, why)


def test_not_assessed_says_why(tmp_path):
    why = "stand-in trained on the probes"
    rows = scoped_run(tmp_path, GOOD | {"03_inference": [S_not_run("probe:paris", "model", why),
                                                         S_not_run("probe:four", "model", why)]})
    v = V.scope_verdicts(rows, SPECS)
    assert v["model"].verdict == "not_assessed" and not v["model"].assessed
    # one check family, one shared reason: one grouped line (issue 20.2), never one line per probe
    assert [r.en for r in v["model"].reasons] == [f"probe (all 2 not judged): {why}"]
    assert v["model"].reasons[0].zh.startswith("probe（2 项均未评判）：")
    assert v["engine"].verdict == "pass" and V.overall(v) == "pass"  # not_assessed never decides the run
    line = V.first_line(v)
    assert line.en.startswith("Assessed: engine ✅ pass.") and "Not assessed: model (" in line.en and why in line.en
    assert line.zh.startswith("已评估：引擎 ✅ 通过。未评估：模型（")


def test_a_failed_model_chapter_is_incomplete_not_unassessed(tmp_path):
    rows = scoped_run(tmp_path, {k: v for k, v in GOOD.items() if k != "03_inference"}, {"03_inference": "failed"})
    assert V.scope_verdicts(rows, SPECS)["model"].verdict == "incomplete"


def test_a_missing_chapter_with_unknown_scopes_touches_every_scope(tmp_path):
    rows = scoped_run(tmp_path, GOOD, {"08_serving": "missing"})
    v = V.scope_verdicts(rows, SPECS)  # 08 has no registered checks here: its scopes are unknown
    assert v["engine"].verdict == v["model"].verdict == "incomplete"
    assert any("08 Serving did not run" in r.en for r in v["model"].reasons)


def test_rows_without_scope_never_count_silently(tmp_path):
    legacy = R.Check("kv", "fail", "KV", "KV", "old row")  # scope None: written before the registry
    rows = scoped_run(tmp_path, GOOD | {"02_loading": [legacy]})
    v = V.scope_verdicts(rows, SPECS)
    assert v["engine"].verdict == "incomplete" and v["engine"].counts["fail"] == 0
    assert any("without a scope" in r.en for r in v["engine"].reasons)
    assert v["model"].verdict == "pass"  # 02's registered checks are engine checks
    only_legacy = scoped_run(tmp_path, {"03_inference": [R.Check("probe:a", "pass", "P", "P")]})
    assert V.scope_verdicts(only_legacy, SPECS)["model"].verdict == "incomplete"  # not "not assessed", not "pass"
    f = [x for x in F.findings(rows, SPECS) if x.check_id == "kv"]
    assert f and f[0].scope is None and "counts in no verdict" in f[0].impact.en
