"""The default report end to end from a clean state (`make report`), asserting on what it produced.

Runs once per session (conftest `e2e_run`); BITCPM_E2E_RUN_DIR=runs/<id> reuses an existing run.
Asserts over whatever chapter notebooks notebooks/ holds (chapters.all_chapters()).
"""
from __future__ import annotations

import json
import re
import unicodedata
from pathlib import Path

import pytest

from bitcpm_validation.report import render as RD
from bitcpm_validation.report import results as R
from bitcpm_validation.report.contents import all_chapters

pytestmark = pytest.mark.e2e


def present():
    return [c for c in all_chapters() if c.notebook.exists()]


def test_every_chapter_ran(e2e_run):
    run_dir = e2e_run["run_dir"]
    assert (run_dir / "report.html").exists(), e2e_run["output"][-3000:]
    info = json.loads((run_dir / "run.json").read_text(encoding="utf-8"))
    failed = {k: v["error"] for k, v in info["chapters"].items() if v["status"] == "failed"}
    assert not failed, f"chapters failed: {failed}"
    assert e2e_run["rc"] == 0, e2e_run["output"][-3000:]
    for c in present():
        assert (run_dir / "notebooks" / f"{c.id}.ipynb").exists(), c.id


def test_results_validate_against_schema(e2e_run):
    run_dir = e2e_run["run_dir"]
    files = sorted((run_dir / "results").glob("*.json"))
    assert {p.stem for p in files} >= {c.id for c in present()}
    for p in files:
        R.load(p)  # raises ResultsError on any schema violation


def test_html_has_every_heading_in_both_languages(e2e_run):
    html = (e2e_run["run_dir"] / "report.html").read_text(encoding="utf-8")
    for c in present():
        assert c.title_zh in html and c.title_en in html, c.id
        assert f'id="ch-{c.id}"' in html


def test_html_is_self_contained(e2e_run):
    html = (e2e_run["run_dir"] / "report.html").read_text(encoding="utf-8")
    assert RD.external_refs(html) == []
    assert not re.search(r"""\b(?:src|href)\s*=\s*["']?(?:https?:)?//""", html, re.I)
    assert "//cdn" not in html


def test_pdf_has_pages_and_chinese(e2e_run):
    if not RD.find_chromium():
        pytest.skip("headless Chromium not installed: HTML-only report")
    from pypdf import PdfReader

    reader = PdfReader(str(e2e_run["run_dir"] / "report.pdf"))
    assert len(reader.pages) >= len(present())  # a page per chapter at least
    text = unicodedata.normalize("NFKC", "".join(p.extract_text() or "" for p in reader.pages))
    assert "验证报告" in text
    for c in present():
        assert c.title_zh in text, c.id


def test_model_card(e2e_run):
    md = (e2e_run["run_dir"] / "report.md").read_text(encoding="utf-8")
    assert md.startswith("---\n")
    for c in present():
        if c.id != "00_summary":
            assert c.title_zh in md and c.title_en in md


def test_environment_is_the_device_the_profile_asked_for(e2e_run):
    """CPU, CUDA or Ascend host: the detected device is what params/default.yaml asked for (auto: any)."""
    from bitcpm_validation.params import load_params

    wanted = load_params("params/default.yaml").platform
    env = R.load(e2e_run["run_dir"] / "results" / "01_environment.json")
    assert env.status == "ok"
    kind = env.metric("device_kind")
    assert kind in ("cpu", "cuda", "npu") and (wanted == "auto" or kind == wanted), (kind, wanted)
    if kind == "cpu":
        assert env.metric("device") == "CPU"
    assert env.check("platform").status == "pass"
