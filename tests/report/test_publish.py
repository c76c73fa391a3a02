"""publish: site/ index of runs with relative links only, SHA-256 manifest verifiable by `sha256sum -c`
and by `python -m bitcpm_validation verify`; a tampered, missing or added file is reported."""
from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlparse

import pytest

from bitcpm_validation.report import publish as P
from bitcpm_validation.report import results as R

ROOT = Path(__file__).resolve().parents[2]


def make_run(runs: Path, run_id: str, *, fail: bool = False, host: str = "npu-host-1", device: str = "Ascend 910B3",
             evil: str = "", summary: dict | None = None) -> Path:
    rd = runs / run_id
    for sub in ("results", "evidence", "notebooks", "artifacts"):
        (rd / sub).mkdir(parents=True, exist_ok=True)
    (rd / "run.json").write_text(json.dumps({"run_id": run_id, "profile": "ascend-910b3" + evil, "model": "openbmb/BitCPM4-0.5B",
                                             "is_stand_in": False, "started": "2026-11-27T10:00:00+00:00",
                                             "finished": "2026-11-27T10:30:00+00:00", "lang": "both"}))
    env = R.ChapterResult("01_environment", "Environment", "运行环境", status="ok")
    env.checks = [R.Check("platform", "pass", "Device", "设备", scope="engine")]
    env.metrics = [R.Metric("device", device + evil, "", "Device", "设备", key=True)]
    R.save(env, rd / "results" / "01_environment.json")
    inf = R.ChapterResult("03_inference", "Inference", "推理测试", status="failed" if fail else "ok",
                          error="RuntimeError: boom" if fail else None)
    inf.checks = [R.Check("paris", "pass", "Paris", "巴黎", scope="model"),
                  R.Check("math", "warn", "Math", "数学", scope="model")]
    R.save(inf, rd / "results" / "03_inference.json")
    prov = R.ChapterResult("11_provenance", "Provenance", "来源与可复现性", status="ok",
                           data={"provenance": {"host": {"hostname": host}}})
    R.save(prov, rd / "results" / "11_provenance.json")
    (rd / "evidence" / "03_inference.log").write_text("INFO engine started\n")
    (rd / "notebooks" / "03_inference.ipynb").write_text(json.dumps({"cells": [], "metadata": {}, "nbformat": 4,
                                                                      "nbformat_minor": 5}))
    (rd / "artifacts" / "bench.json").write_text("{}")
    (rd / ".hidden").write_text("scratch")
    if summary is not None:
        R.save(R.ChapterResult("00_summary", "Summary", "总结", status="ok", data=summary),
               rd / "results" / "00_summary.json")
    for f, body in (("report.zh.html", "<html><body>报告</body></html>"),
                    ("report.en.html", "<html><body>report</body></html>"), ("report.md", "# report\n"),
                    ("report.en.pdf", "%PDF-1.4 fake\n")):
        (rd / f).write_text(body)
    return rd


class Links(HTMLParser):
    def __init__(self):
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag, attrs):
        for k, v in attrs:
            if k in ("href", "src", "action", "poster", "data") and v:
                self.urls.append(v)


@pytest.fixture()
def site(tmp_path):
    runs = tmp_path / "runs"
    make_run(runs, "20261127-100000-ascend")
    make_run(runs, "20261128-090000-cpu", fail=True, host="laptop", device="CPU", evil="<script>alert(1)</script>")
    (runs / "latest").symlink_to("20261128-090000-cpu")
    (runs / ".ipython").mkdir()
    (runs / "notarun").mkdir()
    make_run(runs, "lab")  # JupyterLab scratch: not published
    site, entries, n = P.build_site(runs, tmp_path / "site")
    return site, entries, n


def test_index_lists_runs_with_counts(site):
    site, entries, n = site
    assert [e.run_id for e in entries] == ["20261127-100000-ascend", "20261128-090000-cpu"]
    a = entries[0]
    assert (a.host, a.device, a.model) == ("npu-host-1", "Ascend 910B3", "openbmb/BitCPM4-0.5B")
    assert a.counts["pass"] == 2 and a.counts["warn"] == 1
    b = entries[1]
    assert b.counts["fail"] >= 1  # the failed chapter counts as a failure
    html = (site / "index.html").read_text()
    for s in ("npu-host-1", "Ascend 910B3", "laptop", "20261127-100000-ascend", "MANIFEST.sha256",
              '<td class="n">2</td>', "Engine verdict", 'href="index.zh.html"'):
        assert s in html, s
    zh = (site / "index.zh.html").read_text()
    assert "引擎结论" in zh and "Engine verdict" not in zh and 'href="index.html"' in zh
    assert "<script>alert(1)</script>" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert not (site / "runs" / "latest").exists() and not (site / "runs" / "notarun").exists()
    assert not (site / "runs" / "lab").exists()
    assert not (site / "runs" / "20261127-100000-ascend" / ".hidden").exists()


def test_every_link_is_relative_and_resolves(site):
    site, _, _ = site
    pages = list(site.rglob("*.html"))
    assert len(pages) >= 3
    seen = 0
    for page in [site / "index.html", site / "index.zh.html"] + sorted(site.glob("runs/*/index*.html")):
        text = page.read_text()
        assert not re.search(r"(?:https?:)?//", re.sub(r"<pre>.*?</pre>", "", text, flags=re.S)), page
        lp = Links()
        lp.feed(text)
        for u in lp.urls:
            parsed = urlparse(u)
            assert not parsed.scheme and not parsed.netloc, (page, u)
            target = (page.parent / unquote(parsed.path)).resolve()
            assert target.exists(), (page, u)
            assert site.resolve() in target.parents or target == site.resolve()
            seen += 1
    assert seen > 15
    run_page = (site / "runs" / "20261127-100000-ascend" / "index.html").read_text()
    for rel in ("report.zh.html", "report.en.html", "report.en.pdf", "report.md", "results/03_inference.json",
                "evidence/03_inference.log", "notebooks/03_inference.ipynb", "../../index.html"):
        assert f'href="{rel}"' in run_page, rel


def test_manifest_sha256sum_and_verify(site):
    site, _, n = site
    lines = (site / P.MANIFEST).read_text().splitlines()
    assert len(lines) == n and all(re.fullmatch(r"[0-9a-f]{64}  \S.*", ln) for ln in lines)
    assert "index.html" in {ln[66:] for ln in lines}
    if shutil.which("sha256sum"):
        p = subprocess.run(["sha256sum", "-c", P.MANIFEST], cwd=site, capture_output=True, text=True)
        assert p.returncode == 0, p.stdout + p.stderr
    assert P.verify(site) == []
    cli = subprocess.run([sys.executable, "-m", "bitcpm_validation", "verify", str(site)], capture_output=True, text=True)
    assert cli.returncode == 0 and cli.stdout.startswith(f"ok: {n} file(s) match"), cli.stdout + cli.stderr


def test_verify_detects_tampering(site):
    site, _, _ = site
    report = site / "runs" / "20261127-100000-ascend" / "report.md"
    report.write_text("# edited\n")
    (site / "runs" / "20261127-100000-ascend" / "evidence" / "03_inference.log").unlink()
    (site / "extra.txt").write_text("x")
    problems = P.verify(site)
    assert "runs/20261127-100000-ascend/report.md: SHA-256 mismatch (changed after publishing)" in problems
    assert "runs/20261127-100000-ascend/evidence/03_inference.log: missing" in problems
    assert "extra.txt: not in the manifest (added after publishing)" in problems
    cli = subprocess.run([sys.executable, "-m", "bitcpm_validation", "verify", str(site)], capture_output=True, text=True)
    assert cli.returncode == 1 and "3 problem(s)" in cli.stderr
    if shutil.which("sha256sum"):
        assert subprocess.run(["sha256sum", "-c", "--quiet", P.MANIFEST], cwd=site, capture_output=True).returncode != 0


def test_verify_without_manifest(tmp_path):
    with pytest.raises(P.PublishError, match="manifest not found: build the site with `make publish`"):
        P.verify(tmp_path)


def test_rebuild_replaces_site_atomically(tmp_path):
    runs = tmp_path / "runs"
    make_run(runs, "20261127-100000-a")
    site, _, _ = P.build_site(runs, tmp_path / "site")
    (site / "stale.txt").write_text("old")
    make_run(runs, "20261127-110000-b")
    site, entries, _ = P.build_site(runs, tmp_path / "site")
    assert len(entries) == 2 and not (site / "stale.txt").exists() and P.verify(site) == []
    assert not list(tmp_path.glob(".site.*"))  # no temp or old copies left


def test_publish_cli(tmp_path):
    runs = tmp_path / "runs"
    make_run(runs, "20261127-100000-a")
    p = subprocess.run([sys.executable, "-m", "bitcpm_validation", "publish", "--runs", str(runs), "--site",
                        str(tmp_path / "s")], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    assert "1 run(s)" in p.stdout and (tmp_path / "s" / "index.html").is_file()


def summary_data(engine: str, model: str, ttft: str) -> dict:
    """results/00_summary.json data as report.summary documents it (the keys publish reads)."""
    return {"scopes": {"engine": {"verdict": engine}, "model": {"verdict": model}},
            "key_metrics": [{"chapter": "07_performance", "id": "ttft_ms", "name": {"zh": "首 token 延迟",
                                                                                  "en": "Time to first token"},
                             "value": 1.0, "unit": "ms", "text": ttft, "measured_on": "full size · dummy · CPU"}]}


def test_history_per_profile_shows_what_changed(tmp_path):
    runs = tmp_path / "runs"
    make_run(runs, "20261127-100000-a", summary=summary_data("pass", "not_assessed", "16,898.6 ms"))
    make_run(runs, "20261128-100000-b", summary=summary_data("fail", "not_assessed", "16,898.6 ms"))
    make_run(runs, "20261129-100000-c", summary=summary_data("fail", "not_assessed", "12,001.0 ms"))
    site, entries, _ = P.build_site(runs, tmp_path / "site")
    assert entries[0].scopes == {"engine": "pass", "model": "not_assessed"}
    assert entries[2].metrics["07_performance:ttft_ms"]["text"] == "12,001.0 ms"
    (prof,) = P.history(entries)
    assert [r["entry"].run_id for r in prof["rows"]] == ["20261129-100000-c", "20261128-100000-b", "20261127-100000-a"]
    assert prof["rows"][0]["changed"] == {"metric:07_performance:ttft_ms"}
    assert prof["rows"][1]["changed"] == {"scope:engine"}
    assert prof["rows"][2]["changed"] == set()  # the first run of a profile has nothing to differ from
    html = (site / "index.html").read_text()
    assert "Time to first token" in html and "12,001.0 ms" in html and html.count('class="n changed"') == 1
    assert html.count("changed\">fail</td>") == 1  # the engine verdict that turned to fail
    assert "首 token 延迟" in (site / "index.zh.html").read_text()


def test_history_without_summary_data_falls_back_to_check_counts(tmp_path):
    runs = tmp_path / "runs"
    make_run(runs, "20261127-100000-a")
    _, entries, _ = P.build_site(runs, tmp_path / "site")
    assert entries[0].scopes == {"engine": "warn", "model": "warn"} and entries[0].metrics


def test_site_shows_every_verdict_scope_including_not_comparable(tmp_path):
    runs = tmp_path / "runs"
    data = summary_data("pass", "warn", "16,898.6 ms")
    data["scopes"].update({"performance": {"verdict": "not_comparable"}, "repository": {"verdict": "fail"}})
    make_run(runs, "20261127-100000-a", summary=data)
    site, entries, _ = P.build_site(runs, tmp_path / "site")
    assert entries[0].scopes == {"engine": "pass", "model": "warn", "performance": "not_comparable",
                                 "repository": "fail"}
    html, zh = (site / "index.html").read_text(), (site / "index.zh.html").read_text()
    assert "Performance verdict" in html and "Repository verdict" in html and ">not comparable</td>" in html
    assert "性能结论" in zh and "模型文件结论" in zh and ">不可比</td>" in zh
