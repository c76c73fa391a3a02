from bitcpm_validation.chapters import provenance as P

NO_WEIGHTS = {"model_path": "/m", "model_dir_exists": True,
              "inputs": [{"set": "model", "role": "config", "path": "config.json", "bytes": 1, "sha256": "ab"}]}


def _missing_target(tmp="/tmp/bitcpm-worst-provenance"):
    """A model directory whose config.json's auto_map names modeling_minicpm.py, which it does not ship; the
    chapter's own measurement (remote_code_files) finds what trust_remote_code would execute."""
    import json
    from pathlib import Path
    d = Path(tmp)
    d.mkdir(parents=True, exist_ok=True)
    (d / "modeling_minicpm.py").unlink(missing_ok=True)
    (d / "config.json").write_text(json.dumps({"architectures": ["MiniCPMForCausalLM"],
                                               "auto_map": {"AutoModelForCausalLM": "modeling_minicpm.MiniCPMForCausalLM"}}))
    rc = P.remote_code_files(d, trust_remote_code=True)
    assert rc["missing_targets"], rc
    return {"model_path": tmp, "remote_code": rc, "remote_code_dummy": None, "dummy_config_path": None}


CASES = {
    "inputs_hashed": lambda: P.judge_inputs(NO_WEIGHTS),
    "remote_code_listed": lambda: P.judge_remote_code(_missing_target()),
}
