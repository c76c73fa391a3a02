"""engine.base (issue 22, run-time): `engine.dtype: auto` on an accelerator for every reader, the platform from vLLM's
current_platform, and the weights-loaded lines of vLLM and vLLM-Ascend. What the weights are, read from the model
directory, is model.weights_kind's: tests/model/test_weights_kind.py.

No engine starts here: the accelerator is simulated by patching the platform detection."""
from __future__ import annotations

import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest

from bitcpm_validation.chapters import environment, loading, performance
from bitcpm_validation.engine import base, hostcpu, server, shared
from bitcpm_validation.engine.identity import model_source
from bitcpm_validation.params import load_params

from fake_model import accelerator_profile

ROOT = Path(__file__).resolve().parents[2]
STAND_IN = ROOT / "models/stand-in"




def _copy_with_dtype(tmp: Path, torch_dtype) -> Path:
    """The stand-in's files with another config.json torch_dtype (None: no dtype key at all)."""
    d = tmp / f"model-{torch_dtype}"
    shutil.copytree(STAND_IN, d)
    cfg = json.loads((d / "config.json").read_text(encoding="utf-8"))
    cfg.pop("torch_dtype", None)
    if torch_dtype:
        cfg["torch_dtype"] = torch_dtype
    (d / "config.json").write_text(json.dumps(cfg), encoding="utf-8")
    return d


@pytest.fixture(params=["npu", "cuda"])
def accelerator(request, monkeypatch):
    """A host whose engine build is `request.param` (the detection every reader goes through, patched)."""
    monkeypatch.setattr(base, "engine_platform", lambda: request.param)
    return request.param


# -- 5. dtype: auto means the model's dtype on CUDA and NPU, for every reader ------------------------------------
@pytest.mark.parametrize("config_dtype, want", [("bfloat16", "bfloat16"), ("float16", "float16"),
                                                 ("float32", "bfloat16"), (None, "bfloat16")])
def test_auto_is_the_model_dtype_on_an_accelerator(tmp_path, accelerator, config_dtype, want):
    """config.json's torch_dtype, float32 downcast to bfloat16 as vLLM's own auto does; none named: bfloat16."""
    p = load_params(accelerator_profile(tmp_path, _copy_with_dtype(tmp_path, config_dtype)))
    assert p.engine.dtype == "auto"
    assert base.engine_dtype(p) == want
    assert base.engine_kwargs(p, base.model_facts(p, "real"))["dtype"] == want


def test_every_reader_gets_the_model_dtype_never_auto(tmp_path, accelerator, monkeypatch):
    p = load_params(accelerator_profile(tmp_path, STAND_IN))
    model_dtype = json.loads((STAND_IN / "config.json").read_text())["torch_dtype"]
    seen: dict[str, str] = {}
    # engine kwargs (the offline engine), real and dummy weights
    seen["kwargs real"] = base.engine_kwargs(p, base.model_facts(p, "real"))["dtype"]
    seen["kwargs dummy"] = base.engine_kwargs(p, base.model_facts(p, "dummy"))["dtype"]
    # the server's argv
    argv = server.serve_command(p, "real", port=8123)
    seen["serve argv"] = argv[argv.index("--dtype") + 1]
    # the run's shared server: the kwargs it records (shared-engine.json) and the argv it starts with
    started = {}

    def fake_start(params, log, which, **kw):
        started["argv"] = server.serve_command(params, which, engine_overrides=kw.get("engine_overrides"))
        kwargs = base.engine_kwargs(params, base.model_facts(params, which), **(kw.get("engine_overrides") or {}))
        return SimpleNamespace(log_start=0, base_url="http://127.0.0.1:1/v1", pid=1, model="m", command="vllm serve",
                               startup_s=1.0, startup_phases={}, env={}, tokenizer_reason={}, stop=lambda: None,
                               kwargs=kwargs)

    monkeypatch.setattr(server, "start", fake_start)
    monkeypatch.setattr(server, "metrics_kv_tokens", lambda url: None)
    (tmp_path / "run" / "evidence").mkdir(parents=True)
    (tmp_path / "run" / "evidence" / shared.SHARED_LOG_NAME).write_text("")
    _, info = server.start_shared(p, tmp_path / "run")
    seen["shared kwargs"] = info.kwargs["dtype"]
    seen["shared argv"] = started["argv"][started["argv"].index("--dtype") + 1]
    seen["shared-engine.json"] = shared.read_info(tmp_path / "run").kwargs["dtype"]
    # the report's settings tables: chapter 01's (real and the full shape) and an engine's own settings()
    settings = environment.engine_settings(p)
    seen["01 settings real"], seen["01 settings full shape"] = settings["real"]["dtype"], settings["full_shape"]["dtype"]
    seen["engine settings()"] = base.settings_of(base.engine_kwargs(p, base.model_facts(p)), accelerator, {})["dtype"]
    # the performance chapter: its arithmetic takes the resolved dtype (it raises on auto)
    which, model_dir = performance.benchmark_model(p)
    # the shape's config: the synthetic checkpoint's source (its cache directory is written only when loaded)
    arith = performance.model_arith(model_source(p, which, write=False).config_dir / "config.json",
                                    base.engine_dtype(p, which))
    seen["performance"] = arith["dtype"]
    assert seen == {k: model_dtype for k in seen}, seen
    assert "auto" not in argv


def test_auto_on_a_cpu_is_still_the_isa_rule(tmp_path, monkeypatch):
    """The CPU keeps its own rule (engine.hostcpu): this host has no AVX-512 BF16 / AMX, so float32."""
    monkeypatch.setattr(base, "engine_platform", lambda: "cpu")
    monkeypatch.setattr(hostcpu, "cpu_flags", lambda cpuinfo=None: {"avx2"})
    p = load_params(accelerator_profile(tmp_path, STAND_IN))
    assert base.engine_dtype(p) == "float32" and base.engine_kwargs(p, base.model_facts(p))["dtype"] == "float32"
    monkeypatch.setattr(hostcpu, "cpu_flags", lambda cpuinfo=None: {"avx2", "amx_bf16"})
    assert base.engine_dtype(p) == "bfloat16"


# -- 7a. the platform from vLLM's current_platform --------------------------------------------------------------
class _FakePlatform:
    def __init__(self, cpu=False, cuda=False, oot=False, device_type=""):
        self._cpu, self._cuda, self._oot, self.device_type = cpu, cuda, oot, device_type

    def is_cpu(self):
        return self._cpu

    def is_cuda_alike(self):
        return self._cuda

    def is_out_of_tree(self):
        return self._oot


def test_platform_kind_from_what_vllm_says():
    assert base.platform_kind(_FakePlatform(cpu=True, device_type="cpu")) == "cpu"
    assert base.platform_kind(_FakePlatform(cuda=True, device_type="cuda")) == "cuda"
    # vLLM-Ascend's NPUPlatform: out of tree, device_type "npu" (vllm_ascend/platform.py@v0.18.0)
    assert base.platform_kind(_FakePlatform(oot=True, device_type="npu")) == "npu"
    assert base.platform_kind(_FakePlatform()) == "unknown"


def test_platform_facts_on_this_host_and_the_loading_line():
    """On this CPU host vLLM's current_platform is the built-in CpuPlatform, whose detection vLLM logs only at
    DEBUG: the loading chapter's platform row comes from the object, not from a log line."""
    facts = base.platform_facts()
    assert facts["kind"] == base.detect_platform() == "cpu"
    assert facts["class"] == "CpuPlatform" and facts["out_of_tree"] is False
    row = loading.platform_line(facts)
    assert row["line"] == "cpu: CpuPlatform (device_type=cpu, is_out_of_tree()=False)"
    assert "built-in" in row["en"] and "内置" in row["zh"]
    # an engine log without the DEBUG line has no log platform row; the row of record is still there
    log = "INFO 12-03 08:00:00 [llm.py:343] Supported tasks: ['generate']\n"
    assert not [r for r in loading.key_log_lines(log) if r["key"] == "platform"]


# -- 7b. the weights-loaded lines of vLLM 0.18.0 and vLLM-Ascend 0.18.0 ------------------------------------------
# Lines as the engines log them (format strings from the sources cited in engine/offline.py, values filled in).
VLLM_CUDA = """\
INFO 12-03 08:00:01 [default_loader.py:385] Loading weights took 0.41 seconds
INFO 12-03 08:00:02 [gpu_model_runner.py:4567] Model loading took 0.93 GiB memory and 1.873512 seconds
INFO 12-03 08:00:09 [core.py:281] init engine (profile, create kv cache, warmup model) took 7.12 seconds
"""
VLLM_V2_RUNNER = "INFO 12-03 08:00:02 [model_runner.py:290] Model loading took 0.93 GiB and 1.873512 seconds\n"
VLLM_ASCEND = """\
INFO 12-03 08:00:00 [__init__.py:239] Platform plugin ascend is activated
(EngineCore_DP0 pid=4242) INFO 12-03 08:00:03 [model_runner_v1.py:2565] Starting to load model /data/BitCPM4-0.5B...
(EngineCore_DP0 pid=4242) INFO 12-03 08:00:05 [default_loader.py:385] Loading weights took 1.27 seconds
(EngineCore_DP0 pid=4242) INFO 12-03 08:00:05 [model_runner_v1.py:2592] Loading model weights took 0.9318 GB
"""
VLLM_ASCEND_RFORK = "INFO 12-03 08:00:05 [rfork_loader.py:150] Loading model weights took 2.05 seconds\n"


def test_weights_loaded_lines_of_both_platforms():
    cuda = base.parse_engine_log(VLLM_CUDA)
    assert (cuda["weights_load_s"], cuda["model_load_gib"], cuda["model_load_s"]) == (0.41, 0.93, 1.873512)
    assert cuda["engine_core_init_s"] == 7.12
    v2 = base.parse_engine_log(VLLM_V2_RUNNER)
    assert (v2["model_load_gib"], v2["model_load_s"]) == (0.93, 1.873512)
    npu = base.parse_engine_log(VLLM_ASCEND)
    assert npu["weights_load_s"] == 1.27 and npu["model_load_gib"] == 0.9318
    assert "model_load_s" not in npu  # vLLM-Ascend's line has no seconds: the loader's line gives them
    rfork = base.parse_engine_log(VLLM_ASCEND_RFORK)
    assert rfork == {"weights_load_s": 2.05}  # "... took 2.05 seconds" is a time, never a size


def test_timeline_and_log_platform_on_ascend_lines():
    keys = {e["key"]: e["t_s"] for e in loading.init_timeline(VLLM_ASCEND)}
    assert keys["platform"] == 0 and keys["weights_start"] == 3 and keys["weights_done"] == 5
    lines = [r["line"] for r in loading.key_log_lines(VLLM_ASCEND) if r["key"] == "platform"]
    assert lines == ["Platform plugin ascend is activated"]
