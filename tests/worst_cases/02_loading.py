"""Inputs that drive each loading check to its worst status (see tests/worst_cases/__init__.py). Where the chapter
measures files (config, tokenizer, chat template, round trip), the measurement runs on a faulty model directory
written here: a tokenizer.json that cannot encode some letters and has no chat template, an auto_map naming remote
code the directory does not ship."""
import json
import tempfile
from pathlib import Path

from bitcpm_validation.chapters import loading as L

CFG = {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 1, "num_attention_heads": 4,
       "num_key_value_heads": 2, "head_dim": 16, "vocab_size": 40, "max_position_embeddings": 4096,
       "torch_dtype": "bfloat16"}
TR_OK = {"class": "LlamaTokenizerFast", "config_class": "LlamaTokenizer", "size": 40, "added_tokens": {},
         "bos": "<s>", "eos": "</s>", "bos_id": 1, "eos_id": 2, "reference": "tokenizer.json (tokenizers)"}
MISMATCH = {"text": "Hello, my name is", "match": False, "first_mismatch": {"index": 0, "a": 1, "b": 304},
            "reference_ids": [1, 480, 363], "engine_ids": [304, 480, 363], "reference_piece_at": "<s>",
            "engine_piece_at": "▁"}



def _lossy_tokenizer_dir() -> Path:
    """A model directory with only a tokenizer.json (a BPE over single characters without 'k', 'x', 'j', 'z' and no
    unknown token, so it drops them, as a byte-level BPE missing some bytes does) and no chat template: the
    MiniCPM directory of issue 23."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers

    d = Path(tempfile.mkdtemp(prefix="bitcpm-worst-tokenizer-"))
    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2, "▁": 3}
    for c in sorted(set("".join(L.ROUND_TRIP.values()).replace(" ", "")) - set("kxjz")):
        vocab.setdefault(c, len(vocab))
        vocab.setdefault("▁" + c, len(vocab))
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token=None))
    tok.pre_tokenizer, tok.decoder = pre_tokenizers.Metaspace(), decoders.Metaspace()
    tok.save(str(d / "tokenizer.json"))
    (d / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": "PreTrainedTokenizerFast", "bos_token": "<s>",
                                                         "eos_token": "</s>", "add_bos_token": True}))
    return d


def _config_naming_missing_remote_code() -> Path:
    """config.json with no model_type and an auto_map naming configuration_minicpm.py, which is not shipped."""
    d = Path(tempfile.mkdtemp(prefix="bitcpm-worst-config-"))
    (d / "config.json").write_text(json.dumps({"architectures": ["MiniCPMForCausalLM"],
                                               "auto_map": {"AutoConfig": "configuration_minicpm.MiniCPMConfig"},
                                               **CFG}))
    return d


CASES = {
    # an architecture this vLLM does not register, looked up in vLLM's own registry
    "registry": lambda: L.judge_registry(L.registry("BitCPMNoSuchArchitectureForCausalLM")),
    "config": lambda: L.judge_config(L.config_load(_config_naming_missing_remote_code())),
    # the tokenizer files say EOS is "</s>" = 2; config.json says the engine stops on 7 and 39
    "tokenizer": lambda: L.judge_tokenizer(L.tokenizer_report(_lossy_tokenizer_dir()), {"bos_token_id": 1,
                                                                                        "eos_token_id": [7, 39]}),
    "chat_template": lambda: L.judge_chat_template(L.tokenizer_report(_lossy_tokenizer_dir())),
    "round_trip": lambda: L.judge_round_trip(L.tokenizer_report(_lossy_tokenizer_dir())),
    "tokenizer_fidelity": lambda: L.judge_fidelity(dict(TR_OK, fidelity=[MISMATCH], fidelity_ok=False)),
    "engine_tokenizer_deployed": lambda: L.judge_deployed_tokenizer(
        dict(TR_OK, fidelity=[MISMATCH], fidelity_ok=False, chat_template_is_chatml=True), "no override", "不替换"),
    "vocab_vs_tokenizer": lambda: L.judge_vocab(40, 48),
    "tie_vs_lm_head": lambda: L.judge_tie({"flag": True, "flag_source": "class default", "lm_head": True}),
    "weights_match_config": lambda: L.judge_weights(CFG, {"model.embed_tokens.weight": {"dtype": "BF16", "shape": [40, 64]}}),
    "load": lambda: L.judge_load("real", "EngineError: vLLM engine failed to start"),
    # the synthetic checkpoint's forward pass at the full shape gave a NaN score (the real weights' empty answer:
    # tests/chapters/test_loading.py)
    "infer": lambda: L.judge_infer("synthetic", 8, 8, ignore_eos=True, chosen_logprobs=[-1.0] * 7 + [float("nan")]),
    "kv_capacity": lambda: L.judge_kv_capacity("real", 1024, 2048, 8),
    "doc_tie_word_embeddings": lambda: L.judge_doc_tie({"flag": True, "flag_source": "class default", "lm_head": None},
                                                       "models/bitcpm4-0.5b"),
    "doc_architecture": lambda: L.judge_doc_architecture(CFG, "models/x"),
}
