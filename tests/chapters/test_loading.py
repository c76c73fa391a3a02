"""Loading chapter: its check functions on measured data, the facts it shows, the tokenizer reference for
directories with and without tokenizer.model, the prompting path, and the engine-init timeline as a bar (issue
20.6: the phases between the milestones vLLM logs, one bar per engine start). No engine is started."""
import hashlib
import json
import shutil

import pytest

from bitcpm_validation.engine import base
from bitcpm_validation.chapters import loading
from bitcpm_validation.engine import prompting
from bitcpm_validation.model import tokenizer as T
from bitcpm_validation.model.writer import write_tiny_random_model
from bitcpm_validation.params import Prompt
from bitcpm_validation.paths import MODELS_DIR

STAND_IN = MODELS_DIR / "stand-in"
FULL = MODELS_DIR / "bitcpm4-0.5b"


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return write_tiny_random_model(tmp_path_factory.mktemp("tiny") / "m", dtype="bfloat16")


@pytest.fixture(scope="module")
def tiny_untied(tmp_path_factory):
    return write_tiny_random_model(tmp_path_factory.mktemp("tiny2") / "m", dtype="bfloat16", lm_head=True, shards=2)


@pytest.fixture()
def json_only(tmp_path):
    """The stand-in's tokenizer without tokenizer.model: tokenizer.json is the only tokenizer file."""
    d = tmp_path / "json-only"
    d.mkdir()
    for f in STAND_IN.iterdir():
        if f.name not in ("tokenizer.model", "model.safetensors"):
            shutil.copy(f, d / f.name)
    return d


# -- weights and the config ---------------------------------------------------------------------------------
def test_weight_files_sha256(tiny):
    files = loading.weight_files(tiny)
    assert [f["file"] for f in files] == ["model.safetensors"]
    assert files[0]["sha256"] == hashlib.sha256((tiny / "model.safetensors").read_bytes()).hexdigest()
    assert files[0]["bytes"] == (tiny / "model.safetensors").stat().st_size
    assert loading.stored_dtypes(tiny) == {"BF16": len(loading.weight_header(tiny))}


def test_weights_match_config(tiny, tiny_untied):
    from bitcpm_validation.model import config as mcfg

    cfg = mcfg.read_config(tiny)
    h = loading.weight_header(tiny)
    row = loading.judge_weights(cfg, h)
    assert row.scope == "repository" and row.status in ("pass", "warn"), row
    assert f"{len(h)} tensors" in row.detail_en
    # stored BF16 against config.json's torch_dtype: a mismatch is a warning, a match a pass
    assert row.status == ("pass" if cfg.get("torch_dtype") == "bfloat16" else "warn"), row
    assert loading.judge_weights(dict(cfg, torch_dtype="bfloat16"), h).status == "pass"
    assert loading.judge_weights(dict(cfg, torch_dtype="float32"), h).status == "warn"
    # untied, sharded: lm_head.weight is expected and present
    u = loading.judge_weights(dict(mcfg.read_config(tiny_untied), torch_dtype="bfloat16"), loading.weight_header(tiny_untied))
    assert u.status == "pass" and "lm_head" not in u.detail_en
    # a wrong shape, a missing and an unexpected tensor, a quantized dtype: each fails, named
    bad = dict(h)
    name = "model.layers.0.mlp.down_proj.weight"
    bad[name] = {"dtype": "BF16", "shape": list(reversed(h[name]["shape"]))}
    r = loading.judge_weights(cfg, bad)
    assert r.status == "fail" and f"first {name}" in r.detail_en and "wrong shape" in r.detail_en
    r = loading.judge_weights(cfg, {k: v for k, v in h.items() if "q_proj" not in k})
    assert r.status == "fail" and "missing (first model.layers.0.self_attn.q_proj.weight)" in r.detail_en
    r = loading.judge_weights(cfg, dict(h, **{"model.extra.weight": {"dtype": "BF16", "shape": [1]}}))
    assert r.status == "fail" and "unexpected (first model.extra.weight)" in r.detail_en
    r = loading.judge_weights(cfg, {k: dict(v, dtype="I8") for k, v in h.items()})
    assert r.status == "fail" and "non-floating dtype I8" in r.detail_en
    assert loading.judge_weights(cfg, {}).status == "not_run"


def test_tie_and_vocab_and_max_len(tiny, tiny_untied, tmp_path):
    t = loading.tying(tiny)
    assert t["lm_head"] is False and t["tied"] is True
    row = loading.judge_tie(t)
    assert row.status == "pass" and "absent" in row.detail_en
    u = loading.judge_tie(loading.tying(tiny_untied))
    assert u.status == "pass" and "present" in u.detail_en
    # a tied flag with an lm_head tensor in the checkpoint is inconsistent
    d = tmp_path / "tied-with-head"
    shutil.copytree(tiny_untied, d)
    cfg = json.loads((d / "config.json").read_text())
    cfg.pop("tie_word_embeddings")
    (d / "config.json").write_text(json.dumps(cfg))
    bad = loading.judge_tie(loading.tying(d))
    assert bad.status == "fail" and "class default" in bad.detail_en and "wrong or random output head" in bad.detail_en
    assert loading.judge_tie(loading.tying(FULL)).status == "not_run"  # no weights: only a weight file can confirm

    assert loading.judge_vocab(40, 40).status == "pass"
    assert loading.judge_vocab(48, 40).status == "warn" and "8 unused rows" in loading.judge_vocab(48, 40).detail_en
    assert loading.judge_vocab(40, 41).status == "fail"
    assert loading.judge_vocab(40, None).status == "not_run"

    full = json.loads((FULL / "config.json").read_text())
    fact = loading.max_model_len_fact(2048, full)
    assert fact["max_position_embeddings"] == 32768 and fact["text"] == "2,048 / 32,768 (LongRoPE short)"


def test_kv_capacity_load_and_infer():
    r = loading.judge_kv_capacity("real", 524_288, 2048, 8)
    assert r.status == "pass" and r.id == "kv_capacity:real" and "524,288 tokens = 256.0 requests" in r.detail_en
    assert loading.judge_kv_capacity("real", 8192, 2048, 8).status == "warn"
    assert loading.judge_kv_capacity("dummy", 1024, 2048, 8).status == "fail"
    assert loading.judge_kv_capacity("real", None, 2048, 8).status == "not_run"
    assert loading.judge_load("dummy", None, "full-size architecture").status == "pass"
    f = loading.judge_load("real", "EngineError: out of memory")
    assert f.status == "fail" and "out of memory" in f.detail_en and f.id == "load:real"
    assert loading.judge_infer("dummy", 8, 8, ignore_eos=True).status == "pass"
    assert loading.judge_infer("dummy", 7, 8, ignore_eos=True).status == "fail"
    assert loading.judge_infer("real", 3, 64, ignore_eos=False).status == "pass"
    assert loading.judge_infer("real", 0, 64, ignore_eos=False).status == "fail"
    assert loading.judge_infer("real", None, 64, ignore_eos=False, error="boom").status == "fail"


def test_full_shape_infer_on_the_synthetic_checkpoint_needs_finite_scores():
    """Random ternary weights: the text means nothing, but every generated token must have a finite log-prob <= 0."""
    ok = loading.judge_infer("synthetic", 8, 8, ignore_eos=True, chosen_logprobs=[-3.5] * 8)
    assert ok.status == "pass" and ok.id == "infer:synthetic" and "finite" in ok.detail_en and "有限值" in ok.detail_zh
    for bad in ([-1.0] * 7 + [float("nan")], [-1.0] * 7 + [float("-inf")], [-1.0] * 7 + [None], [-1.0] * 7 + [0.5],
                [-1.0] * 6):  # NaN, -inf, a missing score, a "probability" above 1, fewer scores than tokens
        r = loading.judge_infer("synthetic", 8, 8, ignore_eos=True, chosen_logprobs=bad)
        assert r.status == "fail" and "not finite" in r.detail_en, bad
    assert loading.judge_infer("synthetic", 7, 8, ignore_eos=True, chosen_logprobs=[-1.0] * 7).status == "fail"

    class Gen:  # an engine Generation: the chosen token's own entry of each top-k row
        token_ids = [5, 9]
        logprobs = [{5: -0.25, 3: -2.0}, {1: -0.5}]
    assert loading.chosen_logprobs(Gen) == [-0.25, None]


def test_matrix_columns_follow_the_full_shape_weights():
    rows = [loading.judge_load("synthetic", None, "x"), loading.judge_kv_capacity("synthetic", 1024, 2048, 8),
            loading.judge_infer("synthetic", 8, 8, ignore_eos=True, chosen_logprobs=[-1.0] * 8),
            loading.judge_load("real", None, "x"), loading.judge_infer("real", 3, 8, ignore_eos=False)]
    mx = {r["what_en"]: r for r in loading.matrix(rows, "synthetic")}
    assert mx["Architecture registered and instantiated by vLLM"]["full_shape"] == "✅"
    assert mx["vLLM's loader reads the weights from the files (BitCPM4's stored layout: names and shapes must map)"][
        "full_shape"] == "✅"
    assert mx["KV cache sized for the shape and holds a full-length request"]["full_shape"] == "❌"
    assert mx["Forward pass runs end to end with finite scores (first request)"] == {
        "what_zh": mx["Forward pass runs end to end with finite scores (first request)"]["what_zh"],
        "what_en": "Forward pass runs end to end with finite scores (first request)", "full_shape": "✅", "real": "✅"}
    # dummy weights read no file and score nothing meaningful: those cells are not theirs to prove
    dummy = {r["what_en"]: r["full_shape"] for r in loading.matrix([loading.judge_load("dummy", None, "x"),
                                                                     loading.judge_infer("dummy", 8, 8, ignore_eos=True)],
                                                                    "dummy")}
    assert dummy["Architecture registered and instantiated by vLLM"] == "✅"
    assert dummy["vLLM's loader reads the weights from the files (BitCPM4's stored layout: names and shapes must map)"] == "—"
    assert dummy["Forward pass runs end to end with finite scores (first request)"] == "—"
    assert str(loading.full_shape_text("synthetic").en).startswith("synthetic checkpoint")
    assert set(loading.FULL_SHAPE_WHY) == {"synthetic", "dummy"}


def test_architecture_table_is_complete():
    rows = {r["key"]: r for r in loading.architecture(FULL)}
    for k in ("hidden_size", "num_attention_heads", "num_hidden_layers", "intermediate_size", "num_key_value_heads",
              "head_dim", "vocab_size", "max_position_embeddings", "rope_theta", "hidden_act", "rms_norm_eps",
              "tie_word_embeddings", "torch_dtype", "bos_token_id", "eos_token_id", "rope_type", "scale_emb",
              "parameters", "tied_effective"):
        assert k in rows, k
    assert rows["hidden_act"]["value"] == "silu" and rows["torch_dtype"]["value"] == "bfloat16"
    assert rows["bos_token_id"]["value"] == 1 and rows["eos_token_id"]["value"] == "[2, 73440]"
    assert rows["tie_word_embeddings"]["value"] is True and rows["tie_word_embeddings"]["source"] == "class default"
    assert rows["tied_effective"]["value"] == "—"  # flag only: no checkpoint to confirm
    assert loading.word(rows["tied_effective"]["source"]).zh == "无权重"
    assert rows["parameters"]["value"] == 433_873_920
    stand_in = {r["key"]: r for r in loading.architecture(STAND_IN)}
    assert stand_in["tied_effective"]["value"] is True and stand_in["tied_effective"]["source"].endswith("+ weights")


def test_document_claims():
    """The original's tie_word_embeddings False is refuted by the real architecture's files; the rest of its
    table agrees with them."""
    row = loading.judge_doc_tie(loading.tying(FULL), "models/bitcpm4-0.5b")
    assert row.scope == "document" and row.status == "fail" and "class default" in row.detail_en
    assert loading.judge_doc_tie({"flag": False, "flag_source": "config.json", "lm_head": True}, "x").status == "pass"
    from bitcpm_validation.model import config as mcfg

    arch = loading.judge_doc_architecture(mcfg.read_config(FULL), "models/bitcpm4-0.5b")
    assert arch.status == "pass", arch.detail_en
    wrong = loading.judge_doc_architecture(dict(mcfg.read_config(FULL), hidden_size=2048), "x")
    assert wrong.status == "fail" and "hidden_size: document 1024, files 2048" in wrong.detail_en


def test_config_needs_remote_code(tiny):
    cfg = loading.config_load(tiny)
    assert cfg["model_type"] is None and cfg["auto_map"]["AutoConfig"] == "configuration_minicpm.MiniCPMConfig"
    assert cfg["loaded"] and cfg["config_class"] == "MiniCPMConfig" and cfg["needs_remote_code"] is True
    row = loading.judge_config(cfg)
    assert row.status == "pass" and "trust_remote_code" in row.detail_en


# -- tokenizer ---------------------------------------------------------------------------------------------
def test_tokenizer_report_with_sentencepiece(tiny):
    tr = loading.tokenizer_report(tiny)
    assert tr["reference"].startswith("SentencePiece") and tr["has_tokenizer_model"]
    assert tr["base_vocab"] + len(tr["added_tokens"]) == tr["size"]
    config = json.loads((tiny / "config.json").read_text())
    assert loading.judge_tokenizer(tr, config).status == "pass"
    assert loading.judge_tokenizer(tr, dict(config, bos_token_id=5)).status == "fail"
    assert loading.judge_chat_template(tr).status == "pass"
    assert loading.judge_round_trip(tr).status == "pass"
    fid = loading.judge_fidelity(tr)
    # transformers 5.x rebuilds LlamaTokenizer (a leading "▁" after BOS): the first mismatch is named
    assert fid.status == "warn" and "at token 1" in fid.detail_en and "reference (SentencePiece" in fid.detail_en
    assert "第 1 个词元" in fid.detail_zh
    bad = next(r for r in tr["fidelity"] if not r["match"])
    assert bad["reference_piece_at"] != bad["engine_piece_at"]


def test_tokenizer_json_only_has_a_reference_and_the_override_fixes_it(json_only, tmp_path):
    """No tokenizer.model: tokenizer.json through `tokenizers` (+ BOS per add_bos_token) is the reference, the
    fidelity check is made (and warns on transformers 5.x), and the override gives the engine correct ids."""
    sp_ids = T.faithful_ids(STAND_IN, "Hello, my name is")
    tr = loading.tokenizer_report(json_only)
    assert tr["reference"] == "tokenizer.json (tokenizers)" and not tr["has_tokenizer_model"]
    assert tr["fidelity"][0]["reference_ids"] == sp_ids  # same encoding as SentencePiece, BOS included
    fid = loading.judge_fidelity(tr)
    assert fid.status == "warn" and "reference (tokenizer.json (tokenizers))" in fid.detail_en
    assert "lacks" not in fid.detail_en and "missing" not in fid.detail_en

    run = tmp_path / "run"
    dec = prompting.engine_tokenizer(_params_for(tmp_path, json_only), run)
    assert dec.path == run / "artifacts" / "faithful-tokenizer" / json_only.name, dec.en
    assert "tokenizer.json (tokenizers)" in dec.en and "lacks" not in dec.en
    dtr = loading.tokenizer_report(dec.path)
    dep = loading.judge_deployed_tokenizer(dtr, dec.en, dec.zh)
    assert dep.status == "pass", dep.detail_en
    assert T.engine_ids(dec.path, "Hello, my name is") == sp_ids
    # prompting is the one place a probe becomes engine input: the reference's ids
    assert prompting.feed_mode(json_only) == "faithful" and prompting.describe(json_only)["reference"].startswith("tokenizer.json")
    assert prompting.prompt_ids("Hello, my name is", json_only) == sp_ids
    assert prompting.decode(sp_ids, json_only) == "Hello, my name is"


def test_tokenizer_json_without_bos_post_processor(json_only, tmp_path):
    """facts §12: a tokenizer.json whose post-processor adds no BOS, with add_bos_token true: the engine gives
    no BOS and a spurious leading piece; the reference prepends BOS; the faithful copy gets a BOS post-processor."""
    j = json.loads((json_only / "tokenizer.json").read_text())
    j["post_processor"] = None
    (json_only / "tokenizer.json").write_text(json.dumps(j, ensure_ascii=False))
    sp_ids = T.faithful_ids(STAND_IN, "Hello, my name is")
    eng = T.engine_ids(json_only, "Hello, my name is")
    assert T.faithful_ids(json_only, "Hello, my name is") == sp_ids and sp_ids[0] == 1
    assert eng[0] != 1 and eng[1:] == sp_ids[2:]  # no BOS, "▁Hello" in place of "Hello"
    row = loading.judge_fidelity(loading.tokenizer_report(json_only))
    assert row.status == "warn" and f"at token 0: reference (tokenizer.json (tokenizers)) 1 '<s>' vs engine {eng[0]}" in row.detail_en
    dec = prompting.engine_tokenizer(_params_for(tmp_path, json_only), tmp_path / "run")
    assert dec.path is not None and T.engine_ids(dec.path, "Hello, my name is") == sp_ids
    assert json.loads((dec.path / "tokenizer.json").read_text())["post_processor"]["type"] == "TemplateProcessing"


def test_reference_that_cannot_follow_tokenizer_config(json_only):
    cfg = json.loads((json_only / "tokenizer_config.json").read_text())
    (json_only / "tokenizer_config.json").write_text(json.dumps(dict(cfg, bos_token="<nope>")))
    tr = loading.tokenizer_report(json_only)
    row = loading.judge_fidelity(tr)
    assert row.status == "not_run" and "bos_token '<nope>' is not in tokenizer.json" in row.detail_en


def test_deployed_tokenizer_with_engine_probe(tiny):
    tr = loading.tokenizer_report(tiny)
    dtr = dict(tr, fidelity=[dict(r, match=True) for r in tr["fidelity"]], fidelity_ok=True)
    probe = {"text": "Hello", "engine_ids": [1, 5], "reference_ids": [1, 5]}
    assert loading.judge_deployed_tokenizer(dtr, "d", "d", engine_probe=probe).status == "pass"
    wrong = loading.judge_deployed_tokenizer(dtr, "d", "d", engine_probe=dict(probe, engine_ids=[9, 5]))
    assert wrong.status == "fail" and "≠ reference" in wrong.detail_en


def test_tokenizer_that_does_not_load(tmp_path):
    tr = loading.tokenizer_report(tmp_path)  # no tokenizer files at all
    assert tr["error"]
    assert loading.judge_tokenizer(tr, {}).status == "fail"
    assert loading.judge_fidelity(tr).status == "not_run" and loading.judge_round_trip(tr).status == "not_run"


# -- prompting --------------------------------------------------------------------------------------------
def test_prompting_faithful_ids(tiny):
    f = T.FaithfulTokenizer(tiny)
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
    assert prompting.describe(tiny)["reference"].startswith("SentencePiece")


def test_prompting_engine_mode_without_any_tokenizer_file(tiny, tmp_path):
    d = tmp_path / "notok"
    shutil.copytree(tiny, d)
    (d / "tokenizer.model").unlink()
    (d / "tokenizer.json").unlink()
    assert prompting.feed_mode(d) == "engine" and prompting.describe(d)["mode"] == "engine"
    assert "neither tokenizer.model nor tokenizer.json" in prompting.describe(d)["en"]


def _params_for(tmp_path, model, override="auto"):
    import yaml

    from bitcpm_validation.params import load_params
    from bitcpm_validation.paths import PROJECT_ROOT

    y = {"profile": "test", "platform": "cpu", "prompts": str(PROJECT_ROOT / "params/prompts.yaml"),
         "model": {"path": str(model), "dummy_config": str(PROJECT_ROOT / "models/bitcpm4-0.5b")},
         "engine": {"dtype": "float32", "max_model_len": 256, "tokenizer_override": override}}
    p = tmp_path / f"p-{override}.yaml"
    p.write_text(yaml.safe_dump(y))
    return load_params(p)


def test_engine_tokenizer_decision_and_deployed_check(tiny, tmp_path):
    """One decision for the offline engine and the server (no engine started): auto writes the faithful
    tokenizer dir into the run where the model's own tokenizer differs from the reference; off never does."""
    from bitcpm_validation.engine import server

    run = tmp_path / "run"
    p = _params_for(tmp_path, tiny)
    tr = loading.tokenizer_report(tiny)
    assert not tr["fidelity_ok"]  # transformers 5.x: see test_tokenizer_report_with_sentencepiece
    dec = prompting.engine_tokenizer(p, run)
    assert dec.path == run / "artifacts" / "faithful-tokenizer" / tiny.name and "PreTrainedTokenizerFast" in dec.en
    assert dec.zh and "SentencePiece" in dec.zh
    kw = base.engine_kwargs(p, base.model_facts(p, "real", run))
    assert kw["tokenizer"] == str(dec.path)
    assert "tokenizer" not in base.engine_kwargs(p, base.model_facts(p, "real"))  # no run dir: the model's own
    line = server.display_command(server.serve_command(p, "real", port=1, run_dir=run))
    assert f"--tokenizer {dec.path}" in line
    assert base.run_dir_of(run / "evidence" / "02_loading.log") == run
    dep = loading.judge_deployed_tokenizer(loading.tokenizer_report(dec.path), dec.en, dec.zh)
    assert dep.status == "pass", dep.detail_en
    assert dep.detail_en.endswith(dec.en) and dep.detail_zh.endswith(dec.zh)
    off = prompting.engine_tokenizer(_params_for(tmp_path, tiny, "off"), run)
    assert off.path is None and "off" in off.en
    assert loading.judge_deployed_tokenizer(tr, off.en, off.zh).status == "fail"


# -- facts ----------------------------------------------------------------------------------------------------
def test_file_list_and_download_commands():
    files = {f["file"]: f for f in loading.file_list(STAND_IN)}
    assert files["model.safetensors"]["purpose_en"] == "weights (safetensors)"
    assert files["modeling_minicpm.py"]["purpose_zh"].startswith("MiniCPM")
    assert files["tokenizer.model"]["bytes"] == (STAND_IN / "tokenizer.model").stat().st_size
    cmds = dict(loading.download_commands("openbmb/BitCPM4-0.5B"))
    assert "git lfs clone https://huggingface.co/openbmb/BitCPM4-0.5B ./BitCPM4-0.5B" in cmds["Hugging Face: `git lfs`"]
    assert "snapshot_download('openbmb/BitCPM4-0.5B', local_dir='./BitCPM4-0.5B')" in cmds["ModelScope"]


def test_model_information(tmp_path):
    stand_in = _params_for(tmp_path, STAND_IN)
    info = {k[1]: v for k, v in loading.model_information(stand_in, FULL, "bfloat16")}
    assert info["Original model"][1].startswith("none (a stand-in)")
    assert "trained by this project" in info["Source"][1] and "openbmb/BitCPM4-0.5B" in info["Source"][1]
    assert info["Parameters (full-size architecture, derived from config)"] == "433,873,920"
    assert info["Parameters (weights loaded, counted from safetensors headers)"] == f"{loading.parameters_from_weights(STAND_IN):,}"
    assert info["Load dtype"] == "bfloat16"
    assert loading.repo_id(stand_in)[0] == "openbmb/BitCPM4-0.5B"


def test_parameters_from_weights(tiny):
    from bitcpm_validation.model import config as mcfg

    assert loading.parameters_from_weights(tiny) == mcfg.parameter_count(mcfg.read_config(tiny), False)
    assert loading.parameters_from_weights(FULL) is None


LOG = """=== engine start (dummy): vllm.LLM(**{...})
INFO 11-30 14:07:22 [api_utils.py:286] non-default args: {'model': 'x'}
INFO 11-30 14:07:23 [__init__.py:239] Automatically detected platform cpu.
INFO 11-30 14:07:43 [core.py:103] Initializing a V1 LLM engine (v0.18.0) with config: model='x', device_config=cpu, seed=0
WARNING 11-30 14:07:44 [cpu_worker.py:1] Failed to create oneDNN linear, fallback to torch linear
INFO 11-30 14:07:44 [cpu_worker.py:2] OMP threads binding of Process 1: reserve_cpu_num=1, core ids=[0]
WARNING 11-30 14:07:44 [cpu_worker.py:114] libtcmalloc is not found in LD_PRELOAD. For best performance, please follow the section `set LD_PRELOAD` in https://docs.vllm.ai/en/latest/getting_started/installation/cpu/ to setup required pre-loaded libraries.
INFO 11-30 14:07:45 [default_loader.py:501] Loading weights took 0.45 seconds
INFO 11-30 14:07:46 [kv_cache_utils.py:2327] CPU KV cache size: 524,288 tokens, Maximum concurrency for 2,048 tokens per request: 256.00x
INFO 11-30 14:07:50 [core.py:402] init engine (profile, create kv cache, warmup model) took 3.82 s
=== engine start (real): vllm.LLM(**{...})
INFO 11-30 14:09:00 [core.py:103] Initializing a V1 LLM engine (v0.18.0) with config: device_config=cpu
WARNING 11-30 14:09:01 [platform.py:749] Parameter '--disable-cascade-attn' is GPU-specific. Resetting to False for Ascend.
"""


def test_init_timeline_and_key_log_lines():
    dummy = loading.engine_log_section(LOG, "dummy")
    assert "engine start (real)" not in dummy
    tl = loading.init_timeline(dummy)
    assert [(e["key"], e["t_s"]) for e in tl] == [("start", 0.0), ("platform", 1.0), ("engine_core", 21.0), ("weights_done", 23.0),
                                                  ("kv_cache", 24.0), ("ready", 28.0)]
    keys = {r["key"]: r["line"] for r in loading.key_log_lines(dummy)}
    assert keys["platform"] == "Automatically detected platform cpu."
    assert "device_config=cpu" in keys["device_config"] and "oneDNN" in keys["onednn"]
    assert "reserve_cpu_num=1" in keys["threads"]
    assert keys["preload"] == "libtcmalloc is not found in LD_PRELOAD."  # a long message: its first sentence
    real = loading.key_log_lines(loading.engine_log_section(LOG, "real"))
    assert any(r["key"] == "reset" and "GPU-specific" in r["line"] for r in real)
    assert loading.init_timeline("no timestamps here") == []
    dump = ("INFO 01-01 00:00:00 [core.py:1] Initializing engine with config: " + ", ".join(f"k{i}=v{i}" for i in range(30))
            + ", structured_outputs_config=StructuredOutputsConfig(backend='auto', max_bytes=None), device_config=cpu, seed=0")
    line = {r["key"]: r["line"] for r in loading.key_log_lines(dump)}["device_config"]
    assert line == "device_config=cpu"  # the field, not a repr of the config around it


def test_registry_has_minicpm():
    reg = loading.registry()
    assert reg["registered"] and reg["module"].endswith("minicpm")
    assert loading.judge_registry(reg).status == "pass"


def test_architecture_source_and_unit_words_in_both_languages():
    from bitcpm_validation.report.display import in_lang

    assert in_lang(loading.word("derived"), "zh") == "推算" and in_lang(loading.word("class default"), "en") == "class default"
    assert loading.word("config.json") == "config.json" and loading.word(12) == 12  # file names and numbers as they are


def test_chinese_details_carry_no_english_words():
    """Issue 20.5: the Chinese details name sources, ids and token counts in the glossary's terms; identifiers
    (config.json, vocab_size, tie_word_embeddings=…) and `samples` stay as they are."""
    import sys
    from pathlib import Path as _P
    sys.path.insert(0, str(_P(__file__).resolve().parents[1]))
    from rendered_text import english_words
    from bitcpm_validation.report.display import note_html

    tie = loading.judge_tie({"flag": True, "flag_source": "class default", "lm_head": False, "tied": True})
    assert "类默认值" in tie.detail_zh and "class default" in tie.detail_en
    details = [tie.detail_zh, loading.judge_vocab(40, 40).detail_zh, loading.judge_vocab(48, 40).detail_zh,
               loading.judge_kv_capacity("real", 4096, 2048, 8).detail_zh,
               loading.judge_kv_capacity("real", None, 2048, 8).detail_zh]
    words = english_words("".join(f"<p>{note_html(d)}</p>" for d in details))
    assert words == {}, details


def test_engine_who_in_both_languages():
    shared = loading.engine_who({"engine": "shared vllm serve (pid 42, started by the runner)"})
    assert shared.zh == "本次运行共享的 `vllm serve`（进程 42，由运行器启动）" and shared.en.startswith("shared vllm serve (pid 42")
    assert loading.engine_who({}).zh == "本章的离线引擎"


# -- the engine-init timeline as a bar: fewer than three phases leave the timeline table alone ------------------
TIMELINE_LOG = """=== engine start (real): vllm.LLM(**{...})
INFO 11-30 14:07:22 [api_utils.py:286] non-default args: {'model': 'x'}
INFO 11-30 14:07:23 [__init__.py:239] Automatically detected platform cpu.
INFO 11-30 14:07:43 [core.py:103] Initializing a V1 LLM engine (v0.18.0) with config: model='x', device_config=cpu
INFO 11-30 14:07:45 [default_loader.py:501] Loading weights took 0.45 seconds
INFO 11-30 14:07:46 [kv_cache_utils.py:2327] CPU KV cache size: 524,288 tokens
INFO 11-30 14:07:50 [core.py:402] init engine (profile, create kv cache, warmup model) took 3.82 s
"""


def test_phases_end_at_each_milestone():
    tl = loading.init_timeline(loading.engine_log_section(TIMELINE_LOG, "real"))
    ph = loading.init_phases(tl)
    assert [(p["key"], p["start_s"], p["end_s"]) for p in ph] == [
        ("platform", 0.0, 1.0), ("engine_core", 1.0, 21.0), ("weights_done", 21.0, 23.0), ("kv_cache", 23.0, 24.0),
        ("ready", 24.0, 28.0)]
    assert ph[2]["label"].en == "weights loaded"


@pytest.mark.parametrize("lang", ("zh", "en"))
def test_one_bar_per_start_and_no_picture_below_three_phases(lang, tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tl = loading.init_timeline(loading.engine_log_section(TIMELINE_LOG, "real"))
    fig = loading.plot_init_timeline({"real": tl, "dummy": tl[:3]}, lang, tmp_path / "t.png")
    try:
        ax, = fig.axes
        assert len(ax.patches) == 5 + 2  # five phases of the real start, two of the shorter one
        assert [t.get_text() for t in ax.get_yticklabels()] == (["真实权重", "随机权重"] if lang == "zh" else ["real", "dummy"])
        assert (tmp_path / "t.png").stat().st_size > 0
    finally:
        plt.close(fig)
    assert loading.plot_init_timeline({"real": tl[:3]}, lang) is None  # two phases: the table says it
    assert loading.plot_init_timeline({}, lang) is None


def test_an_init_time_shared_with_another_start_says_so():
    """The shared server's init time, when the runner started the benchmark's server with it, carries a note in
    both languages; alone (or an offline engine) none."""
    from types import SimpleNamespace as NS

    together = loading.started_together(NS(info=NS(started_with="synthetic")))
    assert "benchmark's server" in together.en and "基准测试" in together.zh
    assert loading.started_together(NS(info=NS(started_with=""))) == ("", "")
    assert loading.started_together(NS()) == ("", "")
