"""The environment chapter's checks judge what the probe found (issue 10): each can pass and fail."""
from bitcpm_validation.chapters import environment as E



def test_platform_auto_accepts_any_and_a_mismatch_fails():
    assert E.judge_platform("auto", "cuda").status == "pass"
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
    assert E.judge_cann_env("npu", {"ASCEND_TOOLKIT_HOME": "/usr/local/Ascend/ascend-toolkit/latest"}).status == "pass"
    row = E.judge_cann_env("npu", {})
    assert row.status == "fail" and "set_env.sh" in row.detail_en


def test_engine_settings_rows_cover_real_and_dummy():
    rows = E.settings_rows({"real": {"dtype": "float32", "model": "m"}, "dummy": {"dtype": "bfloat16"},
                            "env": {"VLLM_CPU_KVCACHE_SPACE": "1"}})
    assert ["dtype", "float32", "bfloat16"] in rows and ["model", "m", "—"] in rows
    assert ["VLLM_CPU_KVCACHE_SPACE", "1", "1"] in rows
