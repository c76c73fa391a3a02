"""Tokenizer files in the real layout; the faithful tokenizer; the engine tokenizer check."""
from __future__ import annotations

import json

import pytest

from bitcpm_validation.model import tokenizer as T
from bitcpm_validation.paths import MODELS_DIR

STAND_IN = MODELS_DIR / "stand-in"
TEXTS = [
    "What is the capital of France?", "Hello, my name is", "Write a short poem about AI:",
    "你好，请介绍一下你自己", "北京有什么好玩的景点？", "a  b\n\n12345 x", "Translate to Chinese: Hello, how are you?",
    "zebra quokka 🙂 ünïcödé",  # byte fallback
]


def test_layout_and_added_tokens_at_the_end():
    d = STAND_IN
    f = T.FaithfulTokenizer(d)
    n = f.sp.get_piece_size()
    added = json.loads((d / "added_tokens.json").read_text())
    assert list(added) == T.ADDED_TOKENS
    assert list(added.values()) == list(range(n, n + 8))
    cfg = json.loads((d / "config.json").read_text())
    assert cfg["vocab_size"] == n + 8 and cfg["eos_token_id"] == [2, added["<|im_end|>"]]
    tc = json.loads((d / "tokenizer_config.json").read_text())
    assert tc["tokenizer_class"] == "LlamaTokenizer" and tc["add_bos_token"] is True and tc["eos_token"] == "<|im_end|>"
    assert f.sp.id_to_piece(0) == "<unk>" and f.sp.id_to_piece(1) == "<s>" and f.sp.id_to_piece(2) == "</s>"
    stm = json.loads((d / "special_tokens_map.json").read_text())
    assert stm["additional_special_tokens"] == T.ADDED_TOKENS


def test_sentencepiece_model_settings():
    from sentencepiece import sentencepiece_model_pb2 as pb

    m = pb.ModelProto()
    m.ParseFromString((STAND_IN / "tokenizer.model").read_bytes())
    assert m.trainer_spec.model_type == pb.TrainerSpec.BPE
    assert m.trainer_spec.byte_fallback and m.trainer_spec.split_digits
    assert not m.normalizer_spec.add_dummy_prefix
    assert sum(1 for p in m.pieces if p.type == pb.ModelProto.SentencePiece.BYTE) == 256


def test_chat_template_is_chatml():
    from jinja2 import Template

    msgs = [{"role": "user", "content": "What is 2+2?"}]
    assert Template(T.CHAT_TEMPLATE).render(messages=msgs, add_generation_prompt=True) == T.chatml(msgs)
    assert T.chatml(msgs) == "<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n"


def test_tokenizer_json_reproduces_sentencepiece():
    """tokenizer.json, loaded as itself (tokenizers / PreTrainedTokenizerFast(tokenizer_file=...)),
    encodes exactly as SentencePiece (+BOS)."""
    from tokenizers import Tokenizer

    tk = Tokenizer.from_file(str(STAND_IN / "tokenizer.json"))
    for t in TEXTS + [T.chatml([{"role": "user", "content": "你好"}])]:
        assert tk.encode(t).ids == T.faithful_ids(STAND_IN, t), t


def test_faithful_encode_decode_roundtrip():
    f = T.FaithfulTokenizer(STAND_IN)
    for t in TEXTS:
        ids = f.encode(t)
        assert ids[0] == 1 and f.decode(ids) == t
    chat = f.encode_chat([{"role": "user", "content": "你好"}])
    assert chat[0] == f.added["<|im_start|>"] and 1 not in chat  # the chat template emits no BOS


def test_first_mismatch():
    assert T.first_mismatch([1, 2, 3], [1, 2, 3]) is None
    assert T.first_mismatch([1, 2, 3], [1, 5, 3]) == {"index": 1, "a": 2, "b": 5}
    assert T.first_mismatch([1, 2], [1, 2, 3]) == {"index": 2, "a": None, "b": 3}


def test_engine_tokenizer_is_compared_not_trusted():
    """What transformers' AutoTokenizer does with the directory is measured, never assumed: every
    text gets a row; a mismatch is reported with its index and the pieces on both sides."""
    rows = T.compare(STAND_IN, TEXTS)
    assert len(rows) == len(TEXTS)
    for r in rows:
        assert r["match"] == (r["reference_ids"] == r["engine_ids"]) and r["reference"].startswith("SentencePiece")
        if not r["match"]:
            i = r["first_mismatch"]["index"]
            assert r["reference_ids"][:i] == r["engine_ids"][:i]
    # Recorded finding for transformers 5.19 (see models/README.md): AutoTokenizer rebuilds the
    # pipeline with a Metaspace pre-tokenizer (prepend_scheme=always) and inserts a "▁" SentencePiece
    # would not produce. If a future transformers fixes it, this documents the change.
    import transformers

    if transformers.__version__.startswith("5.19"):
        assert not rows[0]["match"] and rows[0]["engine_pieces"][1].startswith("▁")


def test_faithful_tokenizer_dir_loads_like_sentencepiece(tmp_path):
    """The workaround: the same tokenizer.json with tokenizer_class PreTrainedTokenizerFast is loaded as is
    by AutoTokenizer (no engine) and encodes exactly like SentencePiece (BOS included); the chat template
    still renders ChatML; the model directory's own tokenizer is left as it is."""
    out = T.write_faithful_tokenizer_dir(STAND_IN, tmp_path / "ft")
    assert out == tmp_path / "ft"
    assert {p.name for p in out.iterdir()} == {"tokenizer.json", "tokenizer.model", "special_tokens_map.json",
                                               "added_tokens.json", "tokenizer_config.json", "config.json",
                                               "configuration_minicpm.py"}
    # vLLM parses the tokenizer directory's config in every process (a missing one costs 2 s of retry each)
    from transformers import AutoConfig

    assert AutoConfig.from_pretrained(str(out), trust_remote_code=True).model_type == "minicpm"
    assert (out / "tokenizer.json").read_bytes() == (STAND_IN / "tokenizer.json").read_bytes()
    src_cfg = json.loads((STAND_IN / "tokenizer_config.json").read_text())
    cfg = json.loads((out / "tokenizer_config.json").read_text())
    assert cfg["tokenizer_class"] == "PreTrainedTokenizerFast" and src_cfg["tokenizer_class"] == "LlamaTokenizer"
    for k in ("chat_template", "bos_token", "eos_token", "add_bos_token"):
        assert cfg[k] == src_cfg[k], k
    rows = T.compare(out, T.FIDELITY_SAMPLE + TEXTS)
    assert all(r["match"] for r in rows), [(r["text"], r["first_mismatch"]) for r in rows if not r["match"]]
    assert all(r["engine_ids"][0] == 1 for r in rows)  # BOS per add_bos_token
    tok = T.auto_tokenizer(str(out.resolve()))
    msgs = [{"role": "user", "content": "你好"}]
    rendered = tok.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
    assert rendered == T.chatml(msgs)
    assert list(tok(rendered, add_special_tokens=False)["input_ids"]) == T.FaithfulTokenizer(STAND_IN).encode_chat(msgs)
    assert tok.decode(T.faithful_ids(STAND_IN, "北京是中国的首都"), skip_special_tokens=True) == "北京是中国的首都"


def test_faithful_tokenizer_dir_needs_tokenizer_json(tmp_path):
    with pytest.raises(FileNotFoundError, match="no tokenizer.json"):
        T.write_faithful_tokenizer_dir(tmp_path, tmp_path / "out")


def test_reference_is_tokenizer_json_without_tokenizer_model(tmp_path):
    """Without tokenizer.model the reference is tokenizer.json through `tokenizers`, BOS/EOS per tokenizer_config."""
    import shutil

    d = tmp_path / "json-only"
    d.mkdir()
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json"):
        shutil.copy(STAND_IN / name, d / name)
    ref = T.reference_tokenizer(d)
    assert isinstance(ref, T.JsonTokenizer) and ref.kind == "tokenizer.json (tokenizers)"
    sp = T.FaithfulTokenizer(STAND_IN)
    for t in TEXTS + [T.chatml([{"role": "user", "content": "你好"}])]:
        assert ref.encode(t) == sp.encode(t), t
        assert ref.encode(t, add_bos=False) == sp.encode(t, add_bos=False), t
        assert ref.decode(ref.encode(t), skip_special=False).replace("<s>", "", 1) == t
    # add_eos_token true appends EOS (the tokenizer_config's eos_token); add_bos_token false drops BOS
    cfg = json.loads((d / "tokenizer_config.json").read_text())
    (d / "tokenizer_config.json").write_text(json.dumps(dict(cfg, add_bos_token=False, add_eos_token=True)))
    ref2 = T.reference_tokenizer(d)
    ids = ref2.encode("Hello")
    assert ids[0] != 1 and ids[-1] == ref2.tk.token_to_id("<|im_end|>")
    # no rules in tokenizer_config and no Llama class: tokenizer.json's own post-processor decides
    (d / "tokenizer_config.json").write_text(json.dumps({k: v for k, v in cfg.items()
                                                        if k not in ("add_bos_token", "add_eos_token", "tokenizer_class")}))
    assert T.reference_tokenizer(d).encode("Hello") == sp.encode("Hello")  # the stand-in's post-processor adds BOS
    # neither file: one line naming both
    with pytest.raises(FileNotFoundError, match="neither tokenizer.model nor tokenizer.json"):
        T.reference_tokenizer(tmp_path)


def test_add_bos_without_bos_token_is_a_clear_error(tmp_path):
    import shutil

    shutil.copy(STAND_IN / "tokenizer.json", tmp_path / "tokenizer.json")
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({"add_bos_token": True, "bos_token": "<nope>"}))
    with pytest.raises(ValueError, match="add_bos_token is true but bos_token '<nope>' is not in tokenizer.json"):
        T.JsonTokenizer(tmp_path)
