"""Params profiles: every shipped profile validates; wrong input gets a one-line error naming file and key."""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from bitcpm_validation.params import ParamsError, load_params, load_prompts

ROOT = Path(__file__).resolve().parents[1]


def write(tmp_path: Path, data, name="p.yaml") -> Path:
    p = tmp_path / name
    p.write_text(yaml.safe_dump(data) if not isinstance(data, str) else data, encoding="utf-8")
    return p


def base() -> dict:
    return yaml.safe_load((ROOT / "params/default.yaml").read_text(encoding="utf-8"))


@pytest.mark.parametrize("name", ["default.yaml", "ascend-910b3.yaml", "cuda.yaml"])
def test_shipped_profiles_validate(name):
    p = load_params(ROOT / "params" / name)
    assert p.profile
    assert p.lang in ("zh", "en", "both")


def test_default_profile_is_cpu_stand_in_all_chapters():
    p = load_params(ROOT / "params/default.yaml")
    assert p.platform == "auto" and p.model.is_stand_in and p.chapters == ["all"]
    assert p.model.path == "models/stand-in" and p.model.dummy_config == "models/bitcpm4-0.5b"
    assert p.engine.dtype == "auto" and p.engine.cpu_threads_bind == "auto" and p.engine.enforce_eager


def test_ascend_profile_matches_original_deployment():
    p = load_params(ROOT / "params/ascend-910b3.yaml")
    e = p.engine
    assert p.platform == "npu" and not p.model.is_stand_in
    assert (e.dtype, e.tensor_parallel_size, e.max_model_len, e.gpu_memory_utilization, e.max_num_seqs) == (
        "bfloat16", 1, 4096, 0.5, 8)


def test_cuda_profile():
    assert load_params(ROOT / "params/cuda.yaml").platform == "cuda"


def test_prompts_have_the_original_documents_prompts():
    ps = load_prompts(ROOT / "params/prompts.yaml")
    texts = {p.prompt for p in ps.prompts}
    for t in ["Hello, my name is", "What is the capital of France?", "Write a short poem about AI:", "What is 2+2?",
              "Translate to Chinese: Hello, how are you?"]:
        assert t in texts
    assert len(ps.by_lang("zh")) >= 3


def one_line_error(path) -> str:
    with pytest.raises(ParamsError) as ei:
        load_params(path)
    msg = str(ei.value)
    assert "\n" not in msg, msg
    return msg


def test_unknown_key(tmp_path):
    d = base()
    d["engine"]["max_modle_len"] = 10
    msg = one_line_error(write(tmp_path, d))
    assert "p.yaml" in msg and "engine.max_modle_len" in msg and "unknown key" in msg


def test_unknown_top_level_key(tmp_path):
    d = base()
    d["colour"] = "red"
    assert "colour" in one_line_error(write(tmp_path, d))


def test_wrong_type(tmp_path):
    d = base()
    d["engine"]["max_num_seqs"] = "many"
    msg = one_line_error(write(tmp_path, d))
    assert "p.yaml" in msg and "engine.max_num_seqs" in msg and "'many'" in msg


def test_wrong_enum(tmp_path):
    d = base()
    d["lang"] = "fr"
    msg = one_line_error(write(tmp_path, d))
    assert "lang" in msg and "'fr'" in msg


def test_full_shape_weights_synthetic_by_default_dummy_on_request(tmp_path):
    """The full shape loads the synthetic checkpoint unless a profile asks for load_format=dummy (issue 19.4)."""
    for name in ("default.yaml", "ascend-910b3.yaml", "cuda.yaml"):
        assert load_params(ROOT / "params" / name).model.full_shape_weights == "synthetic", name
    assert load_params(ROOT / "params/default.yaml").performance.model == "synthetic"
    d = base()
    d["model"]["full_shape_weights"], d["performance"]["model"] = "dummy", "dummy"  # an old run's params.yaml loads
    p = load_params(write(tmp_path, d))
    assert (p.model.full_shape_weights, p.performance.model) == ("dummy", "dummy")
    d["model"]["full_shape_weights"] = "random"
    msg = one_line_error(write(tmp_path, d))
    assert "model.full_shape_weights" in msg and "'random'" in msg
    d = base()
    d["performance"]["model"] = "fake"
    assert "performance.model" in one_line_error(write(tmp_path, d))


def test_missing_required_key(tmp_path):
    d = base()
    del d["model"]
    msg = one_line_error(write(tmp_path, d))
    assert "missing key 'model'" in msg


def test_missing_file(tmp_path):
    msg = one_line_error(tmp_path / "nope.yaml")
    assert "nope.yaml" in msg and "not found" in msg


def test_bad_yaml(tmp_path):
    msg = one_line_error(write(tmp_path, "profile: [unclosed\n"))
    assert "not valid YAML" in msg


def test_not_a_mapping(tmp_path):
    assert "mapping" in one_line_error(write(tmp_path, "- a\n- b\n"))


def test_missing_prompts_file(tmp_path):
    d = base()
    d["prompts"] = "params/nope.yaml"
    msg = one_line_error(write(tmp_path, d))
    assert "prompts" in msg and "nope.yaml" in msg


def test_impossible_context(tmp_path):
    d = base()
    d["inference"] = {"max_tokens": 4096}
    msg = one_line_error(write(tmp_path, d))
    assert "max_tokens" in msg and "max_model_len" in msg
