"""The offline engine in one process computes what it computes in vLLM's own processes (engine.startup): the same
greedy token ids, logprobs and prompt logprobs on the stand-in, twice in one process (a restart), with the
process's own thread count and torch functions intact after each start.

float32: the comparison is of where the engine runs, not of its dtype, and float32 runs on every CPU."""
from __future__ import annotations

import pytest
import torch

from bitcpm_validation.engine import offline, starts, startup
from bitcpm_validation.model.tokenizer import FaithfulTokenizer
from bitcpm_validation.model.train_stand_in import PROBES
from bitcpm_validation.params import load_params
from bitcpm_validation.paths import MODELS_DIR, PROJECT_ROOT

pytestmark = pytest.mark.engine


def _run(params, run_dir, mode_flag, monkeypatch, prompts):
    monkeypatch.setenv(startup.MODE_ENV, mode_flag)
    eng = offline.start(params, run_dir / "evidence" / "04_determinism.log", fresh=True, why="restart",
                        dtype="float32")
    monkeypatch.delenv(startup.MODE_ENV)
    try:
        gens = eng.generate(prompts, max_tokens=16, logprobs=5, prompt_logprobs=5, ignore_eos=True)
    finally:
        eng.close()
    return [(g.token_ids, g.logprobs, g.prompt_logprobs) for g in gens]


def test_in_process_engine_gives_the_multiprocess_engines_outputs(tmp_path, monkeypatch):
    params = load_params(PROJECT_ROOT / "params" / "default.yaml")
    (tmp_path / "evidence").mkdir()
    tok = FaithfulTokenizer(MODELS_DIR / "stand-in")
    prompts = [tok.encode_chat([{"role": "user", "content": p}]) if c else tok.encode(p) for p, c in PROBES]
    threads, set_num_threads = torch.get_num_threads(), torch.set_num_threads

    multi = _run(params, tmp_path, "1", monkeypatch, prompts)
    one = _run(params, tmp_path, "0", monkeypatch, prompts)
    assert torch.set_num_threads is set_num_threads and torch.get_num_threads() == threads
    again = _run(params, tmp_path, "0", monkeypatch, prompts)  # a second start in the same process

    assert [o[0] for o in one] == [m[0] for m in multi] and all(len(m[0]) == 16 for m in multi)
    assert one == multi, "in-process logprobs differ from the multiprocess engine's"
    assert again == one
    assert torch.set_num_threads is set_num_threads and torch.get_num_threads() == threads
    recorded = starts.load(tmp_path)
    assert [s.mode for s in recorded] == [startup.MULTIPROCESS, startup.IN_PROCESS, startup.IN_PROCESS]
    assert "worker_process" in recorded[0].phases and "engine_core_process" not in recorded[1].phases
    assert recorded[2].phases["import"] == 0.0 and all(s.phases["other"] >= 0 for s in recorded)
