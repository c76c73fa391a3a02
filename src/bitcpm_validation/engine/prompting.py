"""THE way every chapter turns a probe prompt into the token ids given to the engine.

Why token ids and not text: transformers 5.x (what the CPU build of vLLM pulls in) rebuilds a
`LlamaTokenizer` directory's pipeline itself (a Metaspace pre-tokenizer with prepend_scheme
"always"): the engine's tokenizer then puts a "▁" in front of the first word, which the model's
SentencePiece tokenizer (add_dummy_prefix false) never produced in training. Feeding text would
measure that tokenizer, not the model. So, where the model directory ships `tokenizer.model`, prompts
are encoded **faithfully**: SentencePiece's own encoding, the added tokens (`<|im_start|>` ...) split
out first, and BOS per tokenizer_config's `add_bos_token` (facts sheet §3). The loading chapter
checks the engine's tokenizer against this encoding and shows the first mismatch as a failure.
Without `tokenizer.model` (a tokenizer.json-only directory) the engine's own tokenizer is used.

Two paths:
- raw completion (`Prompt.chat` false): BOS + encode(prompt), as the slow LlamaTokenizer (and the
  model's training) would give;
- chat (`Prompt.chat` true): the ChatML template (`<|im_start|>user\\n...<|im_end|>\\n<|im_start|>assistant\\n`)
  encoded without BOS, which is what vLLM's chat endpoint sends by default (add_special_tokens false).

    from bitcpm_validation.engine import prompting
    ids = prompting.prompt_ids(prompt, params.model_path)         # Prompt, or a plain string
    batch = prompting.prepare(ch.prompts.prompts, params.model_path)  # [Prepared(id, text, token_ids, ...)]
    text = prompting.decode(generation.token_ids, params.model_path)
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal, NamedTuple, Optional, Sequence, Union

from bitcpm_validation.params import Params, Prompt

Mode = Literal["faithful", "engine"]


def feed_mode(model_dir: Union[str, Path]) -> Mode:
    """faithful (SentencePiece ids) where tokenizer.model ships, else engine (AutoTokenizer)."""
    return "faithful" if (Path(model_dir) / "tokenizer.model").is_file() else "engine"


def describe(model_dir: Union[str, Path]) -> dict[str, str]:
    """The choice and its reason, for the loading chapter."""
    mode = feed_mode(model_dir)
    if mode == "faithful":
        return {
            "mode": mode,
            "en": "Prompts are given to the engine as token ids encoded by the model's own SentencePiece model "
                  "(tokenizer.model; added tokens split out first; BOS per add_bos_token for raw prompts, no BOS "
                  "for the ChatML chat path as vLLM's chat endpoint does). The engine's text tokenizer is checked "
                  "against this encoding below; any difference affects only text sent to a server, not this report's "
                  "probes.",
            "zh": "提示以 token id 形式送入引擎,由模型自带的 SentencePiece 模型(tokenizer.model)编码:先切分出附加特殊 "
                  "token,普通提示按 add_bos_token 加 BOS,对话提示走 ChatML 模板且不加 BOS(与 vLLM 对话接口默认一致)。"
                  "下方将引擎的文本分词器与此编码逐 token 比对;若不一致,只影响以文本方式发给服务的请求,不影响本报告的探针。",
        }
    return {
        "mode": mode,
        "en": "The model directory ships no tokenizer.model: prompts are tokenized by the engine's own tokenizer "
              "(AutoTokenizer on tokenizer.json).",
        "zh": "模型目录中没有 tokenizer.model:提示由引擎自身的分词器(基于 tokenizer.json 的 AutoTokenizer)编码。",
    }


def _faithful(model_dir: Union[str, Path]):
    from bitcpm_validation.model.tokenizer import _faithful as cached

    return cached(str(Path(model_dir).resolve()))


def _engine_tok(model_dir: Union[str, Path]):
    from bitcpm_validation.model.tokenizer import engine_tokenizer

    return engine_tokenizer(str(Path(model_dir).resolve()))


def chat_text(user: str) -> str:
    """The ChatML text of one user turn plus the generation prompt (the template emits no BOS)."""
    from bitcpm_validation.model.tokenizer import chatml

    return chatml([{"role": "user", "content": user}], add_generation_prompt=True)


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
        return _faithful(model_dir).encode(text, add_bos=False if is_chat else None)
    tok = _engine_tok(model_dir)
    return list(tok(text, add_special_tokens=not is_chat)["input_ids"])


def decode(ids: Sequence[int], model_dir: Union[str, Path]) -> str:
    """Generated ids back to text, special tokens dropped, by the same tokenizer that encoded them."""
    if feed_mode(model_dir) == "faithful":
        return _faithful(model_dir).decode(list(ids), skip_special=True)
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


def engine_tokenizer(params: Params, run_dir: Union[str, Path], which: str = "real") -> TokenizerDecision:
    """THE decision on the engine's `tokenizer=` (offline vllm.LLM and `vllm serve --tokenizer` alike).

    engine.tokenizer_override auto: where the model directory ships tokenizer.model and tokenizer.json and
    AutoTokenizer on it (as vLLM loads it) encodes the bilingual fidelity sample differently from
    SentencePiece (model.tokenizer.compare; no engine needed), write the faithful tokenizer directory into
    run_dir/artifacts/faithful-tokenizer/<model dir name> and use it, provided it does encode like
    SentencePiece. Otherwise (off, nothing to compare, already faithful) the model's own tokenizer."""
    from bitcpm_validation.chapters.loading import FIDELITY_SAMPLE
    from bitcpm_validation.model import tokenizer as T

    model_dir = Path(params.dummy_config_path if which == "dummy" else params.model_path)
    if params.engine.tokenizer_override == "off":
        return TokenizerDecision(None, "engine.tokenizer_override is off: the engine uses the model directory's own tokenizer",
                                 "engine.tokenizer_override 为 off:引擎使用模型目录自带的分词器")
    if not ((model_dir / "tokenizer.model").is_file() and (model_dir / "tokenizer.json").is_file()):
        return TokenizerDecision(None, "the model directory lacks tokenizer.model or tokenizer.json: nothing to compare "
                                       "or override; the engine uses its own tokenizer",
                                 "模型目录缺少 tokenizer.model 或 tokenizer.json:无从比对或替换,引擎使用自带分词器")
    bad = [r for r in T.compare(model_dir, FIDELITY_SAMPLE) if not r["match"]]
    if not bad:
        return TokenizerDecision(None, "the model directory's own tokenizer already encodes like SentencePiece: no override",
                                 "模型目录自带的分词器已与 SentencePiece 编码一致:无需替换")
    out = T.write_faithful_tokenizer_dir(model_dir, Path(run_dir) / "artifacts" / FAITHFUL_TOKENIZER_DIR / model_dir.name)
    still = [r for r in T.compare(out, FIDELITY_SAMPLE) if not r["match"]]
    n = len(FIDELITY_SAMPLE)
    if still:
        return TokenizerDecision(None, f"the model's tokenizer differs from SentencePiece on {len(bad)}/{n} samples, and the "
                                       f"faithful tokenizer directory still differs on {len(still)}: no override",
                                 f"模型分词器在 {len(bad)}/{n} 条样本上与 SentencePiece 不一致,而忠实分词器目录仍有 "
                                 f"{len(still)} 条不一致:不替换")
    return TokenizerDecision(
        out,
        f"the model's tokenizer_config.json (tokenizer_class {_config_class(model_dir)}) makes transformers rebuild the "
        f"pipeline, which differs from SentencePiece on {len(bad)}/{n} "
        f"sample texts; the engine is given a faithful tokenizer directory instead (same tokenizer.json, loaded as is "
        f"with tokenizer_class PreTrainedTokenizerFast), which matches SentencePiece on all {n}",
        f"模型的 tokenizer_config.json(tokenizer_class {_config_class(model_dir)})使 transformers 重建分词流程,在 {len(bad)}/{n} 条样本上与 "
        f"SentencePiece 不一致;因此改为给引擎一个忠实分词器目录(同一 tokenizer.json,以 PreTrainedTokenizerFast "
        f"原样加载),它在全部 {n} 条上与 SentencePiece 一致")


def _config_class(model_dir: Path) -> Optional[str]:
    import json

    p = model_dir / "tokenizer_config.json"
    return json.loads(p.read_text(encoding="utf-8")).get("tokenizer_class") if p.is_file() else None
