"""engine.startup: where an offline engine runs (the mode choice), what an in-process start gives back to the
process, and the phases of a start read from its log.

With an engine (marked `engine`): the offline engine in one process computes what it computes in vLLM's own
processes: the same greedy token ids, logprobs and prompt logprobs on the stand-in, twice in one process (a restart),
with the process's own thread count and torch functions intact after each start. float32: the comparison is of where
the engine runs, not of its dtype, and float32 runs on every CPU."""
from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from bitcpm_validation.engine import offline, starts
from bitcpm_validation.engine import startup as S
from bitcpm_validation.model.tokenizer import FaithfulTokenizer
from bitcpm_validation.model.train_stand_in import PROBES
from bitcpm_validation.params import load_params
from bitcpm_validation.paths import MODELS_DIR, PROJECT_ROOT


@pytest.mark.parametrize("platform, world, nodes, env, expect", [
    ("cpu", 1, 1, {}, S.IN_PROCESS),
    ("cpu", 2, 1, {}, S.MULTIPROCESS),                        # a worker per rank
    ("cpu", 1, 2, {}, S.MULTIPROCESS),                        # the worker would bind the kernel's memory to one node
    ("cuda", 1, 1, {}, S.MULTIPROCESS),                       # vLLM's default off CPU
    ("npu", 1, 1, {}, S.MULTIPROCESS),
    ("cpu", 1, 1, {S.MODE_ENV: "1"}, S.MULTIPROCESS),         # the user's explicit setting wins, both ways
    ("cuda", 1, 1, {S.MODE_ENV: "0"}, S.IN_PROCESS),
    ("cpu", 1, 1, {S.MODE_ENV: " 0 "}, S.IN_PROCESS),
    ("cpu", 1, 1, {S.MODE_ENV: ""}, S.IN_PROCESS),            # empty: not set
])
def test_choose_mode(platform, world, nodes, env, expect):
    mode = S.choose_mode(platform, world, nodes, env)
    assert mode.name == expect and mode.reason


def test_choose_mode_names_a_bad_setting():
    with pytest.raises(ValueError, match=r"VLLM_ENABLE_V1_MULTIPROCESSING='yes' is not an integer"):
        S.choose_mode("cpu", 1, 1, {S.MODE_ENV: "yes"})


def test_in_process_start_gives_the_process_its_own_settings_back(monkeypatch):
    monkeypatch.delenv(S.MODE_ENV, raising=False)
    original = torch.set_num_threads
    threads = torch.get_num_threads()
    random.seed(1), np.random.seed(1), torch.manual_seed(1)
    expected = random.random(), float(np.random.rand()), float(torch.rand(1))
    random.seed(1), np.random.seed(1), torch.manual_seed(1)
    with S.in_process():
        import os

        assert os.environ[S.MODE_ENV] == "0"
        # what vLLM's CPU worker and engine core do to the process (cpu_worker.py:145, :165; core.py:253)
        torch.set_num_threads(1 if threads != 1 else 2)
        torch.set_num_threads = lambda n: None
        random.seed(0), np.random.seed(0), torch.manual_seed(0)
    assert torch.set_num_threads is original and torch.get_num_threads() == threads
    assert (random.random(), float(np.random.rand()), float(torch.rand(1))) == expected
    assert S.MODE_ENV not in __import__("os").environ  # a later `vllm serve` does not inherit it


def test_torch_threads_scopes_the_count():
    before = torch.get_num_threads()
    other = 1 if before != 1 else 2
    with S.torch_threads(other):
        assert torch.get_num_threads() == other
    assert torch.get_num_threads() == before
    with S.torch_threads(None):
        assert torch.get_num_threads() == before


class _FakeLLM:
    def __init__(self):
        self.seen = None

    def generate(self, prompts):
        self.seen = torch.get_num_threads()
        return prompts

    def get_tokenizer(self):
        return "tok"


def test_in_process_llm_runs_generate_with_the_workers_threads():
    before = torch.get_num_threads()
    other = 1 if before != 1 else 2
    llm = S.InProcessLLM(_FakeLLM(), other)
    assert llm.generate(["a"]) == ["a"] and llm._llm.seen == other
    assert torch.get_num_threads() == before and llm.get_tokenizer() == "tok"


# A multiprocess start's log as engine.offline's logging config writes it (front end 100, engine core 200,
# worker 300; vLLM's messages).
MP_LOG = """=== engine start (real): vllm.LLM(**{...}) [multiprocess: VLLM_ENABLE_V1_MULTIPROCESSING=1 in the environment]
INFO 12-03 12:25:55.348 100 [api_utils.py:286] non-default args: {}
INFO 12-03 12:26:19.795 200 [core.py:133] Initializing a V1 LLM engine (v0.32.0) with config: model='m'
INFO 12-03 12:26:31.384 300 [parallel_state.py:1906] world_size=1 rank=0 local_rank=0
INFO 12-03 12:26:31.626 300 [base_loader.py:82] Initializing model took 0.211776 seconds
INFO 12-03 12:26:31.636 300 [default_loader.py:501] Loading weights took 0.01 seconds
INFO 12-03 12:26:32.813 200 [core.py:402] init engine (profile, create kv cache, warmup model) took 0.37 s
INFO 12-03 12:26:35.655 100 [hf.py:648] Detected the chat template content format to be 'string'.
"""


def test_first_seen_per_process():
    assert S.first_seen(MP_LOG, own_pid=100) == {200: 24.45, 300: 36.04}


def test_phases_of_a_multiprocess_start():
    ph = S.phases(import_s=15.0, config_s=2.0, engine_s=40.3, log=MP_LOG, own_pid=100, mode=S.MULTIPROCESS)
    assert list(ph) == ["import", "config", "engine_core_process", "worker_process", "model_load",
                        "kv_cache_and_warmup", "other"]
    assert ph["engine_core_process"] == 24.45 and ph["worker_process"] == 11.59
    assert ph["model_load"] == 0.01 and ph["kv_cache_and_warmup"] == 0.37
    assert ph["other"] == round(40.3 - 36.04 - 0.01 - 0.37, 2)


def test_phases_of_an_in_process_start_have_no_process_phase():
    log = MP_LOG.replace(" 200 [", " 100 [").replace(" 300 [", " 100 [").replace(
        "Loading weights took 0.01 seconds", "Model loading took 0.01 GiB memory and 0.25 seconds")
    ph = S.phases(import_s=0.0, config_s=1.0, engine_s=9.0, log=log, own_pid=100, mode=S.IN_PROCESS)
    assert "engine_core_process" not in ph and ph["import"] == 0.0 and ph["model_load"] == 0.25
    assert ph["other"] == round(9.0 - 0.25 - 0.37, 2)


def test_phases_never_negative_and_without_log():
    ph = S.phases(import_s=1.0, config_s=1.0, engine_s=0.1, log=MP_LOG, own_pid=100, mode=S.IN_PROCESS)
    assert ph["other"] == 0.0
    assert S.phases(import_s=1.0, config_s=2.0, engine_s=3.0, log="", own_pid=1, mode=S.MULTIPROCESS) == {
        "import": 1.0, "config": 2.0, "other": 3.0}


def test_starts_keep_mode_and_phases(tmp_path):
    starts.record(tmp_path, starts.Start("04_determinism", "offline", "real", "restart", 9.5, mode=S.IN_PROCESS,
                                         phases={"import": 0.0, "config": 1.0, "other": 8.5}))
    (tmp_path / starts.STARTS_FILE).open("a").write(
        '{"chapter": "runner", "kind": "shared-server", "which": "real", "why": "", "seconds": 30.0}\n')  # before phases
    a, b = starts.load(tmp_path)
    assert a.mode == S.IN_PROCESS and a.phases == {"import": 0.0, "config": 1.0, "other": 8.5}
    assert b.mode == "" and b.phases == {}
    assert starts.of_run(tmp_path)["starts"][0]["phases"]["other"] == 8.5


# A `vllm serve` start on this project's 2-core host (params/default.yaml's model, the stand-in), as its launcher
# read it: (seconds after the launch at which engine.server.LogLines read the line, the line); /health answered
# at 41.78 s. Lines shortened; every line the phases need kept, with a few that they must ignore.
SERVER_LINES = [
    (0.02, "=== server start: vllm serve /work/main/models/stand-in --trust-remote-code --dtype bfloat16"),
    (7.56, "Triton is installed, but doesn't include CPU backend. Disabling Triton."),
    (10.17, "(APIServer pid=12854) INFO 12-03 15:22:41 [api_utils.py:347] "),
    (10.17, "(APIServer pid=12854) INFO 12-03 15:22:41 [api_utils.py:286] non-default args: {'model_tag': 'm'}"),
    (12.18, "(APIServer pid=12854) ERROR 12-03 15:22:43 [repo_utils.py:124] Error parsing config for /t: Unrecognized"),
    (20.54, "(EngineCore pid=12903) INFO 12-03 15:22:51 [core.py:133] Initializing a V1 LLM engine (v0.32.0) with "
            "config: model='/work/main/models/stand-in'"),
    (33.11, "[W1203 15:23:04.959519448 utils.cpp:68] Warning: NUMA binding: Using MEMBIND policy"),
    (33.11, "(VllmWorker-0 pid=12999) WARNING 12-03 15:23:04 [vllm.py:725] Model Runner V2 requires Triton"),
    (33.21, "(Worker pid=12999) INFO 12-03 15:23:04 [cpu_model_runner.py:68] Starting to load model m..."),
    (33.51, "(Worker pid=12999) INFO 12-03 15:23:04 [default_loader.py:501] Loading weights took 0.02 seconds"),
    (34.22, "(EngineCore pid=12903) INFO 12-03 15:23:05 [kv_cache_utils.py:2327] CPU KV cache size: 524,288 tokens"),
    (37.65, "(EngineCore pid=12903) INFO 12-03 15:23:08 [core.py:402] init engine (profile, create kv cache, "
            "warmup model) took 3.41 s"),
    (39.66, "(EngineCore pid=12903) ERROR 12-03 15:23:10 [repo_utils.py:124] Error parsing config for /t: Unrecognized"),
    (40.97, "INFO:     Started server process [12854]"),
    (41.48, "INFO:     Application startup complete."),
]


def test_server_process_of_a_line():
    assert [S.server_process(line) for _, line in SERVER_LINES[1:9]] == [
        None, "api_server", "api_server", "api_server", "engine_core", None, "worker", "worker"]
    assert S.server_process("(EngineCore_DP0 pid=7) INFO 12-03 15:22:51 [core.py:133] x") == "engine_core"


def test_phases_of_a_server_start():
    ph = S.server_phases(SERVER_LINES, 41.78)
    assert ph == {"api_server_process": 10.17, "engine_core_process": 10.37, "worker_process": 12.57,
                  "model_load": 0.02, "kv_cache_and_warmup": 3.41, "other": 1.11, "to_healthy": 4.13}
    assert round(sum(ph.values()), 2) == 41.78  # the phases add up to the seconds to healthy


def test_server_phases_without_a_line_keep_the_seconds_in_the_next_phase():
    no_core = [(t, line) for t, line in SERVER_LINES if "EngineCore" not in line]
    ph = S.server_phases(no_core, 41.78)  # no engine core line, so no "engine ready" line either
    assert "engine_core_process" not in ph and "to_healthy" not in ph
    assert ph["worker_process"] == round(33.11 - 10.17, 2) and ph["other"] == round(41.78 - 33.11 - 0.02, 2)
    assert S.server_phases([], 5.0) == {"other": 5.0}


def test_compile_is_taken_out_of_the_engine_init_it_ran_in():
    log = ("INFO 12-03 12:26:32.813 200 [monitor.py:60] torch.compile took 9.10 s in total\n"
           "INFO 12-03 12:26:40.813 200 [core.py:402] init engine (profile, create kv cache, warmup model) took "
           "12.50 s (compilation: 9.25 s)\n")
    assert S.logged_phases(log) == {"kv_cache_and_warmup": 3.25, "compile": 9.25}
    assert S.logged_phases(log.splitlines()[0]) == {"compile": 9.1}
    ph = S.phases(import_s=0.0, config_s=0.0, engine_s=20.0, log=log, own_pid=200, mode=S.IN_PROCESS)
    assert ph["other"] == round(20.0 - 12.5, 2)


# -- the engine in one process and in vLLM's own processes: the same outputs (engine) ---------------------------
def _outputs_in_mode(params, run_dir, mode_flag, monkeypatch, prompts):
    monkeypatch.setenv(S.MODE_ENV, mode_flag)
    eng = offline.start(params, run_dir / "evidence" / "04_determinism.log", fresh=True, why="restart",
                        dtype="float32")
    monkeypatch.delenv(S.MODE_ENV)
    try:  # one request at a time: a multiprocess engine core may start stepping before a batch's last request has
        # arrived, so the host's load would decide the batches, and a batch's make-up changes float rounding
        gens = [eng.generate([p], max_tokens=16, logprobs=5, prompt_logprobs=5, ignore_eos=True)[0] for p in prompts]
    finally:
        eng.close()
    return [(g.token_ids, g.logprobs, g.prompt_logprobs) for g in gens]


@pytest.mark.engine
def test_in_process_engine_gives_the_multiprocess_engines_outputs(tmp_path, monkeypatch):
    params = load_params(PROJECT_ROOT / "params" / "default.yaml")
    (tmp_path / "evidence").mkdir()
    tok = FaithfulTokenizer(MODELS_DIR / "stand-in")
    prompts = [tok.encode_chat([{"role": "user", "content": p}]) if c else tok.encode(p) for p, c in PROBES]
    threads, set_num_threads = torch.get_num_threads(), torch.set_num_threads

    multi = _outputs_in_mode(params, tmp_path, "1", monkeypatch, prompts)
    one = _outputs_in_mode(params, tmp_path, "0", monkeypatch, prompts)
    assert torch.set_num_threads is set_num_threads and torch.get_num_threads() == threads
    again = _outputs_in_mode(params, tmp_path, "0", monkeypatch, prompts)  # a second start in the same process

    assert [o[0] for o in one] == [m[0] for m in multi] and all(len(m[0]) == 16 for m in multi)
    assert one == multi, "in-process logprobs differ from the multiprocess engine's"
    assert again == one
    assert torch.set_num_threads is set_num_threads and torch.get_num_threads() == threads
    recorded = starts.load(tmp_path)
    assert [s.mode for s in recorded] == [S.MULTIPROCESS, S.IN_PROCESS, S.IN_PROCESS]
    assert "worker_process" in recorded[0].phases and "engine_core_process" not in recorded[1].phases
    assert recorded[2].phases["import"] == 0.0 and all(s.phases["other"] >= 0 for s in recorded)
