"""The check matrix and key metrics read from a run's results files (report.matrix): failed / skipped / missing /
unreadable / new chapters, chapters the profile did not select, the values' plain format, one-line reasons."""
from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from bitcpm_validation.report import matrix as M
from bitcpm_validation.report import verdicts as V
from bitcpm_validation.report.contents import all_chapters
from fake_run import put, chk, every_case_run


@pytest.fixture
def run(tmp_path) -> Path:
    return every_case_run(tmp_path)


def by_chapter(rows):
    out = {}
    for r in rows:
        out.setdefault(r.chapter, []).append(r)
    return out


def test_matrix_covers_every_case(run):
    rows = by_chapter(M.check_matrix(run))
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
    missing = [r for r in M.check_matrix(run) if r.chapter_status == "missing"]
    assert missing and all(r.status == "not_run" and r.mark == "—" for r in missing)


def test_key_metrics_only_key(run):
    km = M.key_metrics(run)
    assert [(m.chapter, m.id) for m in km] == [("01_environment", "device"), ("02_loading", "init_s")]
    assert km[1].value_text == "12.35 s"


def test_statuses(run):
    st = M.chapter_statuses(run)
    assert st["02_loading"] == "failed" and st["03_inference"] == "skipped" and st["05_chinese"] == "unreadable"
    assert st["06_precision"] == "missing" and "00_summary" not in st


def test_empty_run(tmp_path):
    rows = M.check_matrix(tmp_path)
    assert rows and all(r.status == "not_run" for r in rows)
    assert M.key_metrics(tmp_path) == []
    v = V.scope_verdicts(rows)
    assert v["engine"].verdict == v["model"].verdict == "not_assessed"  # nothing ran, nothing failed


def test_format_value_reads_plainly():
    assert M.format_value(None, "s") == "—"
    assert M.format_value(1234567, "tokens") == "1,234,567 tokens"
    assert M.format_value(0.123456, "") == "0.1235"
    assert M.format_value(True) == "yes"
    assert M.format_value(16898.63, "ms") == "16,898.6 ms"  # was "1.69e+04 ms"
    assert M.format_value(0.0073, "GB") == "0.0073 GB"
    assert M.format_value(1.2e-7, "") == "0.00000012"
    assert M.format_value(123456.7, "tok/s") == "123,457 tok/s"
    assert M.format_value(0.0, "s") == "0 s"
    for v in (1e-9, 3.3e-5, 0.5, 7.0, 99999.0, 1e12):
        assert "e" not in M.format_value(v), v


def test_short_keeps_one_line():
    assert M.short("First sentence. Second one.") == "First sentence."
    assert M.short("第一句。第二句。") == "第一句。"
    s = M.short("word " * 50, 40)
    assert len(s) <= 40 and s.endswith("…") and "\n" not in s
    assert M.short("a\nb  c") == "a b c"


def test_chapters_the_profile_did_not_select_say_so(tmp_path):
    p = SimpleNamespace(chapters=["environment", "03"], profile="p",
                        model=SimpleNamespace(name="m", is_stand_in=False, source=None))
    assert M.selected_chapters(p) == ["01_environment", "03_inference"]
    assert M.selected_chapters(SimpleNamespace(chapters=["all"])) is None
    put(tmp_path, "03_inference", "ok", checks=[chk("probe:a", "pass", "model")])
    rows = M.check_matrix(tmp_path, M.selected_chapters(p))
    serving = next(r for r in rows if r.chapter == "08_serving")
    assert serving.chapter_status == "not_selected" and serving.reason_en == "not selected in this profile"
    assert next(r for r in rows if r.chapter == "01_environment").chapter_status == "missing"  # selected, no results
    v = V.scope_verdicts(rows)
    assert v["model"].verdict == "incomplete"
    assert any(r.en == "chapter 08 Serving not selected by the profile" for r in v["model"].reasons)
