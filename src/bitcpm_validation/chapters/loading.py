"""The loading chapter: registry, config, tokenizer, architecture, weight files, the full-shape and the real loads.

The full-shape load (model.dummy_config's architecture) reads the synthetic checkpoint (model.synthetic: seeded
ternary weights laid out as BitCPM4 stores them, real safetensors written once into a cache), so vLLM's own
weight loader runs at the real shape; model.full_shape_weights: dummy falls back to load_format=dummy.

Measurements are plain functions returning JSON-ready data; every judgement is a registered check
(report.checks.define) made by a `judge_*` function of measured data, which the notebook records with
`ch.record(loading.judge_...(...))`. What cannot fail (file lists, SHA-256 without an expected value,
the engine's init timeline, its log lines) is shown as a fact, never as a check.

Scopes: "engine" for what decides whether this engine runs this model faithfully (load, tokenizer, KV
cache, weights vs config); "document" for the original validation document's claims about the files.
Heavy imports (vLLM, transformers) happen inside the functions that need them.
"""
from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any, Optional, Sequence

from bitcpm_validation.files import safetensors_files, safetensors_header, sha256_file
from bitcpm_validation.model import config as mcfg
from bitcpm_validation.model.tokenizer import FIDELITY_SAMPLE

from bitcpm_validation.report.display import T
from bitcpm_validation.report.results import Check
from bitcpm_validation.report.textsafe import one_line
from bitcpm_validation.chapters import registered_checks

CHAPTER = "02_loading"
__all__ = ["FIDELITY_SAMPLE"]  # re-exported: the sample the fidelity checks use (model.tokenizer owns it)

ROUND_TRIP = {"en": "The quick brown fox jumps over the lazy dog; 3.14 is pi.",
              "zh": "北京是中国的首都，有故宫、颐和园和长城。"}


# -- the checks this chapter makes ------------------------------------------------------------------------
CHECKS = registered_checks("02_loading")  # this chapter's entries of chapters/checks.yaml


# -- registry and config ------------------------------------------------------------------------------------
def registry(arch: str = "MiniCPMForCausalLM") -> dict[str, Any]:
    """Is the architecture in vLLM's model registry, and which module implements it."""
    from vllm import ModelRegistry

    archs = ModelRegistry.get_supported_archs()
    entry = getattr(ModelRegistry, "models", {}).get(arch)
    return {
        "architecture": arch,
        "registered": arch in archs,
        "module": getattr(entry, "module_name", None),
        "class": getattr(entry, "class_name", None),
        "architectures_known": len(list(archs)),
    }


def judge_registry(reg: dict[str, Any]) -> Check:
    if not reg.get("registered"):
        return CHECKS["registry"].row("fail", f"{reg['architecture']} is not in vLLM's registry ({reg.get('architectures_known')} "
                                              f"architectures known): this vLLM cannot run the model",
                                      f"{reg['architecture']} 不在 vLLM 注册表中（已知 {reg.get('architectures_known')} 个架构）："
                                      f"此 vLLM 无法运行该模型")
    return CHECKS["registry"].row("pass", f"{reg['architecture']} -> {reg['module']}.{reg['class']} (vLLM's native implementation; "
                                          f"{reg['architectures_known']} architectures known)",
                                  f"{reg['architecture']} -> {reg['module']}.{reg['class']}（vLLM 原生实现；已知 "
                                  f"{reg['architectures_known']} 个架构）")


def config_load(model_dir: Path) -> dict[str, Any]:
    """Load config.json with AutoConfig: first without remote code (expected to fail: no model_type,
    only auto_map), then with trust_remote_code=True."""
    from transformers import AutoConfig

    raw = json.loads((Path(model_dir) / "config.json").read_text(encoding="utf-8"))
    out: dict[str, Any] = {"model_type": raw.get("model_type"), "auto_map": raw.get("auto_map"),
                           "remote_code_files": sorted(p.name for p in Path(model_dir).glob("*.py"))}
    try:
        c = AutoConfig.from_pretrained(str(model_dir), trust_remote_code=False)
        out["without_remote_code"] = f"loaded as {type(c).__name__}"
        out["needs_remote_code"] = False
    except Exception as e:  # noqa: BLE001
        # first sentence only, without the local path: the results stay the same across checkouts
        first = str(e).split(". ")[0].replace(str(model_dir), Path(model_dir).name)
        out["without_remote_code"] = one_line(f"{type(e).__name__}: {first}", 200)
        out["needs_remote_code"] = True
    try:
        c = AutoConfig.from_pretrained(str(model_dir), trust_remote_code=True)
        out["config_class"] = type(c).__name__
        out["config_module"] = type(c).__module__
        out["loaded"] = True
    except Exception as e:  # noqa: BLE001
        out["loaded"] = False
        out["error"] = one_line(f"{type(e).__name__}: {e}".replace(str(model_dir), Path(model_dir).name), 300)
    return out


def judge_config(cfg: dict[str, Any]) -> Check:
    if not cfg.get("loaded"):
        return CHECKS["config"].row("fail", f"AutoConfig cannot load config.json: {cfg.get('error', 'unknown error')}",
                                    f"AutoConfig 无法加载 config.json：{cfg.get('error', '未知错误')}")
    via = ("auto_map -> " + str((cfg.get("auto_map") or {}).get("AutoConfig"))) if not cfg.get("model_type") \
        else f"model_type {cfg['model_type']}"
    if cfg.get("needs_remote_code"):
        return CHECKS["config"].row("pass", f"{cfg['config_class']} via trust_remote_code (no model_type in config.json, {via}); "
                                            f"without remote code: {cfg['without_remote_code']}",
                                    f"{cfg['config_class']}（trust_remote_code；config.json 无 model_type，{via}）；不信任远程代码时 "
                                    f"AutoConfig 报错（{cfg['without_remote_code'].split(':', 1)[0]}，全文见英文报告与证据日志）")
    return CHECKS["config"].row("pass", f"{cfg['config_class']} ({via}), no remote code needed",
                                f"{cfg['config_class']}（{via}），无需远程代码")


# -- tokenizer -----------------------------------------------------------------------------------------------
def tokenizer_report(model_dir: Path, sample: Sequence[str] = FIDELITY_SAMPLE) -> dict[str, Any]:
    """The engine's tokenizer (AutoTokenizer, as vLLM loads it) against the directory's reference
    (SentencePiece's tokenizer.model, else tokenizer.json through `tokenizers`): facts, chat template,
    round trips and per-sample fidelity rows. {"error": ...} when AutoTokenizer cannot load it."""
    from bitcpm_validation.model import tokenizer as T

    d = Path(model_dir).resolve()
    try:
        tok = T.auto_tokenizer(str(d))
    except Exception as e:  # noqa: BLE001  (any loader error is the finding)
        return {"error": one_line(f"{type(e).__name__}: {e}".replace(str(d), d.name), 300), "fidelity": [],
                "round_trips": [], "fidelity_ok": None}
    tcfg = json.loads((d / "tokenizer_config.json").read_text(encoding="utf-8")) \
        if (d / "tokenizer_config.json").is_file() else {}
    try:
        ref = T.reference_tokenizer(d) if T.reference_kind(d) else None
        ref_error = None
    except (ValueError, OSError, RuntimeError) as e:  # a tokenizer_config the reference cannot follow
        ref, ref_error = None, one_line(str(e).replace(str(d), d.name), 300)
    out: dict[str, Any] = {
        "class": type(tok).__name__,
        "config_class": tcfg.get("tokenizer_class"),
        "is_fast": bool(getattr(tok, "is_fast", False)),
        "reference": ref.kind if ref else None,
        "reference_error": ref_error,
        "has_tokenizer_model": (d / "tokenizer.model").is_file(),
        "has_tokenizer_json": (d / "tokenizer.json").is_file(),
        "base_vocab": ref.sp.get_piece_size() if isinstance(ref, T.FaithfulTokenizer) else None,
        "added_tokens": _added_tokens(d, tok),
        "size": len(tok),
        "bos": tok.bos_token, "eos": tok.eos_token,
        "bos_id": tok.bos_token_id, "eos_id": tok.eos_token_id,
        "add_bos_token": tcfg.get("add_bos_token"),
        "chat_template_present": bool(getattr(tok, "chat_template", None)),
    }
    msgs = [{"role": "user", "content": "你好"}]
    try:
        rendered = tok.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
        out["chat_template_render"] = rendered
        out["chat_template_is_chatml"] = rendered == T.chatml(msgs)
    except Exception as e:  # noqa: BLE001
        out["chat_template_render"] = None
        out["chat_template_is_chatml"] = False
        out["chat_template_error"] = one_line(e, 200)
    out["round_trips"] = round_trips(tok, ref)
    if ref is not None:
        rows = T.compare(d, sample)
        for r in rows:
            mm = r["first_mismatch"]
            if mm:
                i = mm["index"]
                r["reference_piece_at"] = r["reference_pieces"][i] if i < len(r["reference_pieces"]) else None
                r["engine_piece_at"] = r["engine_pieces"][i] if i < len(r["engine_pieces"]) else None
        out["fidelity"] = rows
        out["fidelity_ok"] = all(r["match"] for r in rows)
    else:
        out["fidelity"], out["fidelity_ok"] = [], None
    return out


def _added_tokens(d: Path, tok: Any) -> dict[str, int]:
    if (d / "added_tokens.json").is_file():
        return json.loads((d / "added_tokens.json").read_text(encoding="utf-8"))
    return {t: tok.convert_tokens_to_ids(t) for t in getattr(tok, "additional_special_tokens", None) or []}


def _id_list(x: Any) -> list[int]:
    if isinstance(x, bool) or x is None:
        return []
    return [x] if isinstance(x, int) else [v for v in x if isinstance(v, int)]


def judge_tokenizer(tr: dict[str, Any], config: dict[str, Any]) -> Check:
    """The tokenizer loads and its BOS/EOS ids are those config.json names (the engine stops on config's eos)."""
    if tr.get("error"):
        return CHECKS["tokenizer"].row("fail", f"AutoTokenizer cannot load the directory: {tr['error']}",
                                       f"AutoTokenizer 无法加载该目录：{tr['error']}")
    cfg_bos, cfg_eos = _id_list(config.get("bos_token_id")), _id_list(config.get("eos_token_id"))
    problems_en, problems_zh = [], []
    if cfg_bos and tr.get("bos_id") not in cfg_bos:
        problems_en.append(f"tokenizer BOS {tr.get('bos')!r} = {tr.get('bos_id')} but config.json bos_token_id {cfg_bos[0]}")
        problems_zh.append(f"分词器 BOS {tr.get('bos')!r} = {tr.get('bos_id')}，而 config.json 的 bos_token_id 为 {cfg_bos[0]}")
    if cfg_eos and tr.get("eos_id") not in cfg_eos:
        problems_en.append(f"tokenizer EOS {tr.get('eos')!r} = {tr.get('eos_id')} not in config.json eos_token_id {cfg_eos}")
        problems_zh.append(f"分词器 EOS {tr.get('eos')!r} = {tr.get('eos_id')} 不在 config.json 的 eos_token_id {cfg_eos} 中")
    facts_en = (f"{tr['class']} (tokenizer_config: {tr['config_class']}), {tr['size']:,} tokens, "
                f"{len(tr['added_tokens'])} added")
    facts_zh = f"{tr['class']}（tokenizer_config：{tr['config_class']}），共 {tr['size']:,} 个词元，附加 {len(tr['added_tokens'])} 个"
    if problems_en:
        return CHECKS["tokenizer"].row("fail", f"{facts_en}; " + "; ".join(problems_en) + ": generation would not start or stop "
                                               "as the model was trained",
                                       f"{facts_zh}；" + "；".join(problems_zh) + "：生成的开始或结束与训练时不同")
    return CHECKS["tokenizer"].row("pass", f"{facts_en}; BOS {tr['bos']!r} = {tr['bos_id']}, EOS {tr['eos']!r} = {tr['eos_id']} "
                                           f"as config.json says (bos_token_id {cfg_bos or '—'}, eos_token_id {cfg_eos or '—'})",
                                   f"{facts_zh}；BOS {tr['bos']!r} = {tr['bos_id']}，EOS {tr['eos']!r} = {tr['eos_id']}，"
                                   f"与 config.json 一致（bos_token_id {cfg_bos or '—'}，eos_token_id {cfg_eos or '—'}）")


def judge_chat_template(tr: dict[str, Any]) -> Check:
    if tr.get("chat_template_is_chatml"):
        return CHECKS["chat_template"].row("pass", "renders a user turn exactly as ChatML", "对用户轮次的渲染与 ChatML 完全一致")
    if tr.get("chat_template_present"):
        got = tr.get("chat_template_render") or tr.get("chat_template_error") or ""
        return CHECKS["chat_template"].row("warn", f"present but renders {one_line(repr(got), 80)}, not ChatML: chat prompts differ "
                                                   f"from this report's ChatML",
                                           f"存在，但渲染为 {one_line(repr(got), 80)} 而非 ChatML：对话提示与本报告的 ChatML 不同")
    return CHECKS["chat_template"].row("fail", "no chat_template in tokenizer_config.json: the server's chat endpoint cannot "
                                               "format a conversation",
                                       "tokenizer_config.json 中没有 chat_template：服务的对话接口无法格式化对话")


def round_trips(tok: Any, ref: Any = None, texts: Optional[dict[str, str]] = None) -> list[dict[str, Any]]:
    """decode(encode(text)) per language by the engine's tokenizer (`tok`, a transformers tokenizer) and by the
    reference built from the directory's files (`ref`: encode(text, add_bos=...) / decode(ids)), where there is one."""
    rts = []
    for lang, text in (ROUND_TRIP if texts is None else texts).items():
        ids = tok(text, add_special_tokens=False)["input_ids"]
        back = tok.decode(ids, skip_special_tokens=True)
        row = {"lang": lang, "text": text, "engine_tokens": len(ids), "engine_round_trip": back, "engine_ok": back == text}
        if ref is not None:
            ref_ids = ref.encode(text, add_bos=False)
            rb = ref.decode(ref_ids)
            row.update(reference_tokens=len(ref_ids), reference_round_trip=rb, reference_ok=rb == text)
        rts.append(row)
    return rts


def judge_round_trip(tr: dict[str, Any]) -> Check:
    """The directory's own tokenizer files round trip (scope repository): the reference encoding built from them,
    else AutoTokenizer's. The engine's side (does it encode like the reference) is engine_tokenizer_deployed's."""
    rts = tr.get("round_trips") or []
    if not rts:
        return CHECKS["round_trip"].not_run("the tokenizer did not load", "分词器未能加载")
    bad = [r for r in rts if not r.get("reference_ok", r["engine_ok"])]
    en = "; ".join(f"{r['lang']}: engine {'ok' if r['engine_ok'] else 'differs'}"
                   + ("" if "reference_ok" not in r else f", reference {'ok' if r['reference_ok'] else 'differs'}")
                   for r in rts)
    zh = "；".join(f"`{r['lang']}`：引擎{'一致' if r['engine_ok'] else '不一致'}"
                  + ("" if "reference_ok" not in r else f"，参照{'一致' if r['reference_ok'] else '不一致'}")
                  for r in rts)
    if bad:
        r = bad[0]
        got = r.get("reference_round_trip", r["engine_round_trip"])
        lost = "".join(sorted(set(r["text"]) - set(got)))
        lost_en = f" (the files cannot encode {', '.join(repr(c) for c in lost)})" if lost else ""
        lost_zh = f"（文件无法编码 {'、'.join(repr(c) for c in lost)}）" if lost else ""
        return CHECKS["round_trip"].row("fail", f"{en}; first: {r['text']!r} came back as {got!r}{lost_en}",
                                        f"{zh}；首个：`{r['text']!r}` 还原为 `{got!r}`{lost_zh}")
    return CHECKS["round_trip"].row("pass", en, zh)


def _ids(ids: Sequence[int]) -> str:
    """A token-id list kept on one line in the rendered report (no-break spaces)."""
    return "[" + ",\u00a0".join(str(i) for i in ids) + "]"


def judge_fidelity(tr: dict[str, Any]) -> Check:
    """The engine's tokenizer against the reference, on the bilingual sample."""
    if tr.get("error"):
        return CHECKS["tokenizer_fidelity"].not_run(f"the tokenizer did not load: {tr['error']}", f"分词器未能加载：{tr['error']}")
    if tr.get("reference_error"):
        return CHECKS["tokenizer_fidelity"].not_run(f"no reference encoding: {tr['reference_error']}", f"没有参照编码：{tr['reference_error']}")
    if tr.get("fidelity_ok") is None:
        return CHECKS["tokenizer_fidelity"].not_run("the model directory has neither tokenizer.model nor tokenizer.json: no reference",
                                                    "模型目录既没有 tokenizer.model 也没有 tokenizer.json：没有参照")
    rows, ref = tr["fidelity"], tr["reference"]
    n = len(rows)
    bad = [r for r in rows if not r["match"]]
    if not bad:
        return CHECKS["tokenizer_fidelity"].row("pass", f"the engine's tokenizer ({tr['class']}) gives the reference's ids ({ref}, BOS/EOS "
                                                        f"included) on all {n} sample texts",
                                                f"引擎分词器（{tr['class']}）在全部 {n} 条样本上与参照（{ref}，含 BOS/EOS）一致")
    r = bad[0]
    mm = r["first_mismatch"]
    txt = r["text"] if len(r["text"]) <= 40 else r["text"][:39] + "…"
    head = 4
    ref_ids, eng_ids = r["reference_ids"][:mm["index"] + head], r["engine_ids"][:mm["index"] + head]
    en = (f"{len(bad)}/{n} sample texts differ; first: {txt!r} at token {mm['index']}: reference ({ref}) "
          f"{mm['a']} {r.get('reference_piece_at')!r} vs engine {mm['b']} {r.get('engine_piece_at')!r} "
          f"(reference {_ids(ref_ids)}… vs engine {_ids(eng_ids)}…; {tr['class']} as transformers builds it); text sent to the "
          f"engine is encoded differently from how the model was trained")
    zh = (f"{len(bad)}/{n} 条样本不一致；首个：`{txt!r}` 第 {mm['index']} 个词元：参照（{ref}）{mm['a']} "
          f"`{r.get('reference_piece_at')!r}`，引擎 {mm['b']} `{r.get('engine_piece_at')!r}`（参照 {_ids(ref_ids)}…，引擎 "
          f"{_ids(eng_ids)}…；transformers 构建的 {tr['class']}）；以文本送入引擎的请求与模型训练时的编码不同")
    return CHECKS["tokenizer_fidelity"].row("warn", en, zh)


def judge_deployed_tokenizer(dtr: dict[str, Any], decision_en: str, decision_zh: str, *,
                             engine_probe: Optional[dict[str, Any]] = None) -> Check:
    """The tokenizer as deployed (`dtr`: tokenizer_report of the directory the engine is given), plus,
    where an engine ran, its own tokenizer's ids for a probe ({text, engine_ids, reference_ids})."""
    if dtr.get("error") or dtr.get("fidelity_ok") is None:
        why = dtr.get("error") or "no tokenizer.model or tokenizer.json to compare against"
        return CHECKS["engine_tokenizer_deployed"].not_run(f"{why}. {decision_en}", f"{why}。{decision_zh}")
    n = len(dtr["fidelity"])
    good = sum(r["match"] for r in dtr["fidelity"])
    chatml = dtr["chat_template_is_chatml"]
    ok = good == n and chatml
    en = (f"{dtr['class']}: {good}/{n} sample texts encode like the reference ({dtr['reference']}), chat template "
          f"{'renders' if chatml else 'does not render'} ChatML")
    zh = (f"{dtr['class']}：{good}/{n} 条样本与参照（{dtr['reference']}）编码一致，对话模板"
          f"{'渲染为' if chatml else '未渲染为'} ChatML")
    if engine_probe is not None:
        same = engine_probe["engine_ids"] == engine_probe["reference_ids"]
        ok = ok and same
        en += (f"; the running engine's own tokenizer encodes {engine_probe['text']!r} as "
               f"{_ids(engine_probe['engine_ids'][:8])} ({'=' if same else '≠'} reference "
               f"{_ids(engine_probe['reference_ids'][:8])})")
        zh += (f"；运行中引擎的分词器将 `{engine_probe['text']!r}` 编码为 {_ids(engine_probe['engine_ids'][:8])}"
               f"（{'=' if same else '≠'} 参照 {_ids(engine_probe['reference_ids'][:8])}）")
    return CHECKS["engine_tokenizer_deployed"].row("pass" if ok else "fail", f"{en}. {decision_en}", f"{zh}。{decision_zh}")


# -- architecture, files and their consistency -------------------------------------------------------------
# Rows the original document's architecture table has beyond model.config's (facts sheet §1).
_EXTRA_ROWS = (("hidden_act", "Activation", "激活函数"), ("torch_dtype", "torch_dtype", "torch_dtype"),
               ("bos_token_id", "BOS token id", "BOS 词元编号"), ("eos_token_id", "EOS token id(s)", "EOS 词元编号"))


# the architecture table's source and unit words in the report's languages (report/glossary.yaml); file
# names (config.json, weight headers) stay as they are
_WORDS = {"derived": T("推算", "derived"), "class default": T("类默认值", "class default"),
          "dummy": T("随机权重", "dummy"), "synthetic": T("合成权重", "synthetic"), "real": T("真实权重", "real"),
          "params": T("个参数", "params"), "weights": T("权重", "weights"), "no weights": T("无权重", "no weights"), "bytes": T("字节", "bytes"), "tokens": T("词元", "tokens")}


def word(s: Any) -> Any:
    """An architecture row's source or unit, or a load's weights (synthetic, dummy, real), in both languages where it is a
    word, else as it is."""
    return _WORDS.get(s, s) if isinstance(s, str) else s


def architecture(model_dir: Path) -> list[dict[str, Any]]:
    """The full architecture table derived from the files: model.config's rows, plus hidden_act,
    torch_dtype, bos/eos ids, and the effective tying (flag AND whether lm_head.weight is present)."""
    d = Path(model_dir)
    raw = json.loads((d / "config.json").read_text(encoding="utf-8"))
    cfg = mcfg.read_config(d)
    rows = mcfg.architecture_rows(d)
    at = next((i for i, r in enumerate(rows) if r["key"] == "tie_word_embeddings"), len(rows))
    extra = [dict(key=k, name_en=en, name_zh=zh, value=_show(cfg.get(k)), unit="",
                  source="config.json" if k in raw else ("class default" if k in mcfg.CONFIG_DEFAULTS else "-"))
             for k, en, zh in _EXTRA_ROWS]
    tie = tying(d)
    extra.append(dict(key="tied_effective", name_en="Output head tied to the embedding", name_zh="输出层与嵌入绑定",
                      value=tie["tied"] if tie["tied"] is not None else "—", unit="",
                      source=tie["source"] if tie["tied"] is not None else "no weights"))
    return rows[:at] + extra + rows[at:]


def _show(v: Any) -> Any:
    return "—" if v is None else (json.dumps(v) if isinstance(v, (list, dict)) else v)


def tying(model_dir: Path) -> dict[str, Any]:
    """{flag, flag_source, lm_head (None without weights), tied (None where flag and tensor disagree or no
    weights), source}: tie_word_embeddings as the files decide it."""
    d = Path(model_dir)
    raw = json.loads((d / "config.json").read_text(encoding="utf-8"))
    flag = bool(mcfg.read_config(d)["tie_word_embeddings"])
    src = "config.json" if "tie_word_embeddings" in raw else "class default"
    names = mcfg.weight_names(d)
    lm = ("lm_head.weight" in names) if names else None
    tied = flag if lm is None else (flag if flag != lm else None)
    return {"flag": flag, "flag_source": src, "lm_head": lm,
            "tied": tied if lm is not None else None,
            "source": f"{src} + weights" if lm is not None else src}


_SHARED_ENGINE = re.compile(r"shared vllm serve \(pid (\d+), started by the runner\)")


def engine_who(settings: dict[str, Any]) -> T:
    """Which engine a chapter used (an engine's settings()["engine"]; none: the chapter's own offline engine), in
    both languages: the shared server's description is engine.shared's, in English, put into Chinese here."""
    who = settings.get("engine")
    if not who:
        return T("本章的离线引擎", "this chapter's offline engine")
    m = _SHARED_ENGINE.fullmatch(str(who))
    return T(f"本次运行共享的 `vllm serve`（进程 {m.group(1)}，由运行器启动）", str(who)) if m else T(f"`{who}`", str(who))


def started_together(eng: Any) -> T:
    """A note for an init time that overlapped another server's start (engine.shared SharedInfo.started_with: the
    runner starts the benchmark's server with the shared one); empty otherwise."""
    if not getattr(getattr(eng, "info", None), "started_with", ""):
        return T("", "")
    return T("（与基准测试的服务同时启动，两者共用主机的核心）",
             " (started together with the benchmark's server: the two shared the host's cores)")


def source_zh(source: str) -> str:
    """Where a value came from (tying()'s flag_source), in Chinese: config.json stays a file name."""
    return word(source).zh if isinstance(word(source), T) else source


def judge_tie(t: dict[str, Any]) -> Check:
    if t["lm_head"] is None:
        return CHECKS["tie_vs_lm_head"].not_run(f"no weights: tie_word_embeddings={t['flag']} ({t['flag_source']}); only a weight file can "
                                                f"confirm it", f"无权重：tie_word_embeddings={t['flag']}（{source_zh(t['flag_source'])}）；只有权重文件能确认")
    ok = t["flag"] != t["lm_head"]
    en = (f"tie_word_embeddings={t['flag']} ({t['flag_source']}), lm_head.weight "
          f"{'present' if t['lm_head'] else 'absent'} in the checkpoint")
    zh = f"tie_word_embeddings={t['flag']}（{source_zh(t['flag_source'])}），权重中{'有' if t['lm_head'] else '无'} lm_head.weight"
    if ok:
        return CHECKS["tie_vs_lm_head"].row("pass", en, zh)
    return CHECKS["tie_vs_lm_head"].row("fail", en + ": inconsistent, the engine would use a wrong or random output head",
                                        zh + "：不一致，引擎会使用错误或随机的输出层")


def judge_vocab(vocab_size: int, tokenizer_size: Optional[int]) -> Check:
    if tokenizer_size is None:
        return CHECKS["vocab_vs_tokenizer"].not_run("no tokenizer size could be read", "无法读取分词器大小")
    if tokenizer_size == vocab_size:
        return CHECKS["vocab_vs_tokenizer"].row("pass", f"config vocab_size {vocab_size:,}, tokenizer {tokenizer_size:,} ids",
                                                f"config.json 的 vocab_size {vocab_size:,}，分词器 {tokenizer_size:,} 个编号")
    if tokenizer_size < vocab_size:
        return CHECKS["vocab_vs_tokenizer"].row("warn", f"config vocab_size {vocab_size:,}, tokenizer {tokenizer_size:,} ids: the embedding has "
                                                        f"{vocab_size - tokenizer_size:,} unused rows",
                                                f"config.json 的 vocab_size {vocab_size:,}，分词器 {tokenizer_size:,} 个编号：嵌入表有 "
                                                f"{vocab_size - tokenizer_size:,} 行未使用")
    return CHECKS["vocab_vs_tokenizer"].row("fail", f"config vocab_size {vocab_size:,}, tokenizer {tokenizer_size:,} ids: token ids beyond the "
                                                    f"embedding would crash the engine",
                                            f"config.json 的 vocab_size {vocab_size:,}，分词器 {tokenizer_size:,} 个编号：超出嵌入表的词元编号会使引擎崩溃")


def expected_tensors(cfg: dict[str, Any], lm_head: bool) -> dict[str, list[int]]:
    """{name: shape} of the dense MiniCPM checkpoint the config describes (vLLM's minicpm loader names)."""
    h, inter, n_layers = cfg["hidden_size"], cfg["intermediate_size"], cfg["num_hidden_layers"]
    hd = cfg["head_dim"]
    q, kv = cfg["num_attention_heads"] * hd, cfg["num_key_value_heads"] * hd
    out = {"model.embed_tokens.weight": [cfg["vocab_size"], h], "model.norm.weight": [h]}
    for i in range(n_layers):
        p = f"model.layers.{i}."
        out.update({
            p + "input_layernorm.weight": [h], p + "post_attention_layernorm.weight": [h],
            p + "self_attn.q_proj.weight": [q, h], p + "self_attn.k_proj.weight": [kv, h],
            p + "self_attn.v_proj.weight": [kv, h], p + "self_attn.o_proj.weight": [h, q],
            p + "mlp.gate_proj.weight": [inter, h], p + "mlp.up_proj.weight": [inter, h],
            p + "mlp.down_proj.weight": [h, inter],
        })
    if lm_head:
        out["lm_head.weight"] = [cfg["vocab_size"], h]
    return out


def weight_header(model_dir: Path) -> dict[str, dict[str, Any]]:
    """{tensor name: {dtype, shape}} over every safetensors file (headers only)."""
    out: dict[str, dict[str, Any]] = {}
    for f in safetensors_files(model_dir):
        for name, t in safetensors_header(f).items():
            out[name] = {"dtype": t["dtype"], "shape": list(t["shape"])}
    return out


_TORCH_TO_ST = {"bfloat16": "BF16", "float16": "F16", "float32": "F32"}
_IGNORED = re.compile(r"rotary_emb\.inv_freq$")  # buffers some exporters save; vLLM skips them


def judge_weights(cfg: dict[str, Any], header: dict[str, dict[str, Any]]) -> Check:
    """The checkpoint's tensor names / shapes / dtypes against what the config implies."""
    if not header:
        return CHECKS["weights_match_config"].not_run("no safetensors weights in the directory", "目录中没有 safetensors 权重")
    expected = expected_tensors(cfg, "lm_head.weight" in header)
    got = {k: v for k, v in header.items() if not _IGNORED.search(k)}
    missing = sorted(set(expected) - set(got))
    extra = sorted(set(got) - set(expected))
    wrong = sorted(k for k in set(expected) & set(got) if got[k]["shape"] != expected[k])
    dtypes = sorted({v["dtype"] for v in got.values()})
    non_float = [d for d in dtypes if d not in ("BF16", "F16", "F32")]
    problems_en, problems_zh = [], []
    if missing:
        problems_en.append(f"{len(missing)} missing (first {missing[0]})")
        problems_zh.append(f"缺少 {len(missing)} 个（首个 {missing[0]}）")
    if extra:
        problems_en.append(f"{len(extra)} unexpected (first {extra[0]})")
        problems_zh.append(f"多出 {len(extra)} 个（首个 {extra[0]}）")
    if wrong:
        k = wrong[0]
        problems_en.append(f"{len(wrong)} with a wrong shape (first {k}: {got[k]['shape']}, config implies {expected[k]})")
        problems_zh.append(f"{len(wrong)} 个形状不符（首个 {k}：{got[k]['shape']}，配置推导为 {expected[k]}）")
    if non_float:
        problems_en.append(f"non-floating dtype {', '.join(non_float)} (a quantized checkpoint the dense loader cannot read)")
        problems_zh.append(f"非浮点精度 {', '.join(non_float)}（稠密加载器无法读取的量化权重）")
    facts_en = f"{len(got)} tensors, {sum(math.prod(v['shape']) for v in got.values()):,} parameters, stored {', '.join(dtypes)}"
    facts_zh = f"{len(got)} 个张量，{sum(math.prod(v['shape']) for v in got.values()):,} 个参数，存储为 {', '.join(dtypes)}"
    if problems_en:
        return CHECKS["weights_match_config"].row("fail", f"{facts_en}; " + "; ".join(problems_en), f"{facts_zh}；" + "；".join(problems_zh))
    want = _TORCH_TO_ST.get(str(cfg.get("torch_dtype")))
    if want and dtypes != [want]:
        return CHECKS["weights_match_config"].row("warn", f"{facts_en}; every name and shape the config implies, but config.json's torch_dtype "
                                                          f"is {cfg.get('torch_dtype')}",
                                                  f"{facts_zh}；名称与形状均符合配置，但 config.json 的 torch_dtype 为 {cfg.get('torch_dtype')}")
    return CHECKS["weights_match_config"].row("pass", f"{facts_en}; exactly the names and shapes the config implies",
                                              f"{facts_zh}；名称与形状恰为配置所推导")


def max_model_len_fact(max_model_len: int, cfg: dict[str, Any]) -> dict[str, Any]:
    """engine.max_model_len beside config.json's max_position_embeddings (and which LongRoPE factors apply there).
    A fact, not a check: vLLM itself refuses to start with a max_model_len above the model's limit, which the
    load check then reports with vLLM's own message."""
    maxpos = int(cfg["max_position_embeddings"])
    rope = mcfg.longrope(cfg, max_model_len)
    factors = ("long" if rope["use_long"] else "short") if rope else None
    return {"configured": max_model_len, "max_position_embeddings": maxpos, "longrope_factors": factors,
            "text": f"{max_model_len:,} / {maxpos:,}" + (f" (LongRoPE {factors})" if factors else "")}


def weight_files(model_dir: Path) -> list[dict[str, Any]]:
    """Each weight file (safetensors / bin) with its size and SHA-256."""
    d = Path(model_dir)
    files = sorted(list(d.glob("*.safetensors")) + list(d.glob("*.bin")))
    return [{"file": f.name, "bytes": f.stat().st_size, "sha256": sha256_file(f)} for f in files]


def stored_dtypes(model_dir: Path) -> dict[str, int]:
    """{dtype: tensor count} from the safetensors headers (no tensor data read)."""
    counts: dict[str, int] = {}
    for v in weight_header(model_dir).values():
        counts[v["dtype"]] = counts.get(v["dtype"], 0) + 1
    return counts


# -- engine loads ---------------------------------------------------------------------------------------------
def judge_load(which: str, error: Optional[str], facts_en: str = "", facts_zh: str = "") -> Check:
    if error:
        return CHECKS["load"].row("fail", f"the engine did not start: {error}", f"引擎未能启动：{error}", item=which)
    return CHECKS["load"].row("pass", facts_en or "the engine started", facts_zh or "引擎已启动", item=which)


def judge_infer(which: str, generated: Optional[int], requested: int, *, ignore_eos: bool,
                error: Optional[str] = None, chosen_logprobs: Optional[Sequence[Optional[float]]] = None) -> Check:
    """The first request ran. With `chosen_logprobs` (the synthetic checkpoint: its text means nothing) the check
    is what its forward pass can show: every token asked for was generated with a finite log-probability <= 0
    (NaN / inf or a missing score: weights loaded wrongly or an overflow at this shape)."""
    if error or generated is None:
        why = error or "no engine"
        return CHECKS["infer"].row("fail", f"the first request did not run: {why}", f"首个请求未能运行：{why}", item=which)
    need = requested if ignore_eos else 1
    ok = generated >= need
    rule_en = f"{requested} asked for, EOS ignored" if ignore_eos else f"up to {requested}"
    rule_zh = f"请求 {requested} 个，忽略 EOS" if ignore_eos else f"最多 {requested} 个"
    en, zh = f"{generated} tokens generated ({rule_en})", f"生成 {generated} 个词元（{rule_zh}）"
    if chosen_logprobs is not None:
        bad = [i for i, lp in enumerate(chosen_logprobs) if lp is None or not math.isfinite(lp) or lp > 1e-6]
        if len(chosen_logprobs) < generated:
            bad += list(range(len(chosen_logprobs), generated))
        if bad:
            ok = False
            en += f"; log-probability missing, not finite or > 0 at generated position(s) {bad[:5]}"
            zh += f"；生成位置 {bad[:5]} 的对数概率缺失、非有限值或大于 0"
        else:
            en += "; every generated token's log-probability finite (random weights: the text means nothing)"
            zh += "；每个生成词元的对数概率均为有限值（随机权重：文本没有意义）"
    return CHECKS["infer"].row("pass" if ok else "fail", en, zh, item=which)


def chosen_logprobs(g: Any) -> list[Optional[float]]:
    """Each generated token's own log-probability from an engine Generation (None where the engine gave none)."""
    rows = g.logprobs or []
    return [(row or {}).get(t) for t, row in zip(g.token_ids, rows)]


# The full-shape load's reason, as recorded among the run's engine starts (report.summary translates it).
FULL_SHAPE_WHY = {
    "synthetic": "the full-size architecture with the synthetic checkpoint (seeded ternary weights, read from files)",
    "dummy": "the full-size architecture with dummy weights (load_format=dummy)",
}


def full_shape_text(which: str) -> T:
    """What the full-shape load loads, in words (section 7's table, the matrix's column note)."""
    if which == "synthetic":
        return T("合成检查点：按 BitCPM4 的存储方式以固定种子生成的三值权重（BF16，每 32 个一组取绝对值均值作缩放因子，"
                 "共享嵌入），由 vLLM 的权重加载器从 safetensors 文件读入；不是 BitCPM4 的权重",
                 "synthetic checkpoint: seeded ternary weights laid out as BitCPM4 stores them (BF16, absmean scale per "
                 "group of 32, tied embeddings), read from safetensors files by vLLM's weight loader; not BitCPM4's weights")
    return T("随机权重（load_format=dummy）：vLLM 就地生成随机数值，不读取任何权重文件",
             "dummy weights (load_format=dummy): vLLM fills random values in place, no weight file is read")


def judge_kv_capacity(which: str, kv_tokens: Optional[int], max_model_len: int, max_num_seqs: int) -> Check:
    if not kv_tokens:
        return CHECKS["kv_capacity"].not_run("the engine reported no KV-cache size", "引擎未报告 KV 缓存大小", item=which)
    conc = kv_tokens / max_model_len
    en = (f"{kv_tokens:,} tokens = {conc:,.1f} requests of max_model_len {max_model_len:,} "
          f"(max_num_seqs {max_num_seqs})")
    zh = f"{kv_tokens:,} 个词元 = {conc:,.1f} 个 max_model_len {max_model_len:,} 的请求（max_num_seqs {max_num_seqs}）"
    if kv_tokens < max_model_len:
        return CHECKS["kv_capacity"].row("fail", en + ": not even one full-length request fits", zh + "：连一个满长请求都放不下", item=which)
    if conc < max_num_seqs:
        return CHECKS["kv_capacity"].row("warn", en + ": fewer full-length requests than max_num_seqs fit at once",
                                         zh + "：可同时容纳的满长请求少于 max_num_seqs", item=which)
    return CHECKS["kv_capacity"].row("pass", en, zh, item=which)


# -- the original document's claims (document scope) ----------------------------------------------------------
# The original's architecture table (validation-report-original.md), tie_word_embeddings judged separately.
ORIGINAL_ARCHITECTURE: dict[str, Any] = {
    "hidden_size": 1024, "num_attention_heads": 16, "num_hidden_layers": 24, "intermediate_size": 4096,
    "num_key_value_heads": 2, "head_dim": 64, "vocab_size": 73448, "max_position_embeddings": 32768,
    "rope_theta": 10000.0, "hidden_act": "silu", "rms_norm_eps": 1e-05, "torch_dtype": "bfloat16",
    "bos_token_id": 1, "eos_token_id": [2, 73440], "scale_emb": 12, "dim_model_base": 256, "scale_depth": 1.4,
}


def judge_doc_tie(t: dict[str, Any], where: str) -> Check:
    """The original's `tie_word_embeddings: False` against the real architecture's files (`tying()`)."""
    tied = t["flag"] if t["lm_head"] is None else (not t["lm_head"])
    how_en = (f"{where}: tie_word_embeddings={t['flag']} ({t['flag_source']})"
              + ("" if t["lm_head"] is None else f", lm_head.weight {'present' if t['lm_head'] else 'absent'}"))
    how_zh = (f"{where}：tie_word_embeddings={t['flag']}（{source_zh(t['flag_source'])}）"
              + ("" if t["lm_head"] is None else f"，lm_head.weight {'存在' if t['lm_head'] else '不存在'}"))
    if tied:
        return CHECKS["doc_tie_word_embeddings"].row("fail", f"the files say tied ({how_en}); the document's False is wrong: the output head is "
                                                             f"the embedding matrix",
                                                     f"文件表明为绑定（{how_zh}）；原文档的 False 有误：输出层即嵌入矩阵")
    return CHECKS["doc_tie_word_embeddings"].row("pass", f"the files say untied ({how_en})", f"文件表明未绑定（{how_zh}）")


def judge_doc_architecture(cfg: dict[str, Any], where: str) -> Check:
    diffs = [(k, v, cfg.get(k)) for k, v in ORIGINAL_ARCHITECTURE.items() if cfg.get(k) != v]
    if diffs:
        first = "; ".join(f"{k}: document {v!r}, files {got!r}" for k, v, got in diffs[:3])
        first_zh = "；".join(f"{k}：原文档 {v!r}，文件 {got!r}" for k, v, got in diffs[:3])
        return CHECKS["doc_architecture"].row("fail", f"{len(diffs)}/{len(ORIGINAL_ARCHITECTURE)} values differ from {where}: {first}",
                                              f"{len(diffs)}/{len(ORIGINAL_ARCHITECTURE)} 个值与 {where} 不符：{first_zh}")
    return CHECKS["doc_architecture"].row("pass", f"all {len(ORIGINAL_ARCHITECTURE)} values equal {where}",
                                          f"全部 {len(ORIGINAL_ARCHITECTURE)} 个值与 {where} 一致")


# -- facts: model information, download, files, the engine's log ------------------------------------------------
def parameters_from_weights(model_dir: Path) -> Optional[int]:
    """Parameters counted from the safetensors headers (None without weights)."""
    h = weight_header(model_dir)
    return sum(math.prod(v["shape"]) for k, v in h.items() if not _IGNORED.search(k)) if h else None


def download_commands(repo_id: str, local_dir: Optional[str] = None) -> list[tuple[str, str]]:
    """[(how, command)] to fetch the model: git lfs from Hugging Face, ModelScope's snapshot_download."""
    local = local_dir or "./" + repo_id.rsplit("/", 1)[-1]
    return [
        ("Hugging Face: `git lfs`", f"git lfs install\ngit lfs clone https://huggingface.co/{repo_id} {local}"),
        ("ModelScope", f"pip install modelscope\npython3 -c \"from modelscope import snapshot_download; "
                       f"snapshot_download('{repo_id}', local_dir='{local}')\""),
    ]


# What each file of a MiniCPM repository is for: (zh, en).
FILE_PURPOSE: dict[str, tuple[str, str]] = {
    "config.json": ("模型配置（架构、词表、RoPE）", "model configuration (architecture, vocabulary, RoPE)"),
    "configuration_minicpm.py": ("MiniCPM 配置类（远程代码，经 auto_map 加载）", "MiniCPM config class (remote code, via auto_map)"),
    "modeling_minicpm.py": ("MiniCPM 的 transformers 实现（远程代码；vLLM 用自己的实现）",
                            "MiniCPM transformers implementation (remote code; vLLM runs its own)"),
    "tokenizer.model": ("SentencePiece 分词模型（参照编码）", "SentencePiece model (the reference encoding)"),
    "tokenizer.json": ("快速分词器（tokenizers 格式）", "fast tokenizer (tokenizers format)"),
    "tokenizer_config.json": ("分词器配置（类名、BOS/EOS 规则、对话模板）", "tokenizer configuration (class, BOS/EOS rules, chat template)"),
    "special_tokens_map.json": ("特殊词元映射", "special-token map"),
    "added_tokens.json": ("附加词元及其编号", "added tokens and their ids"),
    "generation_config.json": ("默认生成参数（采样、EOS）", "default generation settings (sampling, EOS)"),
    "model.safetensors.index.json": ("分片索引（张量 -> 文件）", "shard index (tensor -> file)"),
    "README.md": ("说明文档", "documentation"),
    "MODEL_ORIG_README.md": ("官方原始 README", "the official original README"),
    ".gitattributes": ("Git LFS 规则", "Git LFS rules"),
    "training_corpus.json": ("替身模型训练语料的摘要（用于判断探针是否见过）", "the stand-in's training-corpus digest (were the probes seen in training?)"),
}


def file_list(model_dir: Path) -> list[dict[str, Any]]:
    """The model directory's files with size and purpose ({file, bytes, purpose_zh, purpose_en})."""
    out = []
    for p in sorted(Path(model_dir).iterdir()):
        if not p.is_file():
            continue
        zh, en = FILE_PURPOSE.get(p.name, (None, None))
        if zh is None and p.suffix == ".safetensors":
            zh, en = "权重（safetensors）", "weights (safetensors)"
        elif zh is None and p.suffix == ".bin":
            zh, en = "权重（PyTorch pickle）", "weights (PyTorch pickle)"
        elif zh is None and p.suffix == ".py":
            zh, en = "远程代码（trust_remote_code 时可执行）", "remote code (executable with trust_remote_code)"
        out.append({"file": p.name, "bytes": p.stat().st_size, "purpose_zh": zh or "未被引擎使用",
                    "purpose_en": en or "not used by the engine"})
    return out


def model_information(params: Any, arch_dir: Path, dtype: str) -> list[tuple[tuple[str, str], Any]]:
    """The original's model-information table from params and the files: [((label_zh, label_en), value)].
    Values that are text in both languages are (zh, en) tuples; the notebook wraps them in T. `dtype`: what
    the engine is given (engine.dtype resolved for this host)."""
    m = params.model
    cfg = mcfg.read_config(arch_dir)
    loaded_params = parameters_from_weights(params.model_path)
    config_params = mcfg.parameter_count(cfg, tying(arch_dir)["lm_head"])
    repo, _ = repo_id(params)
    if m.is_stand_in:
        weights: Any = ("项目训练的替身模型（小型三值 QAT MiniCPM），不是 BitCPM4", "the project's stand-in (a small ternary-QAT "
                        "MiniCPM), not BitCPM4")
        original: Any = ("无（替身模型）；BitCPM4-0.5B 的原始模型为 MiniCPM4-0.5B", "none (a stand-in); BitCPM4-0.5B's original "
                         "model is MiniCPM4-0.5B")
        source: Any = (f"本项目训练（`make stand-in`）；BitCPM4 的仓库：{repo}", f"trained by this project (make stand-in); "
                       f"BitCPM4's repository: {repo}")
    else:
        weights = ("真实权重", "real weights")
        original = ("MiniCPM4-0.5B（BitCPM4-0.5B 是其三值 QAT 版本）", "MiniCPM4-0.5B (BitCPM4-0.5B is its ternary-QAT version)")
        src = getattr(m, "source", None)
        rev = f" @ {src.commit or src.revision}" if src is not None and (src.commit or src.revision) else ""
        source = f"{src.hub if src is not None else 'Hugging Face / ModelScope'}: {repo}{rev}"
    return [
        (("模型名称", "Model name"), m.name),
        (("原始模型", "Original model"), original),
        (("模型来源", "Source"), source),
        (("架构", "Architecture"), ", ".join(cfg.get("architectures") or [])),
        (("本次加载的权重", "Weights loaded in this run"), weights),
        (("参数量（完整尺寸架构，由 config.json 推导）", "Parameters (full-size architecture, derived from config)"),
         f"{config_params:,}"),
        (("参数量（本次加载的权重，由 safetensors 头统计）", "Parameters (weights loaded, counted from safetensors headers)"),
         f"{loaded_params:,}" if loaded_params else "—"),
        (("载入精度", "Load dtype"), dtype),
    ]


# Engine-start milestones in vLLM's log (CPU, CUDA and vLLM-Ascend share these lines): (key, zh, en, pattern).
TIMELINE_EVENTS = (
    ("start", "引擎参数已解析", "engine arguments parsed", r"non-default args"),
    ("platform", "平台检测", "platform detected", r"Automatically detected platform|Platform plugin \S+ is activated"),
    ("config", "模型配置解析（架构）", "model config resolved (architecture)", r"Resolved architecture"),
    ("engine_core", "引擎核心进程初始化", "engine core initialising", r"Initializing a V1 LLM engine|Initializing an LLM engine"),
    ("weights_start", "开始加载权重", "weight loading starts", r"Starting to load model"),
    ("model_init", "模型实例化完成（各层已分配，尚未读入权重）", "model instantiated (layers allocated, weights not yet read)",
     r"Initializing model took"),
    ("weights_done", "权重加载完成", "weights loaded", r"Loading (?:model )?weights took|Model loading took"),
    ("kv_cache", "KV 缓存分配", "KV cache allocated", r"KV cache size:|Available KV cache memory|GiB for KV cache"),
    ("ready", "引擎就绪（性能剖析、KV 缓存、预热完成）", "engine ready (profile, KV cache, warm-up done)",
     r"init engine \(profile, create kv cache, warmup model\) took"),
)
_TS = re.compile(r"^(?:\(\w+(?: pid=\d+)?\)\s+)?(?:INFO|WARNING|DEBUG|ERROR)\s+(\d\d-\d\d \d\d:\d\d:\d\d)(?:\.\d+)?\s")


def engine_log_section(log_text: str, which: Optional[str] = None) -> str:
    """The last engine start's part of an evidence log ("=== engine start (<which>)" to the next start)."""
    marks = [m for m in re.finditer(r"^=== engine start \((\w+)\)", log_text, re.M)
             if which is None or m.group(1) == which]
    if not marks:
        return log_text
    start = marks[-1].start()
    nxt = re.search(r"^=== engine start", log_text[marks[-1].end():], re.M)
    return log_text[start: marks[-1].end() + nxt.start()] if nxt else log_text[start:]


def _scrub(line: str, scrub: Optional[dict[str, str]]) -> str:
    for old, new in (scrub or {}).items():
        line = line.replace(old, new)
    return line


def init_timeline(section: str, scrub: Optional[dict[str, str]] = None) -> list[dict[str, Any]]:
    """[{key, zh, en, t_s, line}]: each milestone's first log line, seconds since the first timestamped line
    of the start (vLLM logs whole seconds). `scrub`: {local path: shown as} for the quoted lines."""
    import datetime as dt

    stamped = []
    for line in section.splitlines():
        m = _TS.match(line.strip())
        if m:
            stamped.append((dt.datetime.strptime("2000-" + m.group(1), "%Y-%m-%d %H:%M:%S"), line.strip()))
    if not stamped:
        return []
    t0 = stamped[0][0]
    out = []
    for key, zh, en, rx in TIMELINE_EVENTS:
        hit = next(((t, ln) for t, ln in stamped if re.search(rx, ln)), None)
        if hit:
            out.append({"key": key, "zh": zh, "en": en, "t_s": (hit[0] - t0).total_seconds(),
                        "line": one_line(_scrub(re.sub(r"^.*?\] ", "", hit[1]), scrub), 160)})
    return sorted(out, key=lambda r: r["t_s"])


def init_phases(timeline: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """[{key, label, start_s, end_s}]: the engine start's phases between consecutive milestones of init_timeline,
    each named by the milestone that ends it (the first milestone, arguments parsed, only starts the clock)."""
    ms = sorted(timeline, key=lambda r: r["t_s"])
    return [{"key": b["key"], "label": T(b["zh"], b["en"]), "start_s": a["t_s"], "end_s": b["t_s"]}
            for a, b in zip(ms, ms[1:])]


def plot_init_timeline(timelines: dict[str, Sequence[dict[str, Any]]], lang: str = "en",
                       path: Optional[str | Path] = None):
    """Each engine start's init timeline as one horizontal bar of its phases (report.plots.timeline_bars); None
    with fewer than three phases (the timeline table stands alone)."""
    from bitcpm_validation.report import plots

    return plots.timeline_bars([(word(w), init_phases(tl)) for w, tl in timelines.items() if tl], lang, path)


# Lines a reader of the engine log wants (platform, device, parameters reset or ignored for the platform,
# CPU fallbacks and thread binding): (key, zh, en, pattern).
KEY_LOG_LINES = (
    ("platform", "平台插件 / 平台检测", "platform plugin / detection", r"Platform plugin \S+ is activated|Automatically detected platform"),
    ("device_config", "设备配置", "device config", r"device_config=\w+"),
    ("reset", "为本平台重置或忽略的参数", "parameters reset or ignored for the platform",
     r"GPU-specific|Resetting to|Ignored parameter|not supported on"),
    ("onednn", "oneDNN 回退", "oneDNN fallback", r"oneDNN"),
    ("threads", "线程绑定", "thread binding",
     r"OMP threads binding|reserve_cpu_num|core ids=|VLLM_CPU_OMP_THREADS_BIND=|Reducing Torch threads"),
    ("preload", "内存分配器预加载", "allocator preload", r"LD_PRELOAD|tcmalloc|libiomp"),
    ("attention", "注意力后端", "attention backend", r"[Uu]sing \S+ (?:attention )?backend|attention backend"),
    ("dtype", "精度", "dtype", r"dtype=\S+|[Cc]asting torch\.\w+ to torch\.\w+"),
)


def platform_line(facts: dict[str, Any]) -> dict[str, str]:
    """{key, zh, en, line}: the platform as vLLM reports it (engine.base.platform_facts: current_platform), the
    row of record. The log's "Automatically detected platform" is DEBUG on vLLM's built-in platforms (CPU, CUDA),
    so it is only additional evidence where it was logged (vLLM-Ascend's "Platform plugin ascend is activated"
    is INFO)."""
    kind = "out-of-tree plugin" if facts.get("out_of_tree") else "built-in"
    kind_zh = "外部插件" if facts.get("out_of_tree") else "内置"
    line = (f"{facts.get('kind')}: {facts.get('class')} (device_type={facts.get('device_type')}, "
            f"is_out_of_tree()={bool(facts.get('out_of_tree'))})")  # code names only: the same in both languages
    return {"key": "platform_vllm", "zh": f"平台（vLLM current_platform，{kind_zh}）",
            "en": f"platform (vLLM current_platform, {kind})", "line": line}


def key_log_lines(section: str, per_key: int = 3, scrub: Optional[dict[str, str]] = None) -> list[dict[str, str]]:
    """[{key, zh, en, line}]: the engine log's lines that say how it ran on this platform (each trimmed to
    the part that matched where the line is a long config dump)."""
    out: list[dict[str, str]] = []
    seen: set[str] = set()
    for key, zh, en, rx in KEY_LOG_LINES:
        n = 0
        for raw in section.splitlines():
            msg = re.sub(r"^.*?\] ", "", raw.strip())
            m = re.search(rx, msg)
            if not m or n >= per_key:
                continue
            if len(msg) > 200 and msg.count("=") > 5:  # a config dump: only its simple fields that matched,
                # "key=value" (no Python repr of the nested configs: "max_bytes=None), …Config(backend=")
                fields = [f for f in re.findall(r"\b\w+=[^\s,()\[\]{}]+(?=[,)\s]|$)", msg) if re.search(rx, f)]
                msg = ", ".join(dict.fromkeys(fields)) or m.group(0)
            elif len(msg) > 200:  # a long message: its first sentence
                msg = msg.split(". ")[0] + "."
            msg = one_line(_scrub(msg, scrub), 220)
            if msg in seen:
                continue
            seen.add(msg)
            out.append({"key": key, "zh": zh, "en": en, "line": msg})
            n += 1
    return out


def engine_log(eng: Any, which: str) -> str:
    """The log of an engine's start: a shared server's own log (engine.shared), else this engine's section
    of the chapter's evidence log."""
    info = getattr(eng, "info", None)
    if info is not None and getattr(info, "log", None) and Path(info.log).is_file():
        return Path(info.log).read_text(encoding="utf-8", errors="replace")
    path = Path(eng.evidence_path)
    text = path.read_text(encoding="utf-8", errors="replace") if path.is_file() else ""
    return engine_log_section(text, which)


# The default repository of the model this report validates (download commands for a stand-in run).
BITCPM_REPO = "openbmb/BitCPM4-0.5B"


def repo_id(params: Any) -> tuple[str, tuple[str, str]]:
    """(repo id, (why zh, why en)) for the download commands: the hub id the run resolved, else model.name
    where it is a hub id of real weights, else BitCPM4-0.5B's repository (a stand-in run)."""
    m = params.model
    if getattr(m, "source", None) is not None:
        return m.source.repo_id, ("本次运行解析的仓库", "the repository this run resolved")
    if not m.is_stand_in and re.fullmatch(r"[\w.-]+/[\w.-]+", m.name or "") and not Path(m.name).exists():
        return m.name, ("配置中的 model.name", "model.name of the profile")
    return BITCPM_REPO, ("本报告所验证模型的仓库；本次运行使用替身模型", "the repository of the model this report validates; "
                                                              "this run used a stand-in")


# The full-shape vs real matrix: what each load proved, as the recorded checks say (check id per column, "{w}" the
# full-shape load's weights; None: not this load's to prove). (zh, en, full-shape check, real check, full-shape
# weights that can prove it). dummy weights read no file and give no meaningful scores: those rows stay —.
MATRIX = (
    ("vLLM 注册并实例化该架构", "Architecture registered and instantiated by vLLM", "load:{w}", "load:real",
     ("synthetic", "dummy")),
    ("vLLM 的加载器从文件读入权重（BitCPM4 的存储布局：名称与形状须对上）",
     "vLLM's loader reads the weights from the files (BitCPM4's stored layout: names and shapes must map)", "load:{w}",
     "load:real", ("synthetic",)),
    ("KV 缓存按该形状分配并容纳满长请求", "KV cache sized for the shape and holds a full-length request",
     "kv_capacity:{w}", "kv_capacity:real", ("synthetic", "dummy")),
    ("前向计算端到端运行，得分为有限值（首个请求）", "Forward pass runs end to end with finite scores (first request)",
     "infer:{w}", "infer:real", ("synthetic",)),
    ("部署时的分词器与参照一致", "Tokenizer as deployed encodes like the reference", None, "engine_tokenizer_deployed", ()),
    ("权重名称/形状/精度与配置一致", "Weight names / shapes / dtypes match the config", None, "weights_match_config", ()),
    ("输出层一致（tie_word_embeddings 与 lm_head.weight）", "Output head consistent (tie_word_embeddings vs lm_head.weight)",
     None, "tie_vs_lm_head", ()),
)


def matrix(checks: Sequence[Check], full: str = "synthetic") -> list[dict[str, str]]:
    """[{what_zh, what_en, full_shape, real}]: each cell the mark of the recorded check (— where the check did not
    run or is not that load's to prove); `full` is the full-shape load's weights (synthetic | dummy)."""
    by_id = {c.id: c for c in checks}

    def mark(cid: Optional[str]) -> str:
        c = by_id.get(cid) if cid else None
        return c.mark if c is not None else "—"

    return [{"what_zh": zh, "what_en": en, "full_shape": mark(f.format(w=full) if f and full in can else None),
             "real": mark(r)} for zh, en, f, r, can in MATRIX]
