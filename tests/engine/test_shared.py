"""The run's shared engine (engine.shared) and the start count (engine.starts).

Without an engine: the request body, the response parsing, when a chapter may share (and why not), a client
against a small fake OpenAI server (order, evidence), the start records, and the runner (shared server started
before the first engine chapter, kept alive across chapters, stopped at the end and on Ctrl-C, a failed start
reported in one line with the run going on). With `-m engine`: a real shared `vllm serve` on the stand-in gives
the offline engine's greedy ids and top-k logprob ids.
"""
from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import psutil
import pytest
import yaml

from bitcpm_validation.engine import base
from bitcpm_validation.engine import offline, processes, server, shared, starts
from bitcpm_validation.engine.offline import EngineError
from bitcpm_validation.params import load_params
from bitcpm_validation.report import runner
import fake_openai
from fake_openai import completion_response
from fake_run import notebook

ROOT = Path(__file__).resolve().parents[2]
STAND_IN = ROOT / "models" / "stand-in"


def _params(tmp: Path, **engine_kw):
    d = yaml.safe_load((ROOT / "params/default.yaml").read_text(encoding="utf-8"))
    d["model"]["path"] = str(STAND_IN)
    d["prompts"] = str(ROOT / "params/prompts.yaml")
    d["engine"].update(engine_kw)
    p = tmp / f"p{len(list(tmp.glob('p*.yaml')))}.yaml"
    p.write_text(yaml.safe_dump(d), encoding="utf-8")
    return load_params(p)


def _run_dir(tmp: Path) -> Path:
    d = tmp / "run"
    for sub in ("evidence", "results", "artifacts", "notebooks"):
        (d / sub).mkdir(parents=True, exist_ok=True)
    return d


# -- request / response -------------------------------------------------------------------------------------
def test_request_body_asks_what_the_offline_engine_asks():
    b = shared.request_body("m", [1, 2, 3], max_tokens=8, logprobs=5, prompt_logprobs=3, seed=7, ignore_eos=True)
    assert b["prompt"] == [1, 2, 3] and b["max_tokens"] == 8 and b["temperature"] == 0.0
    assert b["logprobs"] == 5 and b["return_tokens_as_token_ids"] is True and b["prompt_logprobs"] == 3
    assert b["seed"] == 7 and b["ignore_eos"] is True and b["return_token_ids"] is True
    plain = shared.request_body("m", "text", max_tokens=4)
    assert plain["prompt"] == "text" and "logprobs" not in plain and "prompt_logprobs" not in plain and "seed" not in plain


_response = completion_response


def test_parse_completion_token_ids_and_logprobs():
    g = shared.parse_completion(_response(
        [5, 6], top=[{"token_id:5": -0.1, "token_id:9": -2.5}, {"token_id:6": -0.2, "token_id:1": -9999.0}],
        prompt_lp=[None, {"2": {"logprob": -1.25, "rank": 1, "decoded_token": "b"}, "7": {"logprob": -3.0}}]))
    assert g.token_ids == [5, 6] and g.prompt_token_ids == [1, 2] and g.finish_reason == "length"
    assert g.logprobs == [{5: -0.1, 9: -2.5}, {6: -0.2, 1: float("-inf")}]  # the server's -inf stand-in
    assert g.prompt_logprobs == [None, {2: -1.25, 7: -3.0}]
    assert shared.parse_completion(_response([5])).logprobs is None


def test_parse_completion_without_token_ids_is_one_line_error():
    with pytest.raises(EngineError) as e:
        shared.parse_completion({"choices": [{"text": "x"}]})
    assert "token ids" in str(e.value) and "\n" not in str(e.value)


# -- who may share --------------------------------------------------------------------------------------------
def _info(run_dir: Path, params, base_url: str, **kw) -> shared.SharedInfo:
    info = shared.SharedInfo(base_url=base_url, pid=os.getpid(), model=params.model.name, which="real",
                             kwargs=json.loads(json.dumps(base.engine_kwargs(params, base.model_facts(params, "real", run_dir)))),
                             command="vllm serve x", log=str(shared.log_path(run_dir)), startup_s=12.5,
                             platform="cpu", kv_cache_tokens=4096, max_concurrency=2.0, **kw)
    shared.log_path(run_dir).write_text("server log start\n", encoding="utf-8")
    shared.write_info(run_dir, info)
    return info


@pytest.fixture
def fake_server(tmp_path):
    run_dir = _run_dir(tmp_path)
    with fake_openai.serving(shared.log_path(run_dir)) as url:
        yield run_dir, url


def test_no_shared_file_means_own_engine(tmp_path):
    p = _params(tmp_path)
    client, why_not = shared.client_for(p, _run_dir(tmp_path) / "evidence" / "03_inference.log", "real", {})
    assert client is None and why_not == ""


def test_shared_client_serves_same_settings(tmp_path, fake_server):
    run_dir, url = fake_server
    p = _params(tmp_path)
    _info(run_dir, p, url)
    ev = run_dir / "evidence" / "03_inference.log"
    eng = offline.start(p, ev)  # no fresh, same settings: the shared engine, no start counted
    assert isinstance(eng, shared.SharedClient) and eng.init_s == 12.5 and eng.kv_cache_tokens == 4096
    gens = eng.generate([[1], [1, 2, 3, 4], [7, 8]], max_tokens=3, logprobs=2)
    assert [g.token_ids for g in gens] == [[101], [101, 102, 103], [107, 108]]  # request order kept
    assert gens[1].logprobs == [{101: -0.5}, {102: -0.5}, {103: -0.5}]
    assert eng.generate_ids([[4, 5]], max_tokens=1) == [[104]]
    s = eng.settings()
    assert s["model"] == str(STAND_IN) and "shared vllm serve" in s["engine"] and s["mode"] in ("eager", "graph")
    assert any(r[0] == "engine" for r in eng.settings_rows())
    eng.close()
    log = ev.read_text(encoding="utf-8")
    assert "=== shared engine: vllm serve x" in log and log.count("POST /v1/completions") == 4
    assert "server log start" not in log  # only the lines of this chapter's requests
    with pytest.raises(EngineError):
        eng.generate([[1]], max_tokens=1)
    assert starts.load(run_dir) == []


def test_whole_vocabulary_prompt_logprobs(tmp_path, fake_server):
    import numpy as np

    run_dir, url = fake_server
    p = _params(tmp_path)
    _info(run_dir, p, url)
    eng = offline.start(p, run_dir / "evidence" / "06_precision.log")
    vocab = json.loads((STAND_IN / "config.json").read_text())["vocab_size"]
    (rows,) = eng.prompt_logprobs_full([[3, 5, 9]])
    assert rows.shape == (2, vocab) and rows.dtype == np.float32
    assert rows[0, 5] == -1.0 and rows[1, 9] == -1.0 and rows[1, 0] == -2.0 and np.isneginf(rows[0, 9])


def test_http_error_is_one_line(tmp_path, fake_server):
    run_dir, url = fake_server
    p = _params(tmp_path)
    _info(run_dir, p, url)
    eng = offline.start(p, run_dir / "evidence" / "03_inference.log")
    with pytest.raises(EngineError) as e:
        eng.generate([[1]], max_tokens=-1)
    assert "HTTP 400" in str(e.value) and "max_tokens must be at least 0" in str(e.value) and "\n" not in str(e.value)


def _no_engine_start(monkeypatch):
    """Replace the real vLLM start: record what start() would have launched."""
    launched = []

    def fake(params, evidence_path, which="real", **overrides):
        launched.append((which, overrides))
        return "own-engine"

    monkeypatch.setattr(offline, "_launch_offline", fake)
    return launched


def test_who_gets_an_engine_of_its_own(tmp_path, fake_server, monkeypatch):
    run_dir, url = fake_server
    p = _params(tmp_path)
    _info(run_dir, p, url)
    launched = _no_engine_start(monkeypatch)
    ev = run_dir / "evidence" / "06_precision.log"
    other = "bfloat16" if base.engine_dtype(p) == "float32" else "float32"  # not what auto resolved to here
    assert offline.start(p, ev, dtype=other) == "own-engine"                # an override changes the engine
    assert offline.start(p, ev, fresh=True, why="restart") == "own-engine"  # deliberate
    assert offline.start(p, ev, "dummy") == "own-engine"                   # other weights
    assert isinstance(offline.start(p, ev, seed=p.engine.seed), shared.SharedClient)  # same value: shares
    got = starts.load(run_dir)
    assert [s.why for s in got][1] == "restart" and len(got) == 3 and all(s.kind == "offline" for s in got)
    assert "dtype" in got[0].why and got[0].why.startswith("not shareable") and "dummy" in got[2].why
    assert all(s.chapter == "06_precision" and s.ok for s in got)
    assert launched[0] == ("real", {"dtype": other})


def test_shared_server_leaves_room_on_an_accelerator(tmp_path):
    p = _params(tmp_path, gpu_memory_utilization=0.5)
    assert shared.shared_memory_overrides(p, "cpu") == {}
    assert shared.shared_memory_overrides(p, "cuda") == {"gpu_memory_utilization": 0.4}  # 0.4 + 0.5 fresh <= 0.9
    assert shared.shared_memory_overrides(_params(tmp_path, gpu_memory_utilization=0.9), "npu") == {
        "gpu_memory_utilization": 0.05}
    assert shared.shared_memory_overrides(_params(tmp_path, gpu_memory_utilization=0.3), "cuda") == {}
    # a memory budget is not a reason to start another engine; a dtype is
    assert shared.differences({"gpu_memory_utilization": 0.4, "dtype": "bfloat16"},
                              {"gpu_memory_utilization": 0.5, "dtype": "bfloat16"}) == []
    assert shared.differences({"dtype": "bfloat16"}, {"dtype": "float32"}) == ["dtype: 'bfloat16' -> 'float32'"]
    argv = server.serve_command(p, "real", engine_overrides={"gpu_memory_utilization": 0.4})
    assert argv[argv.index("--gpu-memory-utilization") + 1] == "0.4"


def test_fresh_needs_a_reason(tmp_path):
    with pytest.raises(EngineError) as e:
        offline.start(_params(tmp_path), tmp_path / "ev.log", fresh=True)
    assert "why=" in str(e.value)
    with pytest.raises(server.ServerError):
        with server.serving(_params(tmp_path), tmp_path / "ev.log", fresh=True):
            pass


def test_dead_shared_server_falls_back_with_reason(tmp_path, monkeypatch):
    run_dir = _run_dir(tmp_path)
    p = _params(tmp_path)
    _info(run_dir, p, f"http://127.0.0.1:{server.free_port()}/v1")
    _no_engine_start(monkeypatch)
    assert offline.start(p, run_dir / "evidence" / "03_inference.log") == "own-engine"
    (s,) = starts.load(run_dir)
    assert "does not answer /health" in s.why


def test_serving_yields_the_shared_server_and_never_stops_it(tmp_path, fake_server):
    run_dir, url = fake_server
    p = _params(tmp_path)
    _info(run_dir, p, url)
    ev = run_dir / "evidence" / "08_serving.log"
    with server.serving(p, ev) as srv:
        assert srv.shared and srv.base_url == url and srv.startup_s == 12.5 and srv.pid == os.getpid()
        assert srv.alive() and srv.command == "vllm serve x"
        shared.SharedClient(shared.read_info(run_dir), tmp_path / "other.log").generate([[1, 2]], max_tokens=1)
    assert srv.alive()  # still serving the next chapter
    log = ev.read_text(encoding="utf-8")
    assert "using the run's shared server" in log and log.count("POST /v1/completions") == 1


# -- start records ----------------------------------------------------------------------------------------------
def test_starts_record_load_summarize(tmp_path):
    starts.record(tmp_path, starts.Start("runner", "shared-server", "real", "the run's shared engine", 30.0))
    starts.record(tmp_path, starts.Start("02_loading", "offline", "dummy", "dummy load", 20.5))
    starts.record(tmp_path, starts.Start("07_performance", "benchmark", "dummy", "latency", None, ok=False,
                                         error="boom"))
    with open(tmp_path / starts.STARTS_FILE, "a") as f:
        f.write('{"chapter": "torn')  # a kernel killed mid-write
    got = starts.load(tmp_path)
    assert [s.chapter for s in got] == ["runner", "02_loading", "07_performance"] and got[0].at
    summ = starts.summarize(got)
    assert summ["count"] == 2 and summ["seconds"] == 50.5 and summ["failed"] == 1 and len(summ["starts"]) == 3
    with pytest.raises(ValueError):
        starts.record(tmp_path, starts.Start("x", "rocket", "real", "", 1.0))
    starts.record(tmp_path / "missing", starts.Start("x", "offline", "real", "", 1.0))  # no run dir: nothing
    assert not (tmp_path / "missing").exists()


def test_needs_engine(tmp_path):
    notebook(tmp_path, "02_loading", "eng = engine.start(p, ch.evidence_path)")
    notebook(tmp_path, "01_environment", "print('no engine')")
    assert shared.needs_engine(tmp_path / "02_loading.ipynb")
    assert not shared.needs_engine(tmp_path / "01_environment.ipynb")


# -- the runner ----------------------------------------------------------------------------------------------------
HEAD = 'from bitcpm_validation.report.recorder import Chapter\nch = Chapter.open("{cid}", params_path, run_dir)\n'
USES_SHARED = HEAD + textwrap.dedent('''\
    import json, pathlib
    info = json.loads((pathlib.Path(run_dir) / "shared-engine.json").read_text())
    ch.data["pid"] = info["pid"]
    # engine.start( : this chapter needs an engine
    ch.finish()''')
NO_ENGINE = HEAD + 'ch.finish()'


def _fake_start_shared(params, run_dir, which="real", started_with=""):
    """A stand-in for the shared vllm serve: a sleeping process in its own session, with one child."""
    log = shared.log_path(run_dir, which)
    with open(log, "a") as f:
        proc = subprocess.Popen([sys.executable, "-c", "import subprocess,sys,time; "
                                 "subprocess.Popen([sys.executable,'-c','import time; time.sleep(600)']); "
                                 "time.sleep(600)"], stdout=f, stderr=f, start_new_session=True,
                                preexec_fn=processes.die_with_parent)  # as server._launch: gone with its thread
    srv = server.Server(base_url="http://127.0.0.1:1/v1", model="m", proc=proc, evidence_path=log, startup_s=0.5)
    info = shared.SharedInfo(base_url=srv.base_url, pid=proc.pid, model="m", which=which, kwargs={},
                             command="vllm serve fake", log=str(log), startup_s=0.5, started_with=started_with)
    shared.write_info(run_dir, info)
    starts.record(run_dir, starts.Start("runner", server.SHARED_WHY[which][0], which, "shared", 0.5))
    time.sleep(0.5)  # let the child appear
    return srv, info


@pytest.fixture
def proj(tmp_path):
    nbs = tmp_path / "notebooks"
    nbs.mkdir()
    notebook(nbs, "01_environment", NO_ENGINE)
    notebook(nbs, "02_loading", USES_SHARED)
    notebook(nbs, "03_inference", USES_SHARED)
    d = yaml.safe_load((ROOT / "params/default.yaml").read_text(encoding="utf-8"))
    d["prompts"] = str(ROOT / "params/prompts.yaml")
    params = tmp_path / "p.yaml"
    params.write_text(yaml.safe_dump(d), encoding="utf-8")
    return {"nbs": nbs, "params": params, "runs": tmp_path / "runs"}


def test_runner_starts_one_shared_server_and_stops_it(proj, monkeypatch):
    monkeypatch.setattr(server, "start_shared", _fake_start_shared)
    out = io.StringIO()
    oc = runner.run(proj["params"], notebooks_dir=proj["nbs"], runs_dir=proj["runs"], out=out)
    text = out.getvalue()
    assert [c.status for c in oc.chapters] == ["ok", "ok", "ok"], text
    lines = text.splitlines()
    # the shared server starts after the chapter that needs no engine, before the first that does
    i_env = next(i for i, ln in enumerate(lines) if "01_environment" in ln)
    i_shared = next(i for i, ln in enumerate(lines) if ln.startswith("[shared]"))
    assert i_env < i_shared and "ready" in lines[i_shared] and "shared by the chapters" in lines[i_shared]
    from bitcpm_validation.report import results as R

    pids = {R.load(oc.run_dir / "results" / f"{c}.json").data["pid"] for c in ("02_loading", "03_inference")}
    assert len(pids) == 1  # both chapters saw the same server, alive across the per-chapter cleanup
    pid = pids.pop()
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    assert not (oc.run_dir / shared.SHARED_FILE).exists()
    run = json.loads((oc.run_dir / "run.json").read_text())
    assert run["shared_engine"]["ok"] and run["shared_engine"]["pid"] == pid and run["shared_engine"]["stopped"]
    assert run["engine_starts"]["count"] == 1 and run["engine_starts"]["starts"][0]["kind"] == "shared-server"


BENCHMARK_USES_ITS_SERVER = HEAD + textwrap.dedent('''\
    import json, pathlib
    import psutil
    info = json.loads((pathlib.Path(run_dir) / "shared-engine-synthetic.json").read_text())
    ch.data["pid"] = info["pid"]
    ch.data["started_with"] = info["started_with"]
    ch.data["alive"] = psutil.Process(info["pid"]).status() != psutil.STATUS_ZOMBIE
    # server.serving( : this chapter needs an engine
    ch.finish()''')
AFTER_THE_BENCHMARK = HEAD + textwrap.dedent('''\
    import pathlib
    # server.serving(
    ch.data["benchmark_server_left"] = (pathlib.Path(run_dir) / "shared-engine-synthetic.json").exists()
    ch.finish()''')


def test_runner_starts_the_benchmark_server_with_the_shared_one_and_stops_it_after_its_chapter(proj, monkeypatch):
    """CPU, performance.model synthetic: the benchmark's server starts at the same time as the shared one (one
    progress line), serves 07_performance, and is stopped as soon as that chapter is done."""
    monkeypatch.setattr(server, "start_shared", _fake_start_shared)
    monkeypatch.setattr(runner, "engine_platform", lambda: "cpu")
    notebook(proj["nbs"], "07_performance", BENCHMARK_USES_ITS_SERVER)
    notebook(proj["nbs"], "08_serving", AFTER_THE_BENCHMARK)
    out = io.StringIO()
    oc = runner.run(proj["params"], notebooks_dir=proj["nbs"], runs_dir=proj["runs"], out=out)
    text = out.getvalue()
    assert [c.status for c in oc.chapters] == ["ok"] * 5, text
    shared_lines = [ln for ln in text.splitlines() if ln.startswith("[shared]")]
    assert len(shared_lines) == 1 and "×2" in shared_lines[0] and "the benchmark's (synthetic)" in shared_lines[0]
    from bitcpm_validation.report import results as R

    bench = R.load(oc.run_dir / "results" / "07_performance.json").data
    assert bench["started_with"] == "real"  # each knows the other started with it (the timings include it)
    bench_pid = bench["pid"]
    assert bench["alive"]  # started in a thread, still running chapters later (PR_SET_PDEATHSIG is per thread)
    assert R.load(oc.run_dir / "results" / "08_serving.json").data["benchmark_server_left"] is False
    assert not psutil.pid_exists(bench_pid) or psutil.Process(bench_pid).status() == psutil.STATUS_ZOMBIE
    run = json.loads((oc.run_dir / "run.json").read_text())
    assert run["shared_engine"]["started_with"] == {"which": "synthetic", "ok": True, "startup_s": 0.5,
                                                     "pid": bench_pid}
    assert sorted((s["kind"], s["which"]) for s in run["engine_starts"]["starts"]) == [
        ("benchmark", "synthetic"), ("shared-server", "real")]
    assert not list(oc.run_dir.glob("shared-engine*.json"))


def test_benchmark_server_only_on_a_cpu_for_the_full_shape_when_its_chapter_runs(tmp_path):
    p = load_params(ROOT / "params/default.yaml")
    todo = [Path("01_environment.ipynb"), Path("07_performance.ipynb")]
    assert runner.benchmark_server_weights(p, todo, "cpu") == "synthetic"
    assert runner.benchmark_server_weights(p, todo, "npu") is None  # the device keeps room for fresh engines
    assert runner.benchmark_server_weights(p, todo[:1], "cpu") is None  # the performance chapter is not planned
    real = p.model_copy(update={"performance": p.performance.model_copy(update={"model": "real"})})
    assert runner.benchmark_server_weights(real, todo, "cpu") is None  # the shared server's model: its own start


def test_runner_without_engine_chapters_starts_nothing(proj, monkeypatch):
    called = []
    monkeypatch.setattr(server, "start_shared", lambda *a: called.append(a))
    out = io.StringIO()
    runner.run(proj["params"], notebooks_dir=proj["nbs"], runs_dir=proj["runs"], out=out, only=["01_environment"])
    assert not called and "[shared]" not in out.getvalue()


def test_shared_server_failure_is_one_line_and_the_run_goes_on(proj, monkeypatch):
    def boom(params, run_dir, which="real", started_with=""):
        raise server.ServerError("port 8000 on 127.0.0.1 is taken (serving.port): stop what listens there")

    monkeypatch.setattr(server, "start_shared", boom)
    nbs = proj["nbs"]
    notebook(nbs, "02_loading", HEAD + "# engine.start(\nimport pathlib\n"
             "assert not (pathlib.Path(run_dir) / 'shared-engine.json').exists()\nch.finish()")
    notebook(nbs, "03_inference", HEAD + "# engine.start(\nch.finish()")
    out = io.StringIO()
    oc = runner.run(proj["params"], notebooks_dir=nbs, runs_dir=proj["runs"], out=out)
    text = out.getvalue()
    line = next(ln for ln in text.splitlines() if ln.startswith("[shared]"))
    assert "failed" in line and "port 8000" in line and "taken" in line
    assert "chapters start their own engines" in text and text.count("[shared]") == 1  # tried once
    assert [c.status for c in oc.chapters] == ["ok", "ok", "ok"]
    run = json.loads((oc.run_dir / "run.json").read_text())
    assert run["shared_engine"] == {"ok": False, "error": "port 8000 on 127.0.0.1 is taken (serving.port): "
                                                          "stop what listens there"}


DRIVER = textwrap.dedent('''\
    import sys
    sys.path[:0] = [{here!r}, {tests!r}]  # this file and the shared fixtures (fake_run)
    import test_shared as T
    from bitcpm_validation.engine import server
    from bitcpm_validation.report import runner
    server.start_shared = T._fake_start_shared
    oc = runner.run({params!r}, notebooks_dir={nbs!r}, runs_dir={runs!r})
    sys.exit(oc.exit_code)
''')


def test_ctrl_c_stops_the_shared_server(proj, tmp_path):
    nbs = proj["nbs"]
    notebook(nbs, "03_inference", HEAD + "# engine.start(\nimport time\ntime.sleep(600)")
    driver = tmp_path / "driver.py"
    driver.write_text(DRIVER.format(here=str(Path(__file__).parent), tests=str(ROOT / "tests"), params=str(proj["params"]), nbs=str(nbs),
                                    runs=str(proj["runs"])))
    proc = subprocess.Popen([sys.executable, str(driver)], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True)
    deadline = time.monotonic() + 240
    info_file = None
    while time.monotonic() < deadline:  # wait for 03 to be running (the shared server up, 02 done)
        runs = list(proj["runs"].glob("2*"))
        if runs and (runs[0] / "results" / "02_loading.json").exists() and (runs[0] / shared.SHARED_FILE).exists():
            info_file = runs[0] / shared.SHARED_FILE
            break
        time.sleep(0.5)
    assert info_file is not None, "the run never reached chapter 03"
    pid = json.loads(info_file.read_text())["pid"]
    tree = [pid] + [c.pid for c in psutil.Process(pid).children(recursive=True)]
    time.sleep(3)
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 130, out
    assert f"stopped the shared engine (pid {pid})" in out
    time.sleep(1)
    alive = [p for p in tree if psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE]
    assert not alive, (alive, out)
    assert not info_file.exists()


# -- the real thing ---------------------------------------------------------------------------------------------
@pytest.mark.engine
def test_shared_server_matches_offline_engine(tmp_path):
    """Same greedy token ids and top-k logprob ids through the shared server as through vllm.LLM (stand-in)."""
    from bitcpm_validation.engine import prompting

    p = _params(tmp_path)
    run_dir = _run_dir(tmp_path)
    prompts = [prompting.prompt_ids(t, p.model_path) for t in ("The capital of France is", "1, 2, 3,", "中国的首都是")]
    srv, info = server.start_shared(p, run_dir)
    try:
        assert info.kv_cache_tokens and info.startup_s > 0
        client = offline.start(p, run_dir / "evidence" / "03_inference.log")
        assert isinstance(client, shared.SharedClient)
        via_server = client.generate(prompts, max_tokens=12, logprobs=5, prompt_logprobs=5)
        full_server = client.prompt_logprobs_full(prompts)
        client.close()
    finally:
        srv.stop()
    eng = offline.start(p, run_dir / "evidence" / "03_inference.log", fresh=True, why="reference")
    try:
        assert not isinstance(eng, shared.SharedClient)
        direct = eng.generate(prompts, max_tokens=12, logprobs=5, prompt_logprobs=5)
        full_direct = eng.prompt_logprobs_full(prompts)
    finally:
        eng.close()
    for a, b in zip(via_server, direct):
        assert a.prompt_token_ids == b.prompt_token_ids and a.token_ids == b.token_ids
        for la, lb in zip(a.logprobs, b.logprobs):
            assert set(la) == set(lb)
            assert max(abs(la[t] - lb[t]) for t in la) < 0.05  # bf16: same kernels, batching may differ
        for la, lb in zip(a.prompt_logprobs[1:], b.prompt_logprobs[1:]):
            assert set(la) == set(lb) and max(abs(la[t] - lb[t]) for t in la) < 0.05
    import numpy as np

    for a, b in zip(full_server, full_direct):  # whole-vocabulary rows (the precision chapter's KL)
        assert a.shape == b.shape and (np.isfinite(a) == np.isfinite(b)).all()
        fin = np.isfinite(a)
        assert (a.argmax(axis=1) == b.argmax(axis=1)).all() and np.abs(a[fin] - b[fin]).max() < 0.05
    kinds = [(s.chapter, s.kind, s.why) for s in starts.load(run_dir)]
    assert kinds == [("runner", "shared-server", "the run's shared engine (every chapter that can share it)"),
                     ("03_inference", "offline", "reference")]


KILLS_SHARED = HEAD + textwrap.dedent('''\
    import json, os, pathlib, signal, time
    info = json.loads((pathlib.Path(run_dir) / "shared-engine.json").read_text())
    ch.data["pid"] = info["pid"]
    os.killpg(info["pid"], signal.SIGKILL)  # a request that kills the engine (a device refusing a request)
    # engine.start( : this chapter needs an engine
    ch.finish()''')


def test_runner_restarts_a_shared_server_that_died_during_a_chapter(proj, monkeypatch):
    """Issue 22.7: a chapter whose request killed the shared engine costs that chapter's comparison only; the
    later chapters get a new shared server (counted), never a lost run."""
    monkeypatch.setattr(server, "start_shared", _fake_start_shared)
    notebook(proj["nbs"], "02_loading", KILLS_SHARED)
    out = io.StringIO()
    oc = runner.run(proj["params"], notebooks_dir=proj["nbs"], runs_dir=proj["runs"], out=out)
    text = out.getvalue()
    assert [c.status for c in oc.chapters] == ["ok", "ok", "ok"], text
    assert "stopped answering: restarting it" in text
    from bitcpm_validation.report import results as R

    first = R.load(oc.run_dir / "results" / "02_loading.json").data["pid"]
    second = R.load(oc.run_dir / "results" / "03_inference.json").data["pid"]
    assert first != second
    run = json.loads((oc.run_dir / "run.json").read_text())
    assert run["engine_starts"]["count"] == 2
