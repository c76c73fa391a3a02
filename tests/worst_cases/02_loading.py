"""Inputs that drive each loading check to its worst status (see tests/worst_cases/__init__.py)."""
from bitcpm_validation.chapters import loading as L

CFG = {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 1, "num_attention_heads": 4,
       "num_key_value_heads": 2, "head_dim": 16, "vocab_size": 40, "max_position_embeddings": 4096,
       "torch_dtype": "bfloat16"}
TR_OK = {"class": "LlamaTokenizerFast", "config_class": "LlamaTokenizer", "size": 40, "added_tokens": {},
         "bos": "<s>", "eos": "</s>", "bos_id": 1, "eos_id": 2, "reference": "tokenizer.json (tokenizers)"}
MISMATCH = {"text": "Hello, my name is", "match": False, "first_mismatch": {"index": 0, "a": 1, "b": 304},
            "reference_ids": [1, 480, 363], "engine_ids": [304, 480, 363], "reference_piece_at": "<s>",
            "engine_piece_at": "▁"}

CASES = {
    "registry": lambda: L.judge_registry({"architecture": "MiniCPMForCausalLM", "registered": False,
                                          "architectures_known": 300}),
    "config": lambda: L.judge_config({"loaded": False, "error": "ValueError: Unrecognized model"}),
    "tokenizer": lambda: L.judge_tokenizer(dict(TR_OK, eos_id=7, eos="<x>"), {"bos_token_id": 1, "eos_token_id": [2, 39]}),
    "chat_template": lambda: L.judge_chat_template({"chat_template_present": False, "chat_template_is_chatml": False}),
    "round_trip": lambda: L.judge_round_trip({"round_trips": [
        {"lang": "en", "text": "a b", "engine_round_trip": " a b", "engine_ok": False}]}),
    "tokenizer_fidelity": lambda: L.judge_fidelity(dict(TR_OK, fidelity=[MISMATCH], fidelity_ok=False)),
    "engine_tokenizer_deployed": lambda: L.judge_deployed_tokenizer(
        dict(TR_OK, fidelity=[MISMATCH], fidelity_ok=False, chat_template_is_chatml=True), "no override", "不替换"),
    "vocab_vs_tokenizer": lambda: L.judge_vocab(40, 48),
    "tie_vs_lm_head": lambda: L.judge_tie({"flag": True, "flag_source": "class default", "lm_head": True}),
    "weights_match_config": lambda: L.judge_weights(CFG, {"model.embed_tokens.weight": {"dtype": "BF16", "shape": [40, 64]}}),
    "max_model_len": lambda: L.judge_max_model_len(8192, CFG),
    "load": lambda: L.judge_load("real", "EngineError: vLLM engine failed to start"),
    "infer": lambda: L.judge_infer("dummy", 3, 8, ignore_eos=True),
    "kv_capacity": lambda: L.judge_kv_capacity("real", 1024, 2048, 8),
    "doc_tie_word_embeddings": lambda: L.judge_doc_tie({"flag": True, "flag_source": "class default", "lm_head": None},
                                                       "models/bitcpm4-0.5b"),
    "doc_architecture": lambda: L.judge_doc_architecture(CFG, "models/x"),
}
