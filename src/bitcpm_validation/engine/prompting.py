"""THE way every chapter turns a probe prompt into the token ids given to the engine.

Why token ids and not text: transformers 5.x (what the CPU build of vLLM pulls in) rebuilds a
`LlamaTokenizer` directory's pipeline itself (a Metaspace pre-tokenizer with prepend_scheme
"always"): the engine's tokenizer then puts a "▁" in front of the first word, which the model's
tokenizer (SentencePiece, add_dummy_prefix false) never produced in training. Feeding text would
measure that tokenizer, not the model. So prompts are encoded by the directory's **reference**
tokenizer (model.tokenizer.reference_tokenizer): SentencePiece's own encoding where `tokenizer.model`
ships, else `tokenizer.json` through the `tokenizers` library itself; added tokens (`<|im_start|>` ...)
split out first, BOS/EOS per tokenizer_config (facts sheet §3, §12). The loading chapter checks the
engine's tokenizer against this reference and shows the first mismatch as a failure.

Two paths:
- raw completion (`Prompt.chat` false): the reference encoding with its special tokens (BOS per
  add_bos_token), as the model's training saw it;
- chat (`Prompt.chat` true): the ChatML template (`<|im_start|>user\\n...<|im_end|>\\n<|im_start|>assistant\\n`)
  encoded without special tokens, which is what vLLM's chat endpoint sends by default (add_special_tokens false).

    from bitcpm_validation.engine import prompting
    ids = prompting.prompt_ids(prompt, params.model_path)         # Prompt, or a plain string
    batch = prompting.prepare(ch.prompts.prompts, params.model_path)  # [Prepared(id, text, token_ids, ...)]
    text = prompting.decode(generation.token_ids, params.model_path)
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal, NamedTuple, Optional, Sequence, Union

from bitcpm_validation.engine.identity import ModelSource, model_source
from bitcpm_validation.model import tokenizer as T
from bitcpm_validation.params import Params, Prompt

Mode = Literal["faithful", "engine"]


def feed_mode(model_dir: Union[str, Path]) -> Mode:
    """faithful (the reference tokenizer's ids) where tokenizer.model or tokenizer.json ships, else engine."""
    return "faithful" if T.reference_kind(model_dir) else "engine"


def describe(model_dir: Union[str, Path]) -> dict[str, str]:
    """The choice and its reason, for the loading chapter: {mode, reference, en, zh}."""
    kind = T.reference_kind(model_dir)
    if kind is None:
        return {"mode": "engine", "reference": "",
                "en": "The model directory has neither tokenizer.model nor tokenizer.json: prompts are tokenized by the "
                      "engine's own tokenizer.",
                "zh": "模型目录既没有 tokenizer.model 也没有 tokenizer.json：提示由引擎自身的分词器编码。"}
    sp = kind.startswith("SentencePiece")
    src_en = ("the model's own SentencePiece model (tokenizer.model)" if sp
              else "the model's tokenizer.json, through the tokenizers library itself (no tokenizer.model ships)")
    src_zh = ("模型自带的 SentencePiece 模型（tokenizer.model）" if sp
              else "模型的 tokenizer.json，直接由 tokenizers 库编码（目录中没有 tokenizer.model）")
    return {
        "mode": "faithful", "reference": kind,
        "en": f"Prompts are given to the engine as token ids encoded by {src_en}: added tokens split out first, BOS "
              f"and EOS per tokenizer_config.json for raw prompts, none for the ChatML chat path (as vLLM's chat "
              f"endpoint does). The engine's text tokenizer is checked against this encoding; a difference affects "
              f"text sent to the engine, not this report's probes.",
        "zh": f"提示以词元编号形式送入引擎，由{src_zh}编码：先切分出附加特殊词元，普通提示按 tokenizer_config.json "
              f"加 BOS/EOS，ChatML 对话提示不加（与 vLLM 对话接口默认一致）。引擎的文本分词器与此编码逐词元比对；"
              f"若不一致，只影响以文本方式发给引擎的请求，不影响本报告的探针。",
    }


def _reference(model_dir: Union[str, Path]):
    return T.reference_tokenizer(model_dir)


def _engine_tok(model_dir: Union[str, Path]):
    return T.auto_tokenizer(str(Path(model_dir).resolve()))


def chat_text(user: str) -> str:
    """The ChatML text of one user turn plus the generation prompt (the template emits no BOS)."""
    return T.chatml([{"role": "user", "content": user}], add_generation_prompt=True)


def prompt_text(prompt: Union[Prompt, str], chat: bool | None = None) -> str:
    """The text that is encoded: the prompt itself, or its ChatML rendering for chat prompts."""
    text = prompt if isinstance(prompt, str) else prompt.prompt
    is_chat = (False if isinstance(prompt, str) else prompt.chat) if chat is None else chat
    return chat_text(text) if is_chat else text


def prompt_ids(prompt: Union[Prompt, str], model_dir: Union[str, Path], chat: bool | None = None) -> list[int]:
    """Token ids given to the engine for one prompt (see the module docstring for the rules)."""
    is_chat = (False if isinstance(prompt, str) else prompt.chat) if chat is None else chat
    text = prompt_text(prompt, is_chat)
    if feed_mode(model_dir) == "faithful":
        return _reference(model_dir).encode(text, add_bos=False if is_chat else None)
    tok = _engine_tok(model_dir)
    return list(tok(text, add_special_tokens=not is_chat)["input_ids"])


def decode(ids: Sequence[int], model_dir: Union[str, Path]) -> str:
    """Generated ids back to text, special tokens dropped, by the same tokenizer that encoded them."""
    if feed_mode(model_dir) == "faithful":
        return _reference(model_dir).decode(list(ids), skip_special=True)
    return _engine_tok(model_dir).decode(list(ids), skip_special_tokens=True)


@dataclass
class Prepared:
    id: str
    text: str  # what was encoded (ChatML for chat prompts)
    token_ids: list[int]
    chat: bool
    mode: str
    prompt: Any = None  # the params.Prompt (not serialised)

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("prompt", None)
        return d


def prepare(prompts: Sequence[Union[Prompt, str]], model_dir: Union[str, Path],
            chat: bool | None = None) -> list[Prepared]:
    """Each prompt with its text and token ids; `chat` forces the path for every prompt."""
    mode = feed_mode(model_dir)
    out = []
    for i, p in enumerate(prompts):
        is_chat = (False if isinstance(p, str) else p.chat) if chat is None else chat
        pid = f"p{i}" if isinstance(p, str) else p.id
        out.append(Prepared(pid, prompt_text(p, is_chat), prompt_ids(p, model_dir, is_chat), is_chat, mode,
                            None if isinstance(p, str) else p))
    return out


def with_chat(prompt: Prompt, suffix: str = "_chat") -> Prompt:
    """The same probe sent through the chat template (a new id)."""
    return prompt.model_copy(update={"id": prompt.id + suffix, "chat": True})


class TokenizerDecision(NamedTuple):
    """What the engine and the server tokenize text with: `path` None = the model directory's own."""

    path: Optional[Path]
    en: str
    zh: str


FAITHFUL_TOKENIZER_DIR = "faithful-tokenizer"


def engine_tokenizer(params: Params, run_dir: Union[str, Path], which: str = "real",
                     source: Optional[ModelSource] = None) -> TokenizerDecision:
    """THE decision on the engine's `tokenizer=` (offline vllm.LLM and `vllm serve --tokenizer` alike).

    engine.tokenizer_override auto: where AutoTokenizer on the model directory (as vLLM loads it) encodes
    the bilingual fidelity sample differently from the directory's reference tokenizer (SentencePiece's
    tokenizer.model, else tokenizer.json through `tokenizers`; model.tokenizer.compare, no engine needed),
    write the faithful tokenizer directory (tokenizer.json loaded as is) into
    run_dir/artifacts/faithful-tokenizer/<model dir name> and use it, provided it does encode like the
    reference. Otherwise (off, no tokenizer.json to load as is, already faithful) the model's own tokenizer."""
    model_dir = Path((source or model_source(params, which)).model_dir)  # `source`: the caller's, already resolved
    if params.engine.tokenizer_override == "off":
        return TokenizerDecision(None, "engine.tokenizer_override is off: the engine uses the model directory's own tokenizer",
                                 "`engine.tokenizer_override` 为 `off`：引擎使用模型目录自带的分词器")
    kind = T.reference_kind(model_dir)
    if kind is None:
        return TokenizerDecision(None, "the model directory has neither tokenizer.model nor tokenizer.json: nothing to "
                                       "compare or override; the engine uses its own tokenizer",
                                 "模型目录既没有 tokenizer.model 也没有 tokenizer.json：无从比对或替换，引擎使用自带分词器")
    sample = T.FIDELITY_SAMPLE
    n = len(sample)
    bad = [r for r in T.compare(model_dir, sample) if not r["match"]]
    if not bad:
        return TokenizerDecision(None, f"the model directory's own tokenizer already encodes like the reference ({kind}): "
                                       f"no override",
                                 f"模型目录自带的分词器已与参照（{kind}）编码一致：无需替换")
    if not (model_dir / "tokenizer.json").is_file():
        return TokenizerDecision(None, f"the model's tokenizer differs from the reference ({kind}) on {len(bad)}/{n} "
                                       f"samples, and the directory has no tokenizer.json to load as is: no override",
                                 f"模型分词器在 {len(bad)}/{n} 条样本上与参照（{kind}）不一致，而目录中没有可原样加载的 "
                                 f"tokenizer.json：不替换")
    out = T.write_faithful_tokenizer_dir(model_dir, Path(run_dir) / "artifacts" / FAITHFUL_TOKENIZER_DIR / model_dir.name)
    still = [r for r in T.compare(out, sample) if r["reference_ids"] != T.faithful_ids(model_dir, r["text"])
             or not r["match"]]
    if still:
        return TokenizerDecision(None, f"the model's tokenizer differs from the reference ({kind}) on {len(bad)}/{n} "
                                       f"samples, and the faithful tokenizer directory still differs on {len(still)}: "
                                       f"no override",
                                 f"模型分词器在 {len(bad)}/{n} 条样本上与参照（{kind}）不一致，而忠实分词器目录仍有 "
                                 f"{len(still)} 条不一致：不替换")
    cls = _config_class(model_dir)
    return TokenizerDecision(
        out,
        f"the model's tokenizer_config.json (tokenizer_class {cls}) makes transformers rebuild the pipeline, which "
        f"differs from the reference ({kind}) on {len(bad)}/{n} sample texts; the engine is given a faithful tokenizer "
        f"directory instead (the same tokenizer.json, loaded as is with tokenizer_class PreTrainedTokenizerFast), which "
        f"matches the reference on all {n}",
        f"模型的 tokenizer_config.json（tokenizer_class {cls}）使 transformers 重建分词流程，在 {len(bad)}/{n} 条样本上"
        f"与参照（{kind}）不一致；因此改为给引擎一个忠实分词器目录（同一 tokenizer.json，以 PreTrainedTokenizerFast "
        f"原样加载），它在全部 {n} 条上与参照一致")


def _config_class(model_dir: Path) -> Optional[str]:
    p = model_dir / "tokenizer_config.json"
    return json.loads(p.read_text(encoding="utf-8")).get("tokenizer_class") if p.is_file() else None
