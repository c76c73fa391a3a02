from bitcpm_validation.chapters import provenance as P

NO_WEIGHTS = {"model_path": "/m", "model_dir_exists": True,
              "inputs": [{"set": "model", "role": "config", "path": "config.json", "bytes": 1, "sha256": "ab"}]}


def _missing_target(tmp="/tmp/bitcpm-worst-provenance"):
    from pathlib import Path
    Path(tmp).mkdir(parents=True, exist_ok=True)
    rc = {"model_dir": tmp, "trust_remote_code": True, "missing_targets": ["modeling_minicpm.py"], "external": [],
          "files": []}
    return {"model_path": tmp, "remote_code": rc, "remote_code_dummy": None, "dummy_config_path": None}


CASES = {
    "inputs_hashed": lambda: P.judge_inputs(NO_WEIGHTS),
    "remote_code_listed": lambda: P.judge_remote_code(_missing_target()),
}
