from bitcpm_validation.chapters import environment as E

NO_DEVICE = {"device": {"kind": "npu", "devices": [], "name": "NPU", "count": 0}, "tools": {}}
NO_TOOL = {"device": {"kind": "cuda", "devices": [{"kind": "cuda", "index": 0, "name": "H200", "memory_gib": 139}],
                      "name": "H200 × 1", "count": 1}, "tools": {}}

CASES = {
    "platform": lambda: E.judge_platform("npu", "cpu"),
    "device_evidence": lambda: E.judge_device_evidence(NO_DEVICE),
    "engine_stack": lambda: E.judge_engine_stack({"vllm": "0.18.0", "torch_npu": None, "vllm_ascend": None}, "npu"),
    # CANN sourced, NNAL (ATB) not: the engine starts but attention cannot load libatb.so
    "cann_env": lambda: E.judge_cann_env("npu", {"ASCEND_TOOLKIT_HOME": "/usr/local/Ascend/ascend-toolkit/latest",
                                                 "ATB_HOME_PATH": None}),
}
