"""The precision chapter's engine features through the run's shared server (the default report's path): block
size from /metrics, the chat path's token ids, the whole-vocabulary probe, prefix-cache hits from the server's
counters, top-k prompt rows of a chunked long prompt. One `vllm serve` of the stand-in for the module."""
from __future__ import annotations

from pathlib import Path

import pytest

from bitcpm_validation.engine import server
from bitcpm_validation.chapters import precision as P
from bitcpm_validation.engine import prompting, shared
from bitcpm_validation.params import load_params, load_prompts

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    p = load_params(ROOT / "params" / "default.yaml")
    if not list(p.model_path.glob("*.safetensors")):
        pytest.skip("models/stand-in has no weights")
    run_dir = tmp_path_factory.mktemp("srv") / "run"
    (run_dir / "evidence").mkdir(parents=True)
    srv, info = server.start_shared(p, run_dir)
    try:
        yield p, shared.SharedClient(info, run_dir / "evidence" / "06_precision.log")
    finally:
        srv.stop()


@pytest.mark.engine
def test_shared_server_features(client):
    p, c = client
    assert "--max-num-batched-tokens 512" in c.info.command  # engine.max_num_batched_tokens reaches the server
    block, source = P.engine_block_size(c)
    assert block and "metrics" in source
    ps = load_prompts(ROOT / "params" / "prompts.yaml")
    en = next(x for x in ps.prompts if x.lang == "en" and not x.chat)
    served = c.chat_prompt_ids([{"role": "user", "content": en.prompt}])
    assert served == prompting.prompt_ids(prompting.with_chat(en), p.model_path)  # the server's template = ChatML
    impl = P.EngineImpl(c, "shared")
    probe = P.probe_whole_vocab(impl, [1, 300, 400, 500], alive=P.alive_check(c))
    assert probe == {"ok": True, "error": None, "engine_alive": True}
    ids = P.long_ids(p.model_path, "en", 3 * block - 7, skip_paragraphs=3)  # a prefix no other test sent
    _, cold, src = P.cached_generate(c, ids, 4, 5)
    _, warm, _ = P.cached_generate(c, ids, 4, 5)
    assert "prefix_cache_hits" in src and cold == 0 and warm >= 2 * block
    rows = impl.score_topk([P.long_ids(p.model_path, "en", 1100)], 20)[0]  # chunked: 1,100 > 512
    assert len(rows) == 1099 and all(len(r) >= 20 for r in rows)
