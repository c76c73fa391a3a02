"""The results contract: schema, atomic writes, volatile-field stripping, one-line load errors."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from bitcpm_validation.report import results as R


def sample() -> R.ChapterResult:
    r = R.ChapterResult(chapter="03_inference", title_en="Inference", title_zh="推理测试", status="ok",
                        started="2026-01-01T00:00:00+00:00", finished="2026-01-01T00:01:00+00:00", duration_s=60.0)
    r.checks.append(R.Check("paris", "pass", "Capital of France", "法国首都", "Paris", "巴黎", scope="model"))
    r.metrics.append(R.Metric("tok_s", 12.5, "tok/s", "Output speed", "输出速度", key=True, timing=True,
                              measured_on="full size · dummy · CPU"))
    r.metrics.append(R.Metric("n", 5, "", "Prompts", "提示数"))
    r.data = {"outputs": ["a"], "timings": {"x": 1.0}}
    return r


def test_roundtrip(tmp_path):
    p = tmp_path / "results" / "03_inference.json"
    R.save(sample(), p)
    back = R.load(p)
    assert back.to_dict() == sample().to_dict()
    assert back.metric("tok_s") == 12.5 and back.check("paris").mark == "✅"
    assert back.check("paris").scope == "model" and back.metrics[0].measured_on == "full size · dummy · CPU"
    assert back.counts() == {"pass": 1, "warn": 0, "fail": 0, "not_run": 0, "not_comparable": 0}


@pytest.mark.parametrize("field, value, named", [("status", "great", "checks/0/status"), ("scope", "vibes", "scope")])
def test_schema_rejects_a_bad_check_field(field, value, named):
    d = sample().to_dict()
    d["checks"][0][field] = value
    with pytest.raises(R.ResultsError) as ei:
        R.validate(d, "x.json")
    assert named in str(ei.value) and "\n" not in str(ei.value)


def test_schema_is_generated_from_the_dataclasses():
    schema = R.json_schema()
    text = json.dumps(schema)
    assert "measured_on" in text and "engine" in text and "document" in text


def test_schema_rejects_unknown_field_and_bad_id():
    d = sample().to_dict()
    d["extra"] = 1
    with pytest.raises(R.ResultsError):
        R.validate(d)
    d = sample().to_dict()
    d["chapter"] = "Inference"
    with pytest.raises(R.ResultsError):
        R.validate(d)


def test_nan_becomes_null(tmp_path):
    r = sample()
    r.metrics.append(R.Metric("bad", float("nan"), "", "x", "x"))
    p = tmp_path / "r.json"
    R.save(r, p)
    assert json.loads(p.read_text())["metrics"][-1]["value"] is None


def test_atomic_write_keeps_old_file_on_failure(tmp_path, monkeypatch):
    p = tmp_path / "r.json"
    R.write_atomic(p, "old")

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError):
        R.write_atomic(p, "new")
    assert p.read_text() == "old"
    assert [x.name for x in tmp_path.iterdir()] == ["r.json"]  # no temp file left behind


def test_invalid_results_never_written(tmp_path):
    r = sample()
    r.status = "bogus"  # type: ignore[assignment]
    p = tmp_path / "r.json"
    with pytest.raises(R.ResultsError):
        R.save(r, p)
    assert not p.exists()


def test_load_errors_are_one_line(tmp_path):
    with pytest.raises(R.ResultsError, match="not found"):
        R.load(tmp_path / "none.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{truncated")
    with pytest.raises(R.ResultsError, match="not valid JSON"):
        R.load(bad)


def test_stable_view_drops_volatile_fields():
    a = sample().to_dict()
    b = sample().to_dict()
    b["started"], b["duration_s"] = "2027-01-01T00:00:00+00:00", 99.0
    b["metrics"][0]["value"] = 999.0  # timing metric
    b["data"]["timings"] = {"x": 2.0}
    assert a != b
    assert R.stable_view(a) == R.stable_view(b)
    assert [m["id"] for m in R.stable_view(a)["metrics"]] == ["n"]
    b["metrics"][1]["value"] = 6  # a non-timing metric is not volatile
    assert R.stable_view(a) != R.stable_view(b)


def test_load_run(tmp_path):
    R.save(sample(), tmp_path / "results" / "03_inference.json")
    assert list(R.load_run(tmp_path)) == ["03_inference"]
