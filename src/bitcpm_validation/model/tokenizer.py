"""Tokenizer files in the real repository's layout, and the "faithful" tokenizer.

The real BitCPM4 tokenizer is a SentencePiece BPE model (byte fallback, split digits, no dummy
prefix) plus 8 added tokens at the end of the vocabulary (facts sheet §3). Engines tokenize with
transformers' AutoTokenizer, which may rebuild the pipeline (transformers 5.x with
tokenizer_class LlamaTokenizer): `faithful_ids` gives the ids exactly as SentencePiece encodes
(added tokens split out first, BOS per add_bos_token); `engine_ids` gives what AutoTokenizer
produces; `first_mismatch` finds where they part.
"""
from __future__ import annotations

import functools
import io
import json
import re
from pathlib import Path
from typing import Iterable, Optional, Sequence

ADDED_TOKENS = [
    "<|im_end|>", "<|im_start|>", "<|tool_call|>", "<|execute_start|>",
    "<|execute_end|>", "<|fim_prefix|>", "<|fim_middle|>", "<|fim_suffix|>",
]

# ChatML, as MiniCPM's tokenizer_config.json (no BOS in the template).
CHAT_TEMPLATE = (
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + "
    "'<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


def chatml(messages: Sequence[dict], add_generation_prompt: bool = True) -> str:
    """The chat template rendered in Python (same string as CHAT_TEMPLATE gives)."""
    s = "".join(f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n" for m in messages)
    return s + ("<|im_start|>assistant\n" if add_generation_prompt else "")


def train_sentencepiece(lines: Iterable[str], model_path: str | Path, vocab_size: int = 2000) -> Path:
    """Train a SentencePiece BPE model like MiniCPM's (byte fallback, split digits, no dummy prefix,
    identity normalisation). Deterministic for the same input (single thread)."""
    import sentencepiece as spm

    buf = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(list(lines)),
        model_writer=buf,
        model_type="bpe",
        vocab_size=vocab_size,
        hard_vocab_limit=False,
        byte_fallback=True,
        split_digits=True,
        add_dummy_prefix=False,
        normalization_rule_name="identity",
        remove_extra_whitespaces=False,
        allow_whitespace_only_pieces=True,
        character_coverage=1.0,
        unk_id=0, bos_id=1, eos_id=2, pad_id=-1,
        unk_piece="<unk>", bos_piece="<s>", eos_piece="</s>",
        num_threads=1,
        minloglevel=2,
    )
    p = Path(model_path)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(buf.getvalue())
    return p


def _sp(model_path: str | Path):
    import sentencepiece as spm

    return spm.SentencePieceProcessor(model_file=str(model_path))


def tokenizer_json_from_sp(model_path: str | Path):
    """A `tokenizers.Tokenizer` converted from the SentencePiece model, as transformers'
    LlamaConverter (legacy) builds it: BPE with byte fallback, normalizer Replace(' ', '▁') (no
    Prepend: add_dummy_prefix is false), no pre-tokenizer, BOS post-processor, the 8 added tokens."""
    from tokenizers import AddedToken, Tokenizer, decoders, normalizers, processors
    from tokenizers.models import BPE
    from transformers.tokenization_utils_base import generate_merges

    sp = _sp(model_path)
    vocab = {sp.id_to_piece(i): i for i in range(sp.get_piece_size())}
    merges = generate_merges(vocab)
    tok = Tokenizer(BPE(vocab, merges, unk_token="<unk>", fuse_unk=True, byte_fallback=True))
    tok.normalizer = normalizers.Sequence([normalizers.Replace(" ", "▁")])
    tok.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse()])
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", 1)]
    )
    tok.add_special_tokens([AddedToken(t, normalized=False, special=True) for t in ["<unk>", "<s>", "</s>"]])
    tok.add_special_tokens([AddedToken(t, normalized=False, special=True) for t in ADDED_TOKENS])
    return tok


def write_tokenizer_files(out_dir: str | Path, sp_model: str | Path, model_max_length: int = 32768) -> dict[str, int]:
    """Write tokenizer.model, tokenizer.json, tokenizer_config.json, special_tokens_map.json,
    added_tokens.json into out_dir. Returns {added token: id} (ids follow the base pieces)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    sp_bytes = Path(sp_model).read_bytes()
    (out / "tokenizer.model").write_bytes(sp_bytes)
    n = _sp(out / "tokenizer.model").get_piece_size()
    added = {t: n + i for i, t in enumerate(ADDED_TOKENS)}
    tok = tokenizer_json_from_sp(out / "tokenizer.model")
    assert all(tok.token_to_id(t) == i for t, i in added.items()), "added tokens must follow the base pieces"
    tok.save(str(out / "tokenizer.json"))

    def at(content, special=True):
        return {"content": content, "lstrip": False, "normalized": False, "rstrip": False, "single_word": False, "special": special}

    decoder = {"0": at("<unk>"), "1": at("<s>"), "2": at("</s>")}
    decoder.update({str(i): at(t) for t, i in added.items()})
    tcfg = {
        "add_bos_token": True,
        "add_eos_token": False,
        "added_tokens_decoder": decoder,
        "additional_special_tokens": ADDED_TOKENS,
        "bos_token": "<s>",
        "chat_template": CHAT_TEMPLATE,
        "clean_up_tokenization_spaces": False,
        "eos_token": "<|im_end|>",
        "legacy": True,
        "model_max_length": model_max_length,
        "pad_token": None,
        "sp_model_kwargs": {},
        "spaces_between_special_tokens": False,
        "tokenizer_class": "LlamaTokenizer",
        "unk_token": "<unk>",
        "use_default_system_prompt": False,
    }
    (out / "tokenizer_config.json").write_text(json.dumps(tcfg, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    stm = {
        "additional_special_tokens": ADDED_TOKENS,
        "bos_token": at("<s>"), "eos_token": at("<|im_end|>"), "unk_token": at("<unk>"),
    }
    for v in stm.values():
        if isinstance(v, dict):
            v.pop("special", None)
    (out / "special_tokens_map.json").write_text(json.dumps(stm, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    (out / "added_tokens.json").write_text(json.dumps(added, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    return added


class FaithfulTokenizer:
    """SentencePiece's own encoding of a model directory, with the added tokens split out first
    (as the slow LlamaTokenizer does) and BOS per tokenizer_config's add_bos_token."""

    def __init__(self, model_dir: str | Path):
        d = Path(model_dir)
        self.dir = d
        self.sp = _sp(d / "tokenizer.model")
        self.added: dict[str, int] = json.loads((d / "added_tokens.json").read_text(encoding="utf-8"))
        tcfg = json.loads((d / "tokenizer_config.json").read_text(encoding="utf-8"))
        self.add_bos = bool(tcfg.get("add_bos_token", True))
        self.bos_id = self.sp.bos_id()
        self.eos_id = self.added.get("<|im_end|>", self.sp.eos_id())
        self._split = re.compile("(" + "|".join(re.escape(t) for t in sorted(self.added, key=len, reverse=True)) + ")")
        self.id_to_added = {i: t for t, i in self.added.items()}

    @property
    def vocab_size(self) -> int:
        return self.sp.get_piece_size() + len(self.added)

    def encode(self, text: str, add_bos: Optional[bool] = None) -> list[int]:
        ids: list[int] = []
        if self.add_bos if add_bos is None else add_bos:
            ids.append(self.bos_id)
        for part in self._split.split(text):
            if not part:
                continue
            if part in self.added:
                ids.append(self.added[part])
            else:
                ids.extend(self.sp.encode(part))
        return ids

    def encode_chat(self, messages: Sequence[dict], add_generation_prompt: bool = True) -> list[int]:
        """Chat template then encoding without BOS (what vLLM's chat endpoint sends by default)."""
        return self.encode(chatml(messages, add_generation_prompt), add_bos=False)

    def decode(self, ids: Sequence[int], skip_special: bool = True) -> str:
        out, run = [], []
        specials = {self.bos_id, self.sp.eos_id(), self.sp.unk_id()}
        for i in ids:
            if i in self.id_to_added or i in specials:
                if run:
                    out.append(self.sp.decode(run))
                    run = []
                if not skip_special:
                    out.append(self.id_to_added.get(i) or self.sp.id_to_piece(i))
            else:
                run.append(int(i))
        if run:
            out.append(self.sp.decode(run))
        return "".join(out)


FAITHFUL_TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "special_tokens_map.json", "added_tokens.json")


def write_faithful_tokenizer_dir(model_dir: str | Path, out_dir: str | Path) -> Path:
    """A tokenizer-only directory that AutoTokenizer loads exactly as SentencePiece encodes.

    Copies tokenizer.json, tokenizer.model, special_tokens_map.json, added_tokens.json (those present)
    and tokenizer_config.json with `tokenizer_class` set to `PreTrainedTokenizerFast` (chat_template,
    bos/eos, add_bos_token ... kept): transformers then loads tokenizer.json as is instead of rebuilding
    a LlamaTokenizer pipeline (Metaspace prepend_scheme "always", see the module docstring). Give the
    result to vLLM as `tokenizer=` / `vllm serve --tokenizer`. Returns out_dir."""
    import shutil

    src, out = Path(model_dir), Path(out_dir)
    if not (src / "tokenizer.json").is_file():
        raise FileNotFoundError(f"{src} has no tokenizer.json: nothing to load as is")
    out.mkdir(parents=True, exist_ok=True)
    for name in FAITHFUL_TOKENIZER_FILES:
        if (src / name).is_file():
            shutil.copyfile(src / name, out / name)
    tcfg = {}
    if (src / "tokenizer_config.json").is_file():
        tcfg = json.loads((src / "tokenizer_config.json").read_text(encoding="utf-8"))
    tcfg["tokenizer_class"] = "PreTrainedTokenizerFast"
    tcfg.pop("auto_map", None)  # a remote tokenizer class would bypass tokenizer_class
    (out / "tokenizer_config.json").write_text(json.dumps(tcfg, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    return out


@functools.lru_cache(maxsize=8)
def _faithful(model_dir: str) -> FaithfulTokenizer:
    return FaithfulTokenizer(model_dir)


def faithful_ids(model_dir: str | Path, text: str, add_bos: Optional[bool] = None) -> list[int]:
    return _faithful(str(Path(model_dir).resolve())).encode(text, add_bos)


@functools.lru_cache(maxsize=8)
def engine_tokenizer(model_dir: str):
    """transformers.AutoTokenizer on the directory, as vLLM loads it (trust_remote_code)."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(model_dir, trust_remote_code=True)


def engine_ids(model_dir: str | Path, text: str, add_special_tokens: bool = True) -> list[int]:
    tok = engine_tokenizer(str(Path(model_dir).resolve()))
    return list(tok(text, add_special_tokens=add_special_tokens)["input_ids"])


def first_mismatch(a: Sequence[int], b: Sequence[int]) -> Optional[dict]:
    """None when equal, else {index, a, b} (a/b: the id at index, or None past the end)."""
    for i in range(max(len(a), len(b))):
        x = a[i] if i < len(a) else None
        y = b[i] if i < len(b) else None
        if x != y:
            return {"index": i, "a": x, "b": y}
    return None


def compare(model_dir: str | Path, texts: Iterable[str]) -> list[dict]:
    """Per text: faithful ids, engine ids, first mismatch (status "fail" when they differ), pieces."""
    f = _faithful(str(Path(model_dir).resolve()))
    tok = engine_tokenizer(str(Path(model_dir).resolve()))
    rows = []
    for t in texts:
        a, b = f.encode(t), engine_ids(model_dir, t)
        mm = first_mismatch(a, b)
        rows.append({
            "text": t, "faithful_ids": a, "engine_ids": b, "match": mm is None, "first_mismatch": mm,
            "status": "pass" if mm is None else "fail",
            "faithful_pieces": [f.id_to_added.get(i) or f.sp.id_to_piece(i) for i in a],
            "engine_pieces": tok.convert_ids_to_tokens(b),
            "engine_tokenizer_class": type(tok).__name__,
        })
    return rows
