"""The runner on tiny throwaway notebooks (not the engine chapters): progress, continue past a failure,
skip, exit code, resume / --only, bad input, and Ctrl-C leaving no child process behind."""
from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from bitcpm_validation.report import results as R
from bitcpm_validation.report import runner
from fake_run import notebook

ROOT = Path(__file__).resolve().parents[2]

HEAD = ('from bitcpm_validation.report.recorder import Chapter\nch = Chapter.open("{cid}", params_path, run_dir)\n'
        + 'from bitcpm_validation.report.checks import define\ndef spec(check_id, name_en, name_zh):  # a throwaway check: the runner tests judge nothing\n    return define(check_id, "{cid}", "engine", name_en, name_zh, criterion_en="the notebook reached this line",\n                  criterion_zh="notebook 运行到此行")\n')
OK = HEAD + 'ch.record(spec("c1", "Works", "可用").row("pass", "fine", "正常"))\nch.metric("m", 1.5, "s", "M", "M", key=True)\nch.finish()'
BOOM = HEAD + 'ch.record(spec("before", "Recorded before", "之前记录").row("pass"))\nraise ValueError("boom <b>bad</b>")'
SKIP = HEAD + 'ch.skip("not for this profile", "不适用")'
SUMMARY = (HEAD + "from bitcpm_validation.report import matrix as M\n"
           'ch.data["n"] = len(M.check_matrix(ch.run_dir))\nch.finish()')



@pytest.fixture
def proj(tmp_path):
    nbs = tmp_path / "notebooks"
    nbs.mkdir()
    notebook(nbs, "01_environment", OK)
    notebook(nbs, "02_loading", BOOM)
    notebook(nbs, "03_inference", SKIP)
    notebook(nbs, "00_summary", SUMMARY)
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text("{}")
    d = yaml.safe_load((ROOT / "params/default.yaml").read_text(encoding="utf-8"))
    d["model"]["path"] = str(model)
    d["prompts"] = str(ROOT / "params/prompts.yaml")
    params = tmp_path / "p.yaml"
    params.write_text(yaml.safe_dump(d), encoding="utf-8")
    return {"nbs": nbs, "params": params, "runs": tmp_path / "runs", "tmp": tmp_path}


def run(proj, **kw):
    out = io.StringIO()
    oc = runner.run(proj["params"], notebooks_dir=proj["nbs"], runs_dir=proj["runs"], out=out, **kw)
    return oc, out.getvalue()


def test_run_continues_past_failure(proj):
    oc, out = run(proj)
    st = {c.chapter: c.status for c in oc.chapters}
    assert st == {"01_environment": "ok", "02_loading": "failed", "03_inference": "skipped", "00_summary": "ok"}
    assert [c.chapter for c in oc.chapters][-1] == "00_summary"  # summary last
    assert oc.exit_code == 1
    # progress: one line per chapter with index, name, status, seconds, total
    lines = [ln for ln in out.splitlines() if ln.startswith("[")]
    assert len(lines) == 4 and lines[0].startswith("[01/04] 01_environment")
    assert " ok " in lines[0] and " s  (total " in lines[0] and "failed" in lines[1] and "skipped" in lines[2]
    d = oc.run_dir
    for sub in ("notebooks", "results", "evidence", "artifacts"):
        assert (d / sub).is_dir()
    assert (d / "notebooks" / "02_loading.ipynb").exists()  # failed notebooks are kept, with the error
    failed = R.load(d / "results" / "02_loading.json")
    assert failed.status == "failed" and failed.error == "ValueError: boom <b>bad</b>"
    assert [c.id for c in failed.checks] == ["before"]  # checks recorded before the error are kept
    assert R.load(d / "results" / "03_inference.json").status == "skipped"
    assert R.load(d / "results" / "00_summary.json").data["n"] > 0
    info = json.loads((d / "run.json").read_text())
    assert info["chapters"]["02_loading"]["status"] == "failed" and info["profile"] == "default"
    assert (proj["runs"] / "latest").resolve() == d


def test_resume_reruns_only_failed(proj):
    oc, _ = run(proj)
    d = oc.run_dir
    ok_before = (d / "results" / "01_environment.json").read_text()
    notebook(proj["nbs"], "02_loading", OK)  # "fix" the chapter
    oc2, out = run(proj, run_dir=d, resume=True)
    assert [c.chapter for c in oc2.chapters] == ["02_loading", "00_summary"]
    assert oc2.exit_code == 0
    assert (d / "results" / "01_environment.json").read_text() == ok_before  # nothing lost
    assert R.load(d / "results" / "02_loading.json").status == "ok"
    info = json.loads((d / "run.json").read_text())
    assert info["chapters"]["01_environment"]["status"] == "ok" and info["chapters"]["02_loading"]["status"] == "ok"


def test_only_into_existing_run(proj):
    mine = subprocess.Popen(["sleep", "120"])  # a process of the caller (e.g. a shared test server)
    try:
        oc, _ = run(proj)
        oc2, _ = run(proj, run_dir=oc.run_dir, only=["inference"])
        assert mine.poll() is None, "the runner killed a process it did not start"
    finally:
        mine.kill()
        mine.wait()
    assert [c.chapter for c in oc2.chapters] == ["03_inference", "00_summary"]
    assert oc2.exit_code == 1 and oc2.run_failed == ["02_loading"]  # the run as a whole still has a failure
    assert R.load(oc.run_dir / "results" / "02_loading.json").status == "failed"  # untouched


def test_unknown_chapter(proj):
    with pytest.raises(runner.RunError, match="unknown chapter 'nope'"):
        run(proj, only=["nope"])


def test_missing_model_is_one_line(proj):
    d = yaml.safe_load(proj["params"].read_text())
    d["model"]["path"] = "/path/to/BitCPM4-0.5B"
    proj["params"].write_text(yaml.safe_dump(d))
    with pytest.raises(runner.RunError) as ei:
        run(proj)
    msg = str(ei.value)
    assert "model.path" in msg and "/path/to/BitCPM4-0.5B" in msg and "\n" not in msg
    assert not proj["runs"].exists()  # nothing started


def test_cli_bad_params_exit_2(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("profile: x\nmodel: {path: m}\nbogus: 1\n")
    p = subprocess.run([sys.executable, "-m", "bitcpm_validation", "run", "--params", str(bad)], cwd=ROOT,
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 2
    assert p.stderr.strip().count("\n") == 0 and "bogus" in p.stderr


SLEEPER = HEAD + (
    "import subprocess, pathlib, time\n"
    "p = subprocess.Popen(['sleep', '300'], start_new_session=True)  # like an engine server\n"
    "pathlib.Path(run_dir, 'child.pid').write_text(str(p.pid))\n"
    "time.sleep(300)\nch.finish()"
)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie is dead for our purposes
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


def test_ctrl_c_leaves_no_child_process(proj):
    for p in proj["nbs"].glob("*.ipynb"):
        p.unlink()
    notebook(proj["nbs"], "01_environment", SLEEPER)
    notebook(proj["nbs"], "00_summary", SUMMARY)
    run_dir = proj["tmp"] / "run"
    code = (f"import sys; from pathlib import Path; from bitcpm_validation.report import runner; "
            f"oc = runner.run({str(proj['params'])!r}, run_dir={str(run_dir)!r}, notebooks_dir=Path({str(proj['nbs'])!r})); "
            f"sys.exit(oc.exit_code)")
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    pidfile = run_dir / "child.pid"
    deadline = time.time() + 90
    while not pidfile.exists() and time.time() < deadline:
        time.sleep(0.3)
    assert pidfile.exists(), "the notebook never started its child process"
    time.sleep(0.5)
    child = int(pidfile.read_text())
    assert _alive(child)
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 130, out
    deadline = time.time() + 10
    while _alive(child) and time.time() < deadline:
        time.sleep(0.2)
    assert not _alive(child), "the chapter's child process survived Ctrl-C"
    assert "interrupted" in out and "--resume" in out
    res = R.load(run_dir / "results" / "01_environment.json")
    assert res.status == "failed" and "interrupted" in res.error
    assert json.loads((run_dir / "run.json").read_text())["interrupted"] is True


def test_same_params_same_results_apart_from_timings(tmp_path):
    """The real environment + summary chapters, twice: identical results files once timings are dropped."""
    views = []
    for i in range(2):
        out = io.StringIO()
        oc = runner.run(ROOT / "params/default.yaml", run_dir=tmp_path / f"r{i}", only=["environment"], out=out,
                        check_model=False)
        assert oc.exit_code == 0, out.getvalue()
        views.append({p.name: R.stable_view(json.loads(p.read_text())) for p in (oc.run_dir / "results").glob("*.json")})
    assert set(views[0]) == {"00_summary.json", "01_environment.json"}
    assert views[0] == views[1]


def test_cli_ascend_profile_without_its_model_is_one_line_error():
    """On a host without BitCPM4's files the Ascend profile stops at once with one line naming model.path
    (the profile's model path: a placeholder directory or a hub id with no local snapshot)."""
    p = subprocess.run([sys.executable, "-m", "bitcpm_validation", "run", "--params", "params/ascend-910b3.yaml",
                        "--allow-platform-mismatch"],  # this CPU host: past the platform check to the model's
                       cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert p.returncode == 2
    err = p.stderr.strip()
    assert err.count("\n") == 0 and "model.path" in err and "BitCPM4-0.5B" in err, err


# -- the profile's platform, checked before anything starts (issue 22.8) ------------------------------------------
def test_platform_check_rules(proj):
    p = runner.load_params(proj["params"])  # platform: auto
    assert runner.check_platform(p, detected=None) == {"profile": "auto", "detected": None, "mismatch": False,
                                                       "allowed": False}  # auto: nothing detected, any host
    npu = p.model_copy(update={"platform": "npu"})
    assert runner.check_platform(npu, detected="npu")["mismatch"] is False
    with pytest.raises(runner.RunError) as ei:
        runner.check_platform(npu, detected="cpu")
    assert str(ei.value) == ("the profile asks for npu but this host runs on cpu: run on an Ascend host, use "
                             "params/default.yaml, or pass --allow-platform-mismatch (ALLOW_PLATFORM_MISMATCH=1 make report)")
    assert runner.check_platform(npu, allow_mismatch=True, detected="cpu") == {
        "profile": "npu", "detected": "cpu", "mismatch": True, "allowed": True}


def test_cli_wrong_platform_stops_before_any_engine(tmp_path):
    """`run --params params/ascend-910b3.yaml --model models/stand-in` on this CPU host: one line, exit 2, and
    nothing made: no run directory (so no engine, no shared server, no chapter). The platform is vLLM's own
    (current_platform), so the check imports vLLM's platform layer and nothing more."""
    run_dir = tmp_path / "run"
    p = subprocess.run([sys.executable, "-m", "bitcpm_validation", "run", "--params", "params/ascend-910b3.yaml",
                        "--model", "models/stand-in", "--run-dir", str(run_dir)],
                       cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert p.returncode == 2, p.stdout + p.stderr
    assert p.stderr.strip() == ("error: the profile asks for npu but this host runs on cpu: run on an Ascend host, use "
                                "params/default.yaml, or pass --allow-platform-mismatch "
                                "(ALLOW_PLATFORM_MISMATCH=1 make report)"), p.stderr
    assert p.stdout == "" and not run_dir.exists()


def test_platform_override_is_recorded_and_page_one_says_so(proj):
    """With the override the run goes on (throwaway chapters: no engine), run.json records the mismatch and the
    weights as the model directory declares them (the stand-in, whatever the Ascend profile says)."""
    from bitcpm_validation.report import page_one as P1

    out = io.StringIO()
    oc = runner.run(ROOT / "params/ascend-910b3.yaml", model="models/stand-in", allow_platform_mismatch=True,
                    notebooks_dir=proj["nbs"], runs_dir=proj["runs"], out=out, only=["environment"])
    assert [c.chapter for c in oc.chapters] == ["01_environment", "00_summary"]
    assert "warning: the profile asks for npu but this host runs on cpu" in out.getvalue()
    info = json.loads((oc.run_dir / "run.json").read_text())
    assert info["platform_check"] == {"profile": "npu", "detected": "cpu", "mismatch": True, "allowed": True}
    assert info["weights"] == "stand-in" and info["is_stand_in"] is True
    note = P1.platform_override(oc.run_dir)
    assert note["en"] == "the profile asks for npu; this run ran on cpu (forced with --allow-platform-mismatch)"
    page = P1.page_one(oc.run_dir)
    assert page["platform_override"] == note and page["weights"] == "stand-in"
    assert "forced with --allow-platform-mismatch" in P1.validated_line(page).en
    # a later invocation on a matching profile keeps the record: chapters of this run ran past the mismatch
    oc2 = runner.run(proj["params"], run_dir=oc.run_dir, only=["environment"], model="models/stand-in",
                     notebooks_dir=proj["nbs"], runs_dir=proj["runs"], out=io.StringIO())  # platform: auto
    assert json.loads((oc2.run_dir / "run.json").read_text())["platform_check"]["allowed"] is True


def test_matching_or_auto_profile_records_no_override(proj):
    oc, _ = run(proj, only=["environment"])
    info = json.loads((oc.run_dir / "run.json").read_text())
    assert info["platform_check"]["mismatch"] is False and info["weights"] == "real"
    from bitcpm_validation.report import page_one as P1

    assert P1.platform_override(oc.run_dir) is None


def test_chapter_kernels_print_nothing_onto_the_progress_lines(tmp_path, monkeypatch):
    """The kernels' stderr is the runner's terminal: through start, an idle interrupt (jupyter_client sends
    SIGINT at every shutdown) and shutdown, a kernel with the runner's IPython profile prints nothing there."""
    import tempfile

    from jupyter_client import KernelManager

    monkeypatch.setattr(runner, "RUNS_DIR", tmp_path)
    env = dict(os.environ, IPYTHONDIR=str(runner._ipython_dir()))
    with tempfile.TemporaryFile() as err:
        km = KernelManager(kernel_name="python3")
        km.start_kernel(env=env, stderr=err)
        kc = km.client()
        kc.start_channels()
        try:
            kc.wait_for_ready(timeout=120)
            km.interrupt_kernel()
            time.sleep(0.5)
        finally:
            kc.stop_channels()
            km.shutdown_kernel(now=False)
        err.seek(0)
        assert err.read().decode().strip() == ""


def test_a_native_crash_in_the_kernel_is_named_with_its_signal_and_frame(tmp_path):
    """An in-process engine's C++ kernel dying with SIGILL kills the chapter's kernel: the runner's one line names
    the signal, the Python frame it died in and what to do (faulthandler's trace in the evidence log), and what the
    chapter recorded before is kept."""
    nb = notebook(tmp_path, "04_determinism", HEAD + 'ch.record(spec("before", "Before", "之前").row("pass"))\nch.save()\n'
                  'import os, signal\ndef engine_step():\n    os.kill(os.getpid(), signal.SIGILL)\nengine_step()')
    run_dir = tmp_path / "run"
    out = runner.run_chapter(nb, run_dir, ROOT / "params" / "default.yaml", timeout_s=120)
    assert out.status == "failed"
    assert "DeadKernelError: the chapter's kernel died: Illegal instruction" in out.error, out.error
    assert "engine_step()" in out.error and "engine.dtype: float32" in out.error, out.error
    res = R.load(run_dir / "results" / "04_determinism.json")
    assert res.status == "failed" and [c.id for c in res.checks] == ["before"]


def test_a_kernel_killed_without_a_trace_says_so(tmp_path):
    log = tmp_path / "07_performance.log"
    log.write_text("engine started\n", encoding="utf-8")
    assert runner.kernel_death(log).startswith("the chapter's kernel died without a Python error (killed, or out of memory)")
    assert "the system log" in runner.kernel_death(tmp_path / "missing.log")


def test_the_second_server_waits_for_the_first_ones_api_server(tmp_path):
    """report.runner._until_api_server_imported: back as soon as the log has the API server's first line, or the
    start is done, else after its timeout."""
    import threading

    class Start:
        done = threading.Event()

    log = tmp_path / "shared-engine-synthetic.log"
    t0 = time.monotonic()
    runner._until_api_server_imported(log, Start(), timeout_s=1.0)  # no log yet: the timeout
    assert 0.9 <= time.monotonic() - t0
    log.write_text("=== server start: vllm serve ...\n")
    t0 = time.monotonic()
    runner._until_api_server_imported(log, Start(), timeout_s=1.0)  # the launcher's own line is not the server's
    assert 0.9 <= time.monotonic() - t0
    log.write_text("=== server start: vllm serve ...\n(APIServer pid=1) INFO [api_utils.py:347] version 0.32.0\n")
    t0 = time.monotonic()
    runner._until_api_server_imported(log, Start(), timeout_s=60.0)
    assert time.monotonic() - t0 < 30.0
    done = Start()
    done.done = threading.Event()
    done.done.set()
    log.write_text("=== server start: vllm serve ...\n")
    t0 = time.monotonic()
    runner._until_api_server_imported(log, done, timeout_s=60.0)  # it finished (or failed) first
    assert time.monotonic() - t0 < 30.0
