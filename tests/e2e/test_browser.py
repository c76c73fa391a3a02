"""Issue 7 point 5: the rendered report opened in headless Chromium with the network off loads with no
console error and no request leaving the file (only file:, data:, blob:); a screenshot of the first page
is kept as a test artefact in test-artifacts/.

Drives the system Chromium (/usr/bin/chromium, or BITCPM_CHROMIUM) through playwright's Python package;
playwright's own browser downloads are never used.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from fake_run import make_run

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts"
LOCAL_SCHEMES = ("file:", "data:", "blob:", "about:")


def chromium_path() -> str | None:
    for c in (os.environ.get("BITCPM_CHROMIUM"), "/usr/bin/chromium", shutil.which("chromium"),
              shutil.which("chromium-browser")):
        if c and Path(c).exists():
            return c
    return None


@pytest.fixture(scope="module")
def browser():
    exe = chromium_path()
    if not exe:
        pytest.skip("Chromium is not installed (/usr/bin/chromium): `make setup` installs it as root with apt-get")
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright not installed: pip install -e '.[test]'")
    with sync_api.sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=exe, headless=True,
                               args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                                     "--disable-background-networking", "--disable-component-update"])
        yield b
        b.close()


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> dict[str, Path]:
    """A fake run (with untrusted text, a matplotlib figure, a failed chapter) rendered to
    report.zh.html and report.en.html."""
    from bitcpm_validation.report import render

    run_dir = make_run(tmp_path_factory.mktemp("browser") / "20261127-100000-browser")
    return render.render(run_dir, pdf=False).html


def open_offline(browser, html: Path, shot: Path | None = None) -> dict:
    ctx = browser.new_context(offline=True, viewport={"width": 1240, "height": 1754}, java_script_enabled=True)
    seen = {"requests": [], "blocked": [], "console": [], "pageerrors": [], "dialogs": []}

    def route(r):
        url = r.request.url
        seen["requests"].append(url)
        if url.startswith(LOCAL_SCHEMES):
            r.continue_()
        else:
            seen["blocked"].append(url)
            r.abort()

    ctx.route("**/*", route)
    page = ctx.new_page()
    page.on("console", lambda m: seen["console"].append((m.type, m.text)))
    page.on("pageerror", lambda e: seen["pageerrors"].append(str(e)))
    page.on("request", lambda r: seen["requests"].append(r.url))

    def on_dialog(d):
        seen["dialogs"].append(d.message)
        d.dismiss()

    page.on("dialog", on_dialog)
    page.goto(html.resolve().as_uri(), wait_until="load", timeout=120_000)
    page.wait_for_timeout(1500)  # late scripts, lazy images
    seen["title"] = page.title()
    seen["text"] = page.inner_text("body")
    seen["images"] = page.evaluate("() => Array.from(document.images).map(i => [i.src.slice(0, 30), i.naturalWidth])")
    if shot is not None:
        shot.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(shot), full_page=False)
    ctx.close()
    return seen


def check_offline_load(seen: dict) -> None:
    errors = [t for kind, t in seen["console"] if kind == "error"]
    assert not errors, f"console errors: {errors}"
    assert not seen["pageerrors"], seen["pageerrors"]
    outside = [u for u in seen["requests"] if not u.startswith(LOCAL_SCHEMES)]
    assert not outside and not seen["blocked"], f"requests leaving the file: {outside or seen['blocked']}"
    assert not seen["dialogs"], f"script ran from report content: {seen['dialogs']}"


@pytest.mark.parametrize("lang, title, other", [("zh", "推理测试", "Inference"), ("en", "Inference", "推理测试")])
def test_report_offline_in_chromium(browser, report, lang, title, other):
    shot = ARTIFACTS / f"report-first-page.{lang}.png"
    shot.unlink(missing_ok=True)
    seen = open_offline(browser, report[lang], shot)
    check_offline_load(seen)
    text = seen["text"]
    assert title in text and other not in text
    assert "<script>alert(1)</script>" in text  # untrusted output visible as text
    assert seen["images"] and all(w > 0 for _, w in seen["images"]), seen["images"]  # figures embedded, loaded
    assert all(src.startswith(("data:", "file:", "blob:")) for src, _ in seen["images"])
    assert shot.is_file() and shot.stat().st_size > 5_000
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.e2e
def test_default_report_offline(browser, e2e_run):
    """The real default report of this session (every chapter, engine outputs, plots), same conditions."""
    for lang, summary in (("zh", "总结"), ("en", "Summary")):
        seen = open_offline(browser, e2e_run["run_dir"] / f"report.{lang}.html",
                            ARTIFACTS / f"default-report-first-page.{lang}.png")
        check_offline_load(seen)
        assert summary in seen["text"]
        assert seen["images"] and all(w > 0 for _, w in seen["images"])  # the chapters' figures load offline


def test_published_site_offline(browser, report, tmp_path):
    """site/ (make publish) opened from disk offline: the index, a run's page and its report all load
    with no console error and no request outside the files."""
    from bitcpm_validation.report import publish

    site, entries, _ = publish.build_site(report["en"].parent.parent, tmp_path / "site")
    assert publish.verify(site) == []
    seen = open_offline(browser, site / "index.html", ARTIFACTS / "site-index.png")
    check_offline_load(seen)
    assert entries[0].run_id in seen["text"]
    run_page = site / "runs" / entries[0].run_id / "index.html"
    check_offline_load(open_offline(browser, run_page))
    seen = open_offline(browser, site / "runs" / entries[0].run_id / "report.zh.html")
    check_offline_load(seen)
    assert "推理测试" in seen["text"]
