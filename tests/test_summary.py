"""The summary is derived from results files: failed / skipped / missing / unreadable / new chapters."""
from __future__ import annotations

from pathlib import Path

import pytest

from bitcpm_validation.report import results as R
from bitcpm_validation.report import summary as S
from bitcpm_validation.report.contents import all_chapters


def put(run: Path, chapter: str, status: str, checks=(), metrics=(), **kw) -> None:
    r = R.ChapterResult(chapter=chapter, title_en=chapter, title_zh=chapter, status=status, **kw)
    r.checks = [R.Check(*c) for c in checks]
    r.metrics = [R.Metric(*m) for m in metrics]
    R.save(r, run / "results" / f"{chapter}.json")


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
    assert [r.status for r in failed[1:]] == ["pass", "warn"]  # checks recorded before the failure are kept
    assert rows["03_inference"][0].status == "not_run" and "no model" in rows["03_inference"][0].reason_en
    assert rows["03_inference"][0].mark == "—" and "无模型" in rows["03_inference"][0].reason_zh
    assert rows["04_determinism"][0].status == "fail" and "interrupted" in rows["04_determinism"][0].reason_en
    assert rows["05_chinese"][0].status == "fail" and rows["05_chinese"][0].chapter_status == "unreadable"
    assert rows["42_newthing"][0].status == "fail"  # a chapter nobody registered still shows up
    # every registered chapter appears even without a results file
    for c in all_chapters():
        if c.id != "00_summary":
            assert c.id in rows
    missing = [r for r in S.check_matrix(run) if r.chapter_status == "missing"]
    assert missing and all(r.status == "not_run" and r.mark == "—" for r in missing)


def test_key_metrics_only_key(run):
    km = S.key_metrics(run)
    assert [(m.chapter, m.id) for m in km] == [("01_environment", "device"), ("02_loading", "init_s")]
    assert km[1].value_text == "12.35 s"


def test_counts_and_verdict(run):
    c = S.verdict_counts(S.check_matrix(run))
    assert c["fail"] == 4 and c["warn"] == 1 and c["pass"] == 2
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


def test_format_value():
    assert S.format_value(None, "s") == "—"
    assert S.format_value(1234567, "tokens") == "1,234,567 tokens"
    assert S.format_value(0.123456, "") == "0.1235"
    assert S.format_value(True) == "yes"
