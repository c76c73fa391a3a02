"""The environment chapter's checks judge what the probe found (issue 10): each can pass and fail."""
from pathlib import Path

from bitcpm_validation.chapters import environment as E

ROOT = Path(__file__).resolve().parents[2]



def test_platform_auto_accepts_any_and_a_mismatch_fails():
    assert E.judge_platform("auto", "cuda") is None  # auto accepts any device: a fact (device_kind), not a check
    assert E.judge_platform("cpu", "cpu").status == "pass"
    row = E.judge_platform("npu", "cpu")
    assert row.status == "fail" and "npu" in row.detail_en and row.scope == "engine"


def test_device_evidence_needs_torch_devices_and_the_vendor_tool():
    cpu = {"device": {"kind": "cpu", "devices": []}, "tools": {}}
    assert E.judge_device_evidence(cpu) is None  # nothing to evidence on a CPU: a fact, not a check
    dev = [{"kind": "cuda", "index": 0, "name": "H200", "memory_gib": 139}]
    ok = {"device": {"kind": "cuda", "devices": dev}, "tools": {"nvidia-smi": "| NVIDIA H200 | 0 |"}}
    assert E.judge_device_evidence(ok).status == "pass"
    assert E.judge_device_evidence({"device": {"kind": "cuda", "devices": dev}, "tools": {}}).status == "fail"


def test_engine_stack_on_npu_needs_torch_npu_and_vllm_ascend():
    v = {"vllm": "0.18.0", "torch_npu": "2.9.0", "vllm_ascend": "0.18.0"}
    assert E.judge_engine_stack(v, "npu").status == "pass"
    assert E.judge_engine_stack({**v, "vllm_ascend": None}, "npu").status == "fail"
    assert E.judge_engine_stack({"vllm": None}, "cpu").status == "fail"
    assert E.judge_engine_stack({"vllm": "0.32.0"}, "cpu").status == "pass"


def test_cann_env_only_on_npu_and_names_the_command():
    assert E.judge_cann_env("cpu", {}) is None
    both = {"ASCEND_TOOLKIT_HOME": "/usr/local/Ascend/ascend-toolkit/latest",
            "ATB_HOME_PATH": "/usr/local/Ascend/nnal/atb/latest/atb/cxx_abi_1"}
    assert E.judge_cann_env("npu", both).status == "pass"
    row = E.judge_cann_env("npu", {})
    assert row.status == "fail" and "ascend-toolkit/set_env.sh" in row.detail_en


def test_cann_env_needs_nnal_atb_too():
    """CANN alone is not enough: attention needs NNAL's libatb.so, whose set_env.sh sets ATB_HOME_PATH."""
    row = E.judge_cann_env("npu", {"ASCEND_TOOLKIT_HOME": "/usr/local/Ascend/ascend-toolkit/latest", "ATB_HOME_PATH": None})
    assert row.status == "fail"
    assert "`source /usr/local/Ascend/nnal/atb/set_env.sh`" in row.detail_en and "ATB_HOME_PATH" in row.detail_en
    assert "ascend-toolkit" not in row.detail_en  # the one command that is missing, not both


def test_preexisting_pip_conflicts_are_read_from_the_environment(tmp_path):
    """What the set-up recorded under the environment's prefix (scripts/setup_env.sh writes the same path)."""
    assert E.preexisting_conflicts(str(tmp_path)) == []
    note = tmp_path / E.PIP_CHECK_NOTE
    note.parent.mkdir(parents=True)
    line = ("vllm-ascend 0.18.0 has requirement opencv-python-headless<=4.11.0.86, but you have "
            "opencv-python-headless 4.13.0.92.")
    note.write_text(line + "\n\n")
    assert E.preexisting_conflicts(str(tmp_path)) == [line]
    assert "share/bitcpm-validation/pip-check-preexisting.txt" in (ROOT / "scripts/setup_env.sh").read_text()
    facts = {"device": {"kind": "npu", "cuda_available": False, "npu_available": True, "devices": [], "name": "NPU"},
             "tools": {}, "pip_check_preexisting": [line]}
    assert line in E.evidence_text(facts)


def test_engine_settings_rows_cover_real_and_the_full_shape():
    rows = E.settings_rows({"real": {"dtype": "float32", "model": "m"}, "full_shape": {"dtype": "bfloat16"},
                            "env": {"VLLM_CPU_KVCACHE_SPACE": "1"}})
    assert ["dtype", "float32", "bfloat16"] in rows and ["model", "m", "—"] in rows
    assert ["VLLM_CPU_KVCACHE_SPACE", "1", "1"] in rows
    old = E.settings_rows({"real": {"dtype": "float32"}, "dummy": {"dtype": "bfloat16"}})  # an older run's data
    assert ["dtype", "float32", "bfloat16"] in old


def test_engine_settings_name_the_synthetic_checkpoint_without_writing_it(tmp_path, monkeypatch):
    from bitcpm_validation.engine import base
    from bitcpm_validation.model import synthetic
    from bitcpm_validation.params import load_params

    monkeypatch.setenv("BITCPM_VALIDATION_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(base, "engine_platform", lambda: "cpu")
    p = load_params("params/default.yaml")
    s = E.engine_settings(p)
    want = synthetic.full_shape_path(p.dummy_config_path)
    assert s["full_shape_weights"] == "synthetic" and s["full_shape"]["model"] == str(want)
    assert s["full_shape"]["load_format"] == "auto" and not want.exists()  # named, not written (chapter 02 writes it)
    assert s["full_shape"]["max_model_len"] == s["real"]["max_model_len"] and s["real"]["load_format"] == "auto"
    assert E.FULL_SHAPE_HEADER["synthetic"] == ("完整规模（合成权重）", "Full shape (synthetic weights)")



def test_device_name_is_in_no_language():
    """The device's name is data in both files (issue 20.5): a CPU's usable cores as `nproc` counts them."""
    assert E.device_name("cpu", [], {"model": "Some CPU", "usable_cores": 2}) == "CPU: Some CPU (nproc=2)"
    assert E.device_name("npu", [{"name": "Ascend910B3"}] * 2, {}) == "Ascend910B3 × 2"
