"""Server lifecycle: flags from params, port taken, early exit, connecting to a running deployment (a fake OpenAI
server), death mid-chapter and stop (a stand-in process tree), interrupts, no orphan.

With an engine (marked `engine`): a real `vllm serve` that exits early, and Ctrl-C / SIGTERM during its start. The
OpenAI probes on a real server are the default report's chapter 08_serving (tests/chapters/test_serving.py); the
phases of its shared server's start are asserted on that run here (marked `e2e`)."""
from __future__ import annotations

import os
import json
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import psutil
import pytest
import yaml

from bitcpm_validation.engine import server, starts
from bitcpm_validation.chapters import serving
from bitcpm_validation.engine.offline import EngineError
from bitcpm_validation.params import load_params
import fake_openai

ROOT = Path(__file__).resolve().parents[2]


def _params(tmp: Path, model: Path, **serving_kw):
    y = {"profile": "test", "platform": "cpu", "prompts": str(ROOT / "params/prompts.yaml"),
         "model": {"path": str(model), "dummy_config": str(ROOT / "models/bitcpm4-0.5b")},
         "engine": {"dtype": "float32", "max_model_len": 256, "max_num_seqs": 4},
         "inference": {"max_tokens": 16},
         "serving": {"startup_timeout_s": 600, **serving_kw}}
    p = tmp / f"p{len(list(tmp.glob('p*.yaml')))}.yaml"
    p.write_text(yaml.safe_dump(y))
    return load_params(p)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    from bitcpm_validation.model.writer import write_tiny_random_model

    return write_tiny_random_model(tmp_path_factory.mktemp("tiny") / "model")


def _ours(marker: str) -> list[psutil.Process]:
    """Processes whose command line mentions `marker` (a unique temp path of this test)."""
    out = []
    for p in psutil.process_iter(["cmdline"]):
        try:
            if p.pid != os.getpid() and any(marker in (a or "") for a in (p.info["cmdline"] or [])):
                out.append(p)
        except psutil.Error:
            pass
    return out


def _status(q: psutil.Process):
    try:
        return q.status()
    except psutil.Error:
        return None


def test_flags_follow_engine_kwargs(tmp_path, tiny):
    p = _params(tmp_path, tiny)
    argv = server.serve_command(p, "real", port=8123)
    line = server.display_command(argv)
    assert "--max-model-len 256" in line and "--dtype float32" in line and "--enforce-eager" in line
    assert "--trust-remote-code" in line and "--host 127.0.0.1" in line and "--port 8123" in line
    assert f"--served-model-name {p.model.name}" in line
    assert "--load-format" not in line  # auto is the default
    mod = server.serve_command(p, "real", port=8123, console=False)
    assert mod[1:3] == ["-m", "vllm.entrypoints.openai.api_server"] and mod[mod.index("--model") + 1] == str(tiny)
    dummy = server.display_command(server.serve_command(p, "dummy", port=1))
    assert "--load-format dummy" in dummy and "bitcpm4-0.5b" in dummy


def test_port_taken_is_one_line_error_and_starts_nothing(tmp_path, tiny):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        p = _params(tmp_path, tiny, port=port)
        with pytest.raises(server.ServerError) as e:
            server.start(p, tmp_path / "ev.log", "real")
    msg = str(e.value)
    assert f"port {port}" in msg and "taken" in msg and "\n" not in msg
    assert not _ours(str(tiny))


def test_bad_model_path_is_one_line_error(tmp_path, tiny):
    p = _params(tmp_path, tmp_path / "no-such-model")
    with pytest.raises(EngineError) as e:
        server.start(p, tmp_path / "ev.log", "real")
    assert "does not exist" in str(e.value) and "\n" not in str(e.value)


def test_unreachable_endpoint(tmp_path):
    with pytest.raises(server.ServerError) as e:
        server.connect(f"http://127.0.0.1:{server.free_port()}")
    assert "unreachable" in str(e.value) and "serving.endpoint" in str(e.value) and "\n" not in str(e.value)


@pytest.mark.engine
def test_server_exits_early_gives_log_tail(tmp_path, tiny):
    """vLLM refuses the model (path passes our checks, the engine fails): one line with the log tail."""
    p = _params(tmp_path, tiny)
    bad = tmp_path / "broken"
    bad.mkdir()
    (bad / "config.json").write_text("{}")
    t0 = time.monotonic()
    with pytest.raises(server.ServerError) as e:
        server.start(p, tmp_path / "ev.log", "real", model_override=str(bad))
    msg = str(e.value)
    assert "exited with code" in msg and "log tail" in msg and "\n" not in msg
    assert time.monotonic() - t0 < 600
    assert not _ours(str(bad))


def test_connect_to_a_running_deployment(tmp_path):
    """`serving.endpoint`: a deployment this run did not start (a fake OpenAI server here): its model learnt from
    /v1/models, alive from /health, and stop() never stops what it did not start."""
    with fake_openai.serving(tmp_path / "fake.log", models=["served/name", "other"]) as url:
        ext = server.connect(url.removesuffix("/v1"))
        assert ext.external and ext.model == "served/name" and ext.base_url == url and ext.alive()
        assert server.connect(url).base_url == url  # .../v1 given: the same endpoint
        ext.stop()
        assert ext.alive() and server.connect(url).model == "served/name"  # still serving
    assert not ext.alive()
    with pytest.raises(server.ServerError) as e:
        ext.check_alive()
    assert "stopped answering /health" in str(e.value) and "\n" not in str(e.value)


def test_connect_to_something_else_is_one_line(tmp_path):
    with fake_openai.serving(tmp_path / "fake.log", models=[]) as url:
        with pytest.raises(server.ServerError) as e:
            server.connect(url)
        assert "serves no model" in str(e.value)
    with fake_openai.serving(tmp_path / "fake.log", models=None) as url:  # /v1/models: 404
        with pytest.raises(server.ServerError) as e:
            server.connect(url)
        assert "HTTP 404" in str(e.value) and "\n" not in str(e.value)


def test_server_dying_mid_chapter_then_no_orphan():
    """The server killed mid-chapter (SIGKILL, no handler runs): a probe raises a one-line ServerError, and stop()
    leaves none of its processes (the stand-in's child in its group, as vLLM's engine core)."""
    srv, kids = _stand_in(drain=0)
    srv.base_url = f"http://127.0.0.1:{server.free_port()}/v1"  # nothing answers there once it is dead
    family = [psutil.Process(srv.pid)] + psutil.Process(srv.pid).children(recursive=True)
    assert len(family) >= 2 and srv.alive()
    os.kill(srv.pid, signal.SIGKILL)
    srv.proc.wait(timeout=30)
    with pytest.raises(server.ServerError) as e:
        serving.probe_models(serving.client(srv, timeout=5), srv)
    assert "exited with code -9" in str(e.value) and "\n" not in str(e.value)
    srv.stop()
    gone, alive = psutil.wait_procs([q for q in family if q.pid != kids[1].pid], timeout=20)
    assert not [p for p in alive if _status(p) not in (None, psutil.STATUS_ZOMBIE)]
    kids[1].kill()  # its own session, out of the killed parent's reach: what test_a_server_still_starting covers


@pytest.mark.e2e
def test_default_reports_shared_server_start(e2e_run):
    """The run's shared `vllm serve` (the default report's path): its start in its log, on the loopback address,
    and the phases of its start read from that log (engine.startup.server_phases) summing to its start time."""
    rd = e2e_run["run_dir"]
    info = json.loads((rd / "run.json").read_text(encoding="utf-8"))["shared_engine"]
    assert info["ok"] and info["base_url"].startswith("http://127.0.0.1:") and "--host 127.0.0.1" in info["command"]
    log = (rd / info["log"]).read_text(encoding="utf-8")
    assert f"=== server start: {info['command']}" in log
    (start,) = [s for s in starts.load(rd) if s.kind == "shared-server"]
    ph = start.phases
    assert list(ph)[:3] == ["api_server_process", "engine_core_process", "worker_process"], ph
    assert "to_healthy" in ph and abs(sum(ph.values()) - info["startup_s"]) < 0.5, (ph, info["startup_s"])
    assert start.seconds == info["startup_s"]


def _is_engine(q: psutil.Process) -> bool:
    try:
        return "EngineCore" in q.name() or "EngineCore" in " ".join(q.cmdline())
    except psutil.Error:
        return False


SCRIPT = textwrap.dedent("""
    import faulthandler, signal, sys, time
    # Ctrl-C as in a terminal: a test session started in the background (`cmd &` from a script) hands its children
    # SIGINT ignored, and Python then installs no KeyboardInterrupt handler
    signal.signal(signal.SIGINT, signal.default_int_handler)
    stacks = open(sys.argv[2] + ".stacks", "w")
    faulthandler.register(signal.SIGUSR1, file=stacks, all_threads=True)  # where it hangs, if it does
    from bitcpm_validation.params import load_params
    from bitcpm_validation.engine import server, starts
    p = load_params(sys.argv[1])
    with server.serving(p, sys.argv[2], "real") as srv:
        print("UP", flush=True)
        time.sleep(600)
""")


@pytest.mark.engine
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_interrupt_leaves_no_process(tmp_path, tiny, sig):
    """Ctrl-C (SIGINT) or SIGTERM of the process that started the server, during start-up: nothing left."""
    link = tmp_path / f"model-{sig.name}"
    link.symlink_to(tiny, target_is_directory=True)
    p = _params(tmp_path, link)
    script = tmp_path / "s.py"
    script.write_text(SCRIPT)
    proc = subprocess.Popen([sys.executable, str(script), p.source, str(tmp_path / "ev.log")], cwd=ROOT)
    me = psutil.Process(proc.pid)
    family: dict[int, psutil.Process] = {}
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None:
        for q in me.children(recursive=True):
            family.setdefault(q.pid, q)
        if any(_is_engine(q) for q in family.values()):
            break  # the server has started its engine process
        time.sleep(0.3)
    assert family, "the server process never started"
    proc.send_signal(sig)
    try:  # stopping takes seconds (SIGTERM, server.STARTING_STOP_GRACE_S, SIGKILL); a starved 2-core host longer
        proc.wait(timeout=300)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGUSR1)
        time.sleep(2)
        proc.kill()
        stacks = Path(str(tmp_path / "ev.log") + ".stacks")
        pytest.fail(f"still running 300 s after {sig.name}; its threads: "
                    f"{stacks.read_text() if stacks.exists() else '(no stack dump)'}")
    gone, alive = psutil.wait_procs(list(family.values()), timeout=30)
    assert not [q for q in alive if _status(q) not in (None, psutil.STATUS_ZOMBIE)], [q.pid for q in alive]
    assert not [q for q in _ours(str(link)) if _status(q) not in (None, psutil.STATUS_ZOMBIE)]


def test_compare_greedy():
    rows = serving.compare_greedy([[1, 2, 3], [4, 5], [6]], [[1, 2, 9], [4, 5], [6, 7]])
    assert [r["equal"] for r in rows] == [False, True, False]
    assert [r["first_diff"] for r in rows] == [2, None, 1]


def test_log_tail_is_one_line_without_colour(tmp_path):
    log = tmp_path / "x.log"
    log.write_text("\x1b[32mINFO\x1b[0m starting\nTraceback (most recent call last):\nValueError: bad model\nbye\n")
    t = server.tail(log)
    assert "\n" not in t and "\x1b" not in t and "ValueError: bad model" in t


def test_log_lines_are_stamped_when_read_from_the_start_on(tmp_path, monkeypatch):
    """The launcher stamps each complete line of the server's log with its read time after the launch (the
    clock of engine.startup.server_phases); a line still being written waits for its end."""
    import types

    log = tmp_path / "ev.log"
    log.write_text("=== an earlier start's line\n")
    now = [100.0]
    monkeypatch.setattr(server, "time", types.SimpleNamespace(monotonic=lambda: now[0]))
    lines = server.LogLines(log, log.stat().st_size, t0=100.0)
    with open(log, "a") as f:
        f.write("(APIServer pid=1) INFO 12-03 15:22:41 [a.py:1] up\n(EngineCore pid=2) INF")
    now[0] = 110.25
    lines.read()
    with open(log, "a") as f:
        f.write("O 12-03 15:22:51 [core.py:133] Initializing\n")
    now[0] = 120.5
    lines.read()
    lines.read()  # nothing new
    assert lines.lines == [(10.25, "(APIServer pid=1) INFO 12-03 15:22:41 [a.py:1] up"),
                           (20.5, "(EngineCore pid=2) INFO 12-03 15:22:51 [core.py:133] Initializing")]


def test_server_dies_with_a_killed_parent(tmp_path):
    """SIGKILL of the process that launched the server (no cleanup code can run): PR_SET_PDEATHSIG ends it."""
    code = ("import os, sys, time\n"
            "from pathlib import Path\n"
            "from bitcpm_validation.engine import server\n"
            "p = server._launch(['sleep', '120'], Path(sys.argv[1]), dict(os.environ))\n"
            "print(p.pid, flush=True)\n"
            "time.sleep(120)\n")
    parent = subprocess.Popen([sys.executable, "-c", code, str(tmp_path / "ev.log")], stdout=subprocess.PIPE, text=True)
    child = psutil.Process(int(parent.stdout.readline()))
    assert child.is_running()
    parent.kill()
    parent.wait()
    gone, alive = psutil.wait_procs([child], timeout=10)
    assert child in gone


def test_kv_tokens_from_the_servers_prometheus_metrics():
    """Engine facts from the server's /metrics (vllm:cache_config_info), not from its log text (issue 13.4)."""
    from bitcpm_validation.engine.server import kv_tokens_from_metrics

    text = ('# HELP vllm:cache_config_info Information of the LLMEngine CacheConfig\n'
            '# TYPE vllm:cache_config_info gauge\n'
            'vllm:cache_config_info{block_size="128",cache_dtype="auto",engine="0",num_gpu_blocks="4096"} 1.0\n'
            '# HELP vllm:num_requests_running Number of requests.\n# TYPE vllm:num_requests_running gauge\n'
            'vllm:num_requests_running{engine="0",model_name="m"} 0.0\n')
    assert kv_tokens_from_metrics(text) == 524_288
    assert kv_tokens_from_metrics(text.replace('engine="0"', 'engine="1"') + text.split("\n", 2)[2]) is not None
    assert kv_tokens_from_metrics("vllm:num_requests_running 0.0\n") is None


# a stand-in server: ignores SIGTERM, or (a healthy server draining its requests) exits `drain` seconds after it; two
# children ignore SIGTERM too, one in its own session (as the engine processes that must never outlive the server)
STAND_IN = textwrap.dedent("""
    import signal, subprocess, sys, time
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # inherited by the children through exec
    kids = [subprocess.Popen(["sleep", "600"]), subprocess.Popen(["sleep", "600"], start_new_session=True)]
    drain = float(sys.argv[1])
    def finish(sig, frame):
        time.sleep(drain)
        sys.exit(0)
    if drain:
        signal.signal(signal.SIGTERM, finish)
    print(*[k.pid for k in kids], flush=True)
    time.sleep(600)
""")


def _stand_in(drain: float) -> tuple[server.Server, list[psutil.Process]]:
    proc = subprocess.Popen([sys.executable, "-c", STAND_IN, str(drain)], stdout=subprocess.PIPE, text=True,
                            start_new_session=True)
    kids = [psutil.Process(int(pid)) for pid in proc.stdout.readline().split()]
    assert len(kids) == 2, "the stand-in server did not start its children"
    return server.Server(base_url="http://127.0.0.1:9/v1", model="m", proc=proc), kids


def test_a_server_still_starting_is_killed_after_a_short_grace():
    """Ctrl-C / SIGTERM / a start-up timeout before /health: nothing to drain, and a starting vLLM server ignores
    SIGTERM until its engine is built, so SIGKILL follows after STARTING_STOP_GRACE_S, not STOP_GRACE_S."""
    srv, kids = _stand_in(drain=0)
    t0 = time.monotonic()
    srv.stop()
    took = time.monotonic() - t0
    assert srv.proc.returncode == -signal.SIGKILL
    assert took < server.STOP_GRACE_S * 0.75, f"stop took {took:.1f} s: the long grace, not the start-up one"
    gone, alive = psutil.wait_procs(kids, timeout=10)
    assert not [q for q in alive if _status(q) not in (None, psutil.STATUS_ZOMBIE)], "a child outlived the server"


def test_a_healthy_server_gets_the_graceful_stop():
    """Once healthy, SIGTERM gets STOP_GRACE_S to drain: the stand-in finishes (exit code 0) after longer than the
    start-up grace; its children that ignore SIGTERM are killed afterwards."""
    srv, kids = _stand_in(drain=server.STARTING_STOP_GRACE_S + 2)
    srv.healthy = True
    srv.stop()
    assert srv.proc.returncode == 0, "killed before it could drain"
    gone, alive = psutil.wait_procs(kids, timeout=10)
    assert not [q for q in alive if _status(q) not in (None, psutil.STATUS_ZOMBIE)], "a child outlived the server"
