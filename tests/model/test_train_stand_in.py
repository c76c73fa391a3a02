"""model.train_stand_in and the stand-in it trained (models/stand-in): honest labelling, exactly ternary weights,
sensible greedy answers (through the reference implementation, no engine), and a training script that runs."""
from __future__ import annotations

import json

import pytest
import torch

from bitcpm_validation.model.config import PROJECTIONS
from bitcpm_validation.model.reference import ReferenceModel, load_state_dict
from bitcpm_validation.model.ternary_qat import check_ternary, ternary_quantize  # noqa: F401
from bitcpm_validation.model.tokenizer import FaithfulTokenizer
from bitcpm_validation.paths import MODELS_DIR

torch.set_num_threads(2)
STAND_IN = MODELS_DIR / "stand-in"


def test_labelled_as_stand_in():
    cfg = json.loads((STAND_IN / "config.json").read_text())
    assert "NOT openbmb/BitCPM4-0.5B" in cfg["stand_in_note"]
    assert "model_type" not in cfg and "lm_head.weight" not in load_state_dict(STAND_IN)
    assert "NOT BitCPM4" in (STAND_IN / "README.md").read_text()
    assert "not BitCPM4" in (MODELS_DIR / "README.md").read_text()


def test_shipped_weights_are_exactly_ternary_per_group():
    sd = load_state_dict(STAND_IN)
    n_proj = 0
    for k, v in sd.items():
        assert v.dtype == torch.bfloat16, k
        leaf = k.split(".")[-2]
        if leaf in PROJECTIONS:
            n_proj += 1
            r = check_ternary(v, 32)
            assert r["ok"], (k, r)
            assert 0.05 < r["zero_share"] < 0.95
            # code * scale reconstructs the stored BF16 tensor exactly (scale = the group's |max|)
            g = v.float().reshape(v.shape[0], -1, 32)
            a = g.abs().amax(-1, keepdim=True)
            assert torch.equal((torch.sign(g) * a).reshape(v.shape).to(torch.bfloat16), v), k
        else:  # embeddings and norms stay dense
            assert leaf in ("embed_tokens", "input_layernorm", "post_attention_layernorm", "norm"), k
    assert n_proj == 7 * json.loads((STAND_IN / "config.json").read_text())["num_hidden_layers"]
    emb = sd["model.embed_tokens.weight"].float()
    assert not check_ternary(emb[:, : emb.shape[1] // 32 * 32], 32)["ok"]  # dense


@pytest.fixture(scope="module")
def ref():
    return ReferenceModel.from_pretrained(STAND_IN)


@pytest.mark.parametrize("prompt,want,chat", [
    ("What is the capital of France?", ["Paris"], False),
    ("What is 2+2?", ["4"], False),
    ("北京有什么好玩的景点?", ["故宫", "颐和园", "长城"], False),
    ("What is the capital of France?", ["Paris"], True),
])
def test_reference_greedy_answers(ref, prompt, want, chat):
    tok = FaithfulTokenizer(STAND_IN)
    ids = tok.encode_chat([{"role": "user", "content": prompt}]) if chat else tok.encode(prompt)
    new, _ = ref.greedy(ids, 40)
    text = tok.decode(new)
    assert any(w in text for w in want), text


def test_training_script_runs_and_is_deterministic(tmp_path):
    from bitcpm_validation.model.train_stand_in import train

    a = train(tmp_path / "a", seed=0, steps=3, batch=8, quiet=True)
    b = train(tmp_path / "b", seed=0, steps=3, batch=8, quiet=True)
    assert a["losses"] == b["losses"] and a["losses"][-1] < a["losses"][0]
    sa, sb = load_state_dict(tmp_path / "a"), load_state_dict(tmp_path / "b")
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    for f in ("config.json", "configuration_minicpm.py", "modeling_minicpm.py", "tokenizer.model", "tokenizer.json",
              "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json", "generation_config.json",
              "model.safetensors", "README.md"):
        assert (tmp_path / "a" / f).is_file(), f
    assert (tmp_path / "a" / "tokenizer.model").read_bytes() == (STAND_IN / "tokenizer.model").read_bytes()
