"""model/remote_code, the MiniCPM remote-code files the model directories ship (configuration_minicpm.py,
modeling_minicpm.py). The shipped copies are the package's sources byte for byte (one implementation, copied into
each model directory by the writer), and modeling_minicpm.py generates correctly through transformers'
GenerationMixin (issue 14): greedy `generate()` (KV cache, only new tokens fed) equals the project's fp32
reference's greedy, also past original_max_position_embeddings where LongRoPE's long factors and mscale apply."""
from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import pytest
import torch

from bitcpm_validation.model.reference import ReferenceModel

ROOT = Path(__file__).resolve().parents[2]
STAND_IN = ROOT / "models" / "stand-in"
REMOTE_CODE = ROOT / "src" / "bitcpm_validation" / "model" / "remote_code"

torch.set_num_threads(2)


# -- the shipped copies are the package's sources ---------------------------------------------------------------
@pytest.mark.parametrize("model_dir", ["bitcpm4-0.5b", "stand-in"])
@pytest.mark.parametrize("name", ["configuration_minicpm.py", "modeling_minicpm.py"])
def test_model_dir_remote_code_is_the_package_source(model_dir, name):
    shipped = ROOT / "models" / model_dir / name
    assert shipped.read_bytes() == (REMOTE_CODE / name).read_bytes(), (
        f"{shipped} differs from {REMOTE_CODE / name}: rebuild the model dir with the writer")


# -- generate() through transformers equals the reference's greedy ----------------------------------------------
ORIG, MAXPOS, HD = 32, 128, 64
_rng = random.Random(1)
LONGROPE = {"rope_type": "longrope", "original_max_position_embeddings": ORIG,
            "short_factor": [round(1 + 3 * _rng.random(), 4) for _ in range(HD // 2)],
            "long_factor": [round(1 + 30 * _rng.random(), 4) for _ in range(HD // 2)]}
NEW_TOKENS = 32


@pytest.fixture(scope="module")
def longrope_dir(tmp_path_factory):
    """The trained stand-in (random weights repeat one token: a comparison of nothing) with a config
    whose LongRoPE is fully exercised: short != long factors, max_position_embeddings > original."""
    if not (STAND_IN / "config.json").is_file():
        pytest.skip(f"{STAND_IN} is missing: build it with `make stand-in`")
    d = tmp_path_factory.mktemp("gen")
    for f in STAND_IN.iterdir():
        if f.is_file():
            shutil.copy(f, d / f.name)
    for f in REMOTE_CODE.glob("*.py"):  # the package's source under test (the shipped copies equal it)
        shutil.copy(f, d / f.name)
    cfg = json.loads((d / "config.json").read_text())
    assert cfg["hidden_size"] // cfg["num_attention_heads"] == HD
    cfg.update(max_position_embeddings=MAXPOS, rope_scaling=LONGROPE)
    (d / "config.json").write_text(json.dumps(cfg))
    return d


@pytest.fixture(scope="module")
def hf_model(longrope_dir):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(longrope_dir, trust_remote_code=True, dtype=torch.float32).eval()


@pytest.fixture(scope="module")
def ref(longrope_dir):
    return ReferenceModel.from_pretrained(longrope_dir)


def _prompt(n: int, vocab: int, seed: int) -> list[int]:
    g = random.Random(seed)
    return [1] + [g.randrange(3, vocab - 8) for _ in range(n - 1)]


def _hf_greedy(model, ids: list[int]) -> list[int]:
    out = model.generate(torch.tensor([ids]), attention_mask=torch.ones(1, len(ids), dtype=torch.long),
                         max_new_tokens=NEW_TOKENS, min_new_tokens=NEW_TOKENS, do_sample=False,
                         eos_token_id=None, pad_token_id=0)
    return out[0, len(ids):].tolist()


# 40 tokens of prompt: the sequence runs past original_max_position_embeddings (32) before generation.
@pytest.mark.parametrize("length,seed", [(3, 0), (9, 1), (17, 2), (40, 3)])
def test_generate_greedy_equals_reference_greedy(ref, hf_model, length, seed):
    ids = _prompt(length, ref.cfg["vocab_size"], seed)
    want, _ = ref.greedy(ids, max_new_tokens=NEW_TOKENS, stop_ids=[])
    got = _hf_greedy(hf_model, ids)
    assert len(got) == NEW_TOKENS
    assert got == want, f"prompt of {length}: generate {got} != reference {want}"


def test_generate_path_is_not_trivial(longrope_dir, hf_model):
    """The comparison above means something only if the continuations vary (not one token repeated)."""
    ids = _prompt(40, hf_model.config.vocab_size, 3)
    assert len(set(_hf_greedy(hf_model, ids))) > 3


def test_cached_step_equals_full_forward(longrope_dir, hf_model):
    """One decode step with past_key_values gives the logits of a full forward over the whole sequence."""
    ids = torch.tensor([_prompt(36, hf_model.config.vocab_size, 5)])
    with torch.no_grad():
        full = hf_model(ids, use_cache=False).logits[0, -1]
        first = hf_model(ids[:, :-1], use_cache=True)
        assert first.past_key_values is not None and first.past_key_values.get_seq_length() == 35
        step = hf_model(ids[:, -1:], past_key_values=first.past_key_values, use_cache=True).logits[0, -1]
    assert torch.allclose(full, step, atol=1e-5)


def test_left_padded_batch_matches_single(ref, hf_model):
    """Batched generate with left padding (attention_mask + position_ids) gives each prompt's own greedy."""
    v = hf_model.config.vocab_size
    a, b = _prompt(12, v, 8), _prompt(7, v, 9)
    pad = len(a) - len(b)
    ids = torch.tensor([a, [0] * pad + b])
    mask = torch.tensor([[1] * len(a), [0] * pad + [1] * len(b)])
    out = hf_model.generate(ids, attention_mask=mask, max_new_tokens=8, min_new_tokens=8, do_sample=False,
                            eos_token_id=None, pad_token_id=0)
    assert out[0, len(a):].tolist() == ref.greedy(a, 8, stop_ids=[])[0]
    assert out[1, len(a):].tolist() == ref.greedy(b, 8, stop_ids=[])[0]
