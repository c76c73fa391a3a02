"""Loading-chapter helpers and the prompting path, on a tiny random model (no engine start)."""
import hashlib
import json

import pytest

from bitcpm_validation.chapters import loading
from bitcpm_validation.engine import prompting
from bitcpm_validation.model.writer import write_tiny_random_model
from bitcpm_validation.params import Prompt


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return write_tiny_random_model(tmp_path_factory.mktemp("tiny") / "m", dtype="bfloat16")


@pytest.fixture(scope="module")
def tiny_untied(tmp_path_factory):
    return write_tiny_random_model(tmp_path_factory.mktemp("tiny2") / "m", dtype="bfloat16", lm_head=True, shards=2)


def test_weight_files_sha256(tiny):
    files = loading.weight_files(tiny)
    assert [f["file"] for f in files] == ["model.safetensors"]
    assert files[0]["sha256"] == hashlib.sha256((tiny / "model.safetensors").read_bytes()).hexdigest()
    assert files[0]["bytes"] == (tiny / "model.safetensors").stat().st_size
    assert loading.stored_dtypes(tiny) == {"BF16": len(json.loads(
        (tiny / "model.safetensors").read_bytes()[8:8 + int.from_bytes((tiny / "model.safetensors").read_bytes()[:8], "little")]
    )) - 1}


def test_consistency_tied_and_untied(tiny, tiny_untied):
    vs = json.loads((tiny / "config.json").read_text())["vocab_size"]
    c = {x["id"]: x for x in loading.consistency(tiny, tokenizer_size=vs, max_model_len=512, kv_cache_tokens=1000)}
    assert c["tie_vs_lm_head"]["status"] == "pass" and "absent" in c["tie_vs_lm_head"]["detail_en"]
    assert c["vocab_vs_tokenizer"]["status"] == "pass"
    assert c["max_model_len"]["status"] == "pass" and "achievable 1000" in c["max_model_len"]["detail_en"]
    c = {x["id"]: x for x in loading.consistency(tiny, tokenizer_size=vs + 1, max_model_len=2048, kv_cache_tokens=1000)}
    assert c["vocab_vs_tokenizer"]["status"] == "fail" and c["max_model_len"]["status"] == "fail"
    u = {x["id"]: x for x in loading.consistency(tiny_untied, tokenizer_size=None, max_model_len=512)}
    assert u["tie_vs_lm_head"]["status"] == "pass" and "present" in u["tie_vs_lm_head"]["detail_en"]
    assert "vocab_vs_tokenizer" not in u
    # A tied flag with an lm_head tensor in the checkpoint is inconsistent.
    cfg = json.loads((tiny_untied / "config.json").read_text())
    cfg.pop("tie_word_embeddings")
    (tiny_untied / "config.json").write_text(json.dumps(cfg))
    bad = {x["id"]: x for x in loading.consistency(tiny_untied, tokenizer_size=None, max_model_len=512)}
    assert bad["tie_vs_lm_head"]["status"] == "fail" and "class default" in bad["tie_vs_lm_head"]["detail_en"]


def test_architecture_only_dir_has_no_tie_verdict(tmp_path):
    from bitcpm_validation.model.writer import full_size_config, write_model_dir

    d = write_model_dir(tmp_path / "arch", full_size_config())
    c = {x["id"]: x for x in loading.consistency(d, tokenizer_size=None, max_model_len=2048)}
    assert c["tie_vs_lm_head"]["status"] == "not_run"
    assert c["max_model_len"]["status"] == "pass" and "32768" in c["max_model_len"]["detail_en"]


def test_config_needs_remote_code(tiny):
    cfg = loading.config_load(tiny)
    assert cfg["model_type"] is None and cfg["auto_map"]["AutoConfig"] == "configuration_minicpm.MiniCPMConfig"
    assert cfg["loaded"] and cfg["config_class"] == "MiniCPMConfig"
    assert cfg["needs_remote_code"] is True


def test_tokenizer_report_and_fidelity(tiny):
    tr = loading.tokenizer_report(tiny)
    assert tr["has_tokenizer_model"] and tr["base_vocab"] + len(tr["added_tokens"]) == tr["size"]
    assert tr["chat_template_present"] and tr["chat_template_is_chatml"]
    assert {r["lang"] for r in tr["round_trips"]} == {"en", "zh"}
    assert all(r["faithful_ok"] for r in tr["round_trips"])
    st, en, zh = loading.fidelity_check(tr)
    if tr["fidelity_ok"]:
        assert st == "pass"
    else:  # transformers 5.x rebuilds LlamaTokenizer: the first mismatch is named
        assert st == "fail" and "at token" in en and "SentencePiece" in en and "第" in zh
        bad = next(r for r in tr["fidelity"] if not r["match"])
        assert bad["first_mismatch"]["index"] >= 0 and bad["faithful_piece_at"] != bad["engine_piece_at"]


def test_prompting_faithful_ids(tiny):
    from bitcpm_validation.model.tokenizer import FaithfulTokenizer

    f = FaithfulTokenizer(tiny)
    assert prompting.feed_mode(tiny) == "faithful"
    ids = prompting.prompt_ids("Hello, my name is", tiny)
    assert ids[0] == 1 and ids == [1] + f.sp.encode("Hello, my name is")
    q = Prompt(id="c", lang="zh", kind="chat", prompt="你好", chat=True)
    cids = prompting.prompt_ids(q, tiny)
    assert cids[0] == f.added["<|im_start|>"] and 1 not in cids[:1]
    assert prompting.prompt_text(q) == "<|im_start|>user\n你好<|im_end|>\n<|im_start|>assistant\n"
    assert prompting.decode(ids, tiny) == "Hello, my name is"
    prep = prompting.prepare([q, "Hi"], tiny)
    assert [p.id for p in prep] == ["c", "p1"] and prep[0].chat and prep[1].token_ids[0] == 1
    assert "prompt" not in prep[0].as_dict()
    assert prompting.with_chat(Prompt(id="x", lang="zh", kind="k", prompt="好")).id == "x_chat"
    assert prompting.describe(tiny)["mode"] == "faithful"


def test_prompting_engine_mode_without_tokenizer_model(tiny, tmp_path):
    import shutil

    d = tmp_path / "nosp"
    shutil.copytree(tiny, d)
    (d / "tokenizer.model").unlink()
    assert prompting.feed_mode(d) == "engine" and prompting.describe(d)["mode"] == "engine"


def test_registry_has_minicpm():
    reg = loading.registry()
    assert reg["registered"] and reg["module"].endswith("minicpm")


def test_matrix():
    mx = loading.matrix({"ok": True, "full_size": True, "smoke": True}, {"ok": True, "smoke": True, "graded": False,
                                                                           "sha": True, "tie_ok": True})
    by = {r["what_en"]: r for r in mx}
    assert by["Outputs are meaningful (graded probe)"]["dummy"] == "—"
    assert by["Outputs are meaningful (graded probe)"]["real"] == "❌"
    assert by["Forward pass runs end to end (first request)"]["dummy"] == "✅"


def test_parse_engine_log_facts():
    from bitcpm_validation.engine.offline import parse_engine_log

    log = """INFO [base_loader.py:82] Initializing model took 0.930774 seconds
INFO [weight_utils.py:1108] Filesystem type for checkpoints: EXT4. Checkpoint size: 0.81 GiB. Available RAM: 20.66 GiB.
INFO [default_loader.py:501] Loading weights took 0.45 seconds
INFO [gpu_model_runner.py:1] Model loading took 0.8161 GiB memory and 1.25 seconds
INFO [cpu_worker.py:260] Explicitly set (1.0/9.46) GiB for KV cache on node 0.
INFO [kv_cache_utils.py:2327] CPU KV cache size: 524,288 tokens, Maximum concurrency for 2,048 tokens per request: 256.00x
INFO [core.py:402] init engine (profile, create kv cache, warmup model) took 3.82 s
"""
    f = parse_engine_log(log)
    assert f["kv_cache_tokens"] == 524288 and f["max_concurrency"] == 256.0 and f["concurrency_context_tokens"] == 2048
    assert f["weights_load_s"] == 0.45 and f["model_init_s"] == 0.930774 and f["engine_core_init_s"] == 3.82
    assert f["model_load_gib"] == 0.8161 and f["model_load_s"] == 1.25 and f["checkpoint_gib"] == 0.81
    assert f["kv_cache_gib"] == 1.0


def _params_for(tmp_path, model, override="auto"):
    import yaml

    from bitcpm_validation.params import load_params
    from bitcpm_validation.paths import PROJECT_ROOT

    y = {"profile": "test", "platform": "cpu", "prompts": str(PROJECT_ROOT / "params/prompts.yaml"),
         "model": {"path": str(model), "is_stand_in": True, "dummy_config": str(PROJECT_ROOT / "models/bitcpm4-0.5b")},
         "engine": {"dtype": "float32", "max_model_len": 256, "tokenizer_override": override}}
    p = tmp_path / f"p-{override}.yaml"
    p.write_text(yaml.safe_dump(y))
    return load_params(p)


def test_engine_tokenizer_decision_and_deployed_check(tiny, tmp_path):
    """One decision for the offline engine and the server (no engine started): auto writes the faithful
    tokenizer dir into the run where the model's own tokenizer differs from SentencePiece; off never does."""
    from bitcpm_validation.engine import offline
    from bitcpm_validation.engine import server

    run = tmp_path / "run"
    p = _params_for(tmp_path, tiny)
    tr = loading.tokenizer_report(tiny)
    dec = prompting.engine_tokenizer(p, run)
    if tr["fidelity_ok"]:  # a future transformers that loads the model's own files faithfully
        assert dec.path is None and "already" in dec.en
    else:
        assert dec.path == run / "artifacts" / "faithful-tokenizer" / tiny.name and "PreTrainedTokenizerFast" in dec.en
        assert dec.zh and "SentencePiece" in dec.zh
        kw = offline.engine_kwargs(p, "real", run)
        assert kw["tokenizer"] == str(dec.path)
        assert "tokenizer" not in offline.engine_kwargs(p, "real")  # no run dir: the model's own
        line = server.display_command(server.serve_command(p, "real", port=1, run_dir=run))
        assert f"--tokenizer {dec.path}" in line
        # offline.start / server.start find the run from the chapter's evidence log
        assert offline.run_dir_of(run / "evidence" / "02_loading.log") == run
    dep = loading.deployed_tokenizer(tr, dec)
    assert dep["status"] == "pass", dep["detail_en"]
    assert dep["detail_en"].endswith(dec.en) and dep["detail_zh"].endswith(dec.zh)
    off = prompting.engine_tokenizer(_params_for(tmp_path, tiny, "off"), run)
    assert off.path is None and "off" in off.en
    assert loading.deployed_tokenizer(tr, off)["status"] == ("pass" if tr["fidelity_ok"] else "fail")
