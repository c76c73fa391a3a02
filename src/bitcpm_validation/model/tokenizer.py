"""Tokenizer files in the real repository's layout, and the reference ("faithful") tokenizer.

The real BitCPM4 tokenizer is a SentencePiece BPE model (byte fallback, split digits, no dummy
prefix) plus 8 added tokens at the end of the vocabulary (facts sheet §3). Engines tokenize with
transformers' AutoTokenizer, which may rebuild the pipeline (transformers 5.x with
tokenizer_class LlamaTokenizer). The reference every engine tokenizer is judged against
(`reference_tokenizer(dir)`):

- `tokenizer.model` present: SentencePiece's own encoding (`FaithfulTokenizer`: added tokens split out
  first, BOS/EOS per add_bos_token / add_eos_token);
- else `tokenizer.json`: encoded by the `tokenizers` library itself (`JsonTokenizer`), with the BOS/EOS
  rules of tokenizer_config.json (facts sheet §12).

`compare(dir, texts)` sets the engine's ids (`engine_ids`, AutoTokenizer as vLLM loads it) against the
reference's and finds where they part (`first_mismatch`).
"""
from __future__ import annotations

import functools
import io
import json
import re
from pathlib import Path
from typing import Iterable, Optional, Sequence, Union

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


# A bilingual sample for tokenizer fidelity: leading words, digits (split_digits), mixed scripts,
# full-width punctuation, repeated spaces, a chat turn with added tokens.
FIDELITY_SAMPLE = [
    "Hello, my name is",
    "What is the capital of France?",
    "What is 2+2? The answer is 4, not 2024.",
    "你好,请介绍一下你自己",
    "北京有什么好玩的景点?",
    "用中文写一首关于人工智能的诗",
    "Translate to Chinese: Hello, how are you? 你好，你好吗？",
    "  two leading spaces and\ttabs\nnew line",
    "<|im_start|>user\n你好<|im_end|>\n<|im_start|>assistant\n",
]


def _tokenizer_config(d: Path) -> dict:
    p = d / "tokenizer_config.json"
    return json.loads(p.read_text(encoding="utf-8")) if p.is_file() else {}


def _token_text(x) -> Optional[str]:
    """A special token as tokenizer_config writes it: a string or {"content": ...}."""
    if isinstance(x, dict):
        return x.get("content")
    return x if isinstance(x, str) else None


class FaithfulTokenizer:
    """SentencePiece's own encoding of a model directory, with the added tokens split out first
    (as the slow LlamaTokenizer does) and BOS/EOS per tokenizer_config's add_bos_token / add_eos_token."""

    kind = "SentencePiece (tokenizer.model)"

    def __init__(self, model_dir: str | Path):
        d = Path(model_dir)
        self.dir = d
        self.sp = _sp(d / "tokenizer.model")
        added_p = d / "added_tokens.json"
        self.added: dict[str, int] = json.loads(added_p.read_text(encoding="utf-8")) if added_p.is_file() else {}
        tcfg = _tokenizer_config(d)
        self.add_bos = bool(tcfg.get("add_bos_token", True))
        self.add_eos = bool(tcfg.get("add_eos_token", False))
        self.bos_id = self.sp.bos_id()
        self.eos_id = self.added.get(_token_text(tcfg.get("eos_token")) or "", self.sp.eos_id())
        self._split = (re.compile("(" + "|".join(re.escape(t) for t in sorted(self.added, key=len, reverse=True)) + ")")
                       if self.added else None)
        self.id_to_added = {i: t for t, i in self.added.items()}

    @property
    def vocab_size(self) -> int:
        return self.sp.get_piece_size() + len(self.added)

    def encode(self, text: str, add_bos: Optional[bool] = None) -> list[int]:
        """`add_bos` None: special tokens per tokenizer_config; False: none (the chat path)."""
        special = add_bos is None
        ids: list[int] = []
        if self.add_bos if special else add_bos:
            ids.append(self.bos_id)
        for part in (self._split.split(text) if self._split else [text]):
            if not part:
                continue
            if part in self.added:
                ids.append(self.added[part])
            else:
                ids.extend(self.sp.encode(part))
        if special and self.add_eos:
            ids.append(self.eos_id)
        return ids

    def encode_chat(self, messages: Sequence[dict], add_generation_prompt: bool = True) -> list[int]:
        """Chat template then encoding without BOS (what vLLM's chat endpoint sends by default)."""
        return self.encode(chatml(messages, add_generation_prompt), add_bos=False)

    def piece(self, i: int) -> str:
        return self.id_to_added.get(i) or self.sp.id_to_piece(i)

    def decode(self, ids: Sequence[int], skip_special: bool = True) -> str:
        out, run = [], []
        specials = {self.bos_id, self.sp.eos_id(), self.sp.unk_id()}
        for i in ids:
            if i in self.id_to_added or i in specials:
                if run:
                    out.append(self.sp.decode(run))
                    run = []
                if not skip_special:
                    out.append(self.piece(i))
            else:
                run.append(int(i))
        if run:
            out.append(self.sp.decode(run))
        return "".join(out)


# Tokenizer classes whose transformers implementation adds BOS (and not EOS) when tokenizer_config
# does not say: the slow and fast Llama tokenizers (add_bos_token=True, add_eos_token=False defaults).
_BOS_BY_DEFAULT = ("LlamaTokenizer", "LlamaTokenizerFast", "CodeLlamaTokenizer", "CodeLlamaTokenizerFast")


class JsonTokenizer:
    """tokenizer.json encoded by the `tokenizers` library itself (no transformers in between), with the
    BOS/EOS rules of tokenizer_config.json: add_bos_token / add_eos_token where it states them (the
    defaults of the Llama tokenizer classes where it names one), else tokenizer.json's own post-processor."""

    kind = "tokenizer.json (tokenizers)"

    def __init__(self, model_dir: str | Path):
        from tokenizers import Tokenizer

        d = Path(model_dir)
        self.dir = d
        self.tk = Tokenizer.from_file(str(d / "tokenizer.json"))
        tcfg = _tokenizer_config(d)
        llama = tcfg.get("tokenizer_class") in _BOS_BY_DEFAULT
        self.add_bos: Optional[bool] = tcfg.get("add_bos_token", True if llama else None)
        self.add_eos: Optional[bool] = tcfg.get("add_eos_token", False if llama else None)
        bos, eos = _token_text(tcfg.get("bos_token")), _token_text(tcfg.get("eos_token"))
        self.bos_id = self.tk.token_to_id(bos) if bos else None
        self.eos_id = self.tk.token_to_id(eos) if eos else None
        for flag, tok_id, name in ((self.add_bos, self.bos_id, "bos_token"), (self.add_eos, self.eos_id, "eos_token")):
            if flag and tok_id is None:
                raise ValueError(f"{d / 'tokenizer_config.json'}: add_{name.split('_')[0]}_token is true but {name} "
                                 f"{tcfg.get(name)!r} is not in tokenizer.json: fix tokenizer_config.json")

    @property
    def vocab_size(self) -> int:
        return self.tk.get_vocab_size(with_added_tokens=True)

    @property
    def rules_from_config(self) -> bool:
        """True when tokenizer_config (or its class) decides BOS/EOS; False: tokenizer.json's post-processor."""
        return self.add_bos is not None or self.add_eos is not None

    def encode(self, text: str, add_bos: Optional[bool] = None) -> list[int]:
        """`add_bos` None: special tokens per the rules above; False: none (the chat path)."""
        if add_bos is None and not self.rules_from_config:
            return list(self.tk.encode(text, add_special_tokens=True).ids)
        ids = list(self.tk.encode(text, add_special_tokens=False).ids)
        if (self.add_bos if add_bos is None else add_bos) and self.bos_id is not None:
            ids = [self.bos_id] + ids
        if add_bos is None and self.add_eos and self.eos_id is not None:
            ids.append(self.eos_id)
        return ids

    def encode_chat(self, messages: Sequence[dict], add_generation_prompt: bool = True) -> list[int]:
        return self.encode(chatml(messages, add_generation_prompt), add_bos=False)

    def piece(self, i: int) -> str:
        return self.tk.id_to_token(i) or f"<{i}>"

    def decode(self, ids: Sequence[int], skip_special: bool = True) -> str:
        return self.tk.decode(list(ids), skip_special_tokens=skip_special)

    def post_processor_json(self) -> Optional[dict]:
        """A TemplateProcessing post-processor (as JSON) that applies the tokenizer_config rules; None when
        tokenizer.json's own post-processor already decides (no rules in tokenizer_config)."""
        if not self.rules_from_config:
            return None
        single, pair, special = ["$A"], ["$A", "$B:1"], {}
        if self.add_bos and self.bos_id is not None:
            bos = self.tk.id_to_token(self.bos_id)
            single, pair = [bos] + single, [bos, "$A", bos, "$B:1"]
            special[bos] = self.bos_id
        if self.add_eos and self.eos_id is not None:
            eos = self.tk.id_to_token(self.eos_id)
            single, pair = single + [eos], pair[:2] + [eos] + pair[2:] + [eos]
            special[eos] = self.eos_id
        from tokenizers import processors

        pp = processors.TemplateProcessing(single=" ".join(single), pair=" ".join(pair),
                                           special_tokens=list(special.items()))
        return json.loads(pp.__getstate__())


Reference = Union[FaithfulTokenizer, JsonTokenizer]


def reference_kind(model_dir: str | Path) -> Optional[str]:
    """Which reference a directory has: SentencePiece (tokenizer.model), tokenizer.json, or None."""
    d = Path(model_dir)
    if (d / "tokenizer.model").is_file():
        return FaithfulTokenizer.kind
    if (d / "tokenizer.json").is_file():
        return JsonTokenizer.kind
    return None


@functools.lru_cache(maxsize=16)
def _reference_cached(model_dir: str, mtime: float) -> Reference:
    d = Path(model_dir)
    return FaithfulTokenizer(d) if (d / "tokenizer.model").is_file() else JsonTokenizer(d)


def reference_tokenizer(model_dir: str | Path) -> Reference:
    """THE reference encoding of a model directory (see the module docstring); raises FileNotFoundError
    naming both files when the directory has neither."""
    d = Path(model_dir).resolve()
    if reference_kind(d) is None:
        raise FileNotFoundError(f"{d} has neither tokenizer.model nor tokenizer.json: copy the tokenizer files from "
                                f"the model repository")
    stamp = max((p.stat().st_mtime for p in (d / "tokenizer.model", d / "tokenizer.json", d / "tokenizer_config.json")
                 if p.is_file()), default=0.0)
    return _reference_cached(str(d), stamp)


FAITHFUL_TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "special_tokens_map.json", "added_tokens.json")


def write_faithful_tokenizer_dir(model_dir: str | Path, out_dir: str | Path) -> Path:
    """A tokenizer-only directory that AutoTokenizer loads exactly as the reference encodes.

    Copies tokenizer.json, tokenizer.model, special_tokens_map.json, added_tokens.json, config.json (those
    present) and tokenizer_config.json with `tokenizer_class` set to `PreTrainedTokenizerFast` (chat_template,
    bos/eos, add_bos_token ... kept): transformers then loads tokenizer.json as is instead of rebuilding
    a LlamaTokenizer pipeline (Metaspace prepend_scheme "always", see the module docstring). Where
    tokenizer.json's post-processor does not add BOS/EOS as tokenizer_config says (a tokenizer.json-only
    directory), the copy gets a post-processor that does. Give the result to vLLM as `tokenizer=` /
    `vllm serve --tokenizer`. Returns out_dir."""
    import shutil

    src, out = Path(model_dir), Path(out_dir)
    if not (src / "tokenizer.json").is_file():
        raise FileNotFoundError(f"{src} has no tokenizer.json: nothing to load as is")
    out.mkdir(parents=True, exist_ok=True)
    for name in FAITHFUL_TOKENIZER_FILES:
        if (src / name).is_file():
            shutil.copyfile(src / name, out / name)
    ref = reference_tokenizer(src)
    as_json = JsonTokenizer(src)
    probe = "Hello"
    if as_json.tk.encode(probe, add_special_tokens=True).ids != ref.encode(probe):
        pp = as_json.post_processor_json()
        if pp is not None:
            doc = json.loads((src / "tokenizer.json").read_text(encoding="utf-8"))
            doc["post_processor"] = pp
            (out / "tokenizer.json").write_text(json.dumps(doc, ensure_ascii=False) + "\n", encoding="utf-8")
    tcfg = _tokenizer_config(src)
    tcfg["tokenizer_class"] = "PreTrainedTokenizerFast"
    tcfg.pop("auto_map", None)  # a remote tokenizer class would bypass tokenizer_class
    (out / "tokenizer_config.json").write_text(json.dumps(tcfg, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    _copy_model_config(src, out)
    return out


def _copy_model_config(src: Path, out: Path) -> None:
    """The model's config.json and the module its AutoConfig names go along: every vLLM process parses the
    tokenizer directory's config (vllm/tokenizers/registry.py `get_config`, 0.32.0) and, where there is none,
    fails, waits 2 s and fails again (transformers_utils/repo_utils.py `with_retry`) — 4 s of each server start.
    The tokenizer is still chosen by tokenizer_config.json's tokenizer_class, which a config does not override."""
    import shutil

    if not (src / "config.json").is_file():
        return
    shutil.copyfile(src / "config.json", out / "config.json")
    auto_config = (json.loads((src / "config.json").read_text(encoding="utf-8")).get("auto_map") or {}).get("AutoConfig")
    if isinstance(auto_config, str) and (src / f"{auto_config.split('.')[0]}.py").is_file():
        shutil.copyfile(src / f"{auto_config.split('.')[0]}.py", out / f"{auto_config.split('.')[0]}.py")


def faithful_ids(model_dir: str | Path, text: str, add_bos: Optional[bool] = None) -> list[int]:
    """The reference ids of `text` (SentencePiece where tokenizer.model ships, else tokenizer.json)."""
    return reference_tokenizer(model_dir).encode(text, add_bos)


@functools.lru_cache(maxsize=8)
def auto_tokenizer(model_dir: str):
    """transformers.AutoTokenizer on the directory, as vLLM loads it (trust_remote_code)."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(model_dir, trust_remote_code=True)


def engine_ids(model_dir: str | Path, text: str, add_special_tokens: bool = True) -> list[int]:
    tok = auto_tokenizer(str(Path(model_dir).resolve()))
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
    """Per text: reference ids, engine ids, first mismatch, pieces on both sides, which reference."""
    ref = reference_tokenizer(model_dir)
    tok = auto_tokenizer(str(Path(model_dir).resolve()))
    rows = []
    for t in texts:
        a, b = ref.encode(t), engine_ids(model_dir, t)
        mm = first_mismatch(a, b)
        rows.append({
            "text": t, "reference": ref.kind, "reference_ids": a, "engine_ids": b, "match": mm is None,
            "first_mismatch": mm,
            "reference_pieces": [ref.piece(i) for i in a],
            "engine_pieces": tok.convert_ids_to_tokens(b),
            "engine_tokenizer_class": type(tok).__name__,
        })
    return rows
