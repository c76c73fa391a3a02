"""The loading chapter's checks: registry, config, tokenizer, architecture, weight files, dummy vs real.

Each function returns plain data (dicts/lists, JSON-ready) and, where it judges, a `status`
(pass / warn / fail) with bilingual details; the notebook records them with `ch.check(...)`.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional, Sequence

from bitcpm_validation.engine.files import safetensors_files, safetensors_header, sha256_file
from bitcpm_validation.model import config as mcfg
from bitcpm_validation.report.textsafe import one_line

# A bilingual sample for the tokenizer-fidelity check: leading words, digits (split_digits), mixed
# scripts, full-width punctuation, repeated spaces, a chat turn with added tokens.
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
ROUND_TRIP = {"en": "The quick brown fox jumps over the lazy dog; 3.14 is pi.",
              "zh": "北京是中国的首都，有故宫、颐和园和长城。"}


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
        out["error"] = one_line(f"{type(e).__name__}: {e}", 300)
    return out


def tokenizer_report(model_dir: Path, sample: Sequence[str] = FIDELITY_SAMPLE) -> dict[str, Any]:
    """The engine's tokenizer (AutoTokenizer, as vLLM loads it) and, where tokenizer.model ships, its
    fidelity to SentencePiece's own encoding on a bilingual sample."""
    from bitcpm_validation.model import tokenizer as T

    d = Path(model_dir)
    tok = T.engine_tokenizer(str(d.resolve()))
    tcfg = json.loads((d / "tokenizer_config.json").read_text(encoding="utf-8")) if (d / "tokenizer_config.json").is_file() else {}
    added = {}
    if (d / "added_tokens.json").is_file():
        added = json.loads((d / "added_tokens.json").read_text(encoding="utf-8"))
    else:
        added = {t: tok.convert_tokens_to_ids(t) for t in getattr(tok, "additional_special_tokens", [])}
    has_sp = (d / "tokenizer.model").is_file()
    base = None
    if has_sp:
        base = T._faithful(str(d.resolve())).sp.get_piece_size()
    out: dict[str, Any] = {
        "class": type(tok).__name__,
        "config_class": tcfg.get("tokenizer_class"),
        "is_fast": bool(getattr(tok, "is_fast", False)),
        "base_vocab": base,
        "added_tokens": added,
        "size": len(tok),
        "bos": tok.bos_token, "eos": tok.eos_token,
        "add_bos_token": tcfg.get("add_bos_token"),
        "chat_template_present": bool(getattr(tok, "chat_template", None)),
        "has_tokenizer_model": has_sp,
    }
    # Chat template: rendered by the engine's tokenizer vs the ChatML the project expects.
    msgs = [{"role": "user", "content": "你好"}]
    try:
        rendered = tok.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
        out["chat_template_render"] = rendered
        out["chat_template_is_chatml"] = rendered == T.chatml(msgs)
    except Exception as e:  # noqa: BLE001
        out["chat_template_render"] = None
        out["chat_template_is_chatml"] = False
        out["chat_template_error"] = one_line(e, 200)
    # Round trips: decode(encode(text)) == text, engine tokenizer and faithful tokenizer.
    rts = []
    for lang, text in ROUND_TRIP.items():
        ids = tok(text, add_special_tokens=False)["input_ids"]
        back = tok.decode(ids, skip_special_tokens=True)
        row = {"lang": lang, "text": text, "engine_tokens": len(ids), "engine_round_trip": back,
               "engine_ok": back == text}
        if has_sp:
            f = T._faithful(str(d.resolve()))
            fids = f.encode(text, add_bos=False)
            fb = f.decode(fids)
            row.update(faithful_tokens=len(fids), faithful_round_trip=fb, faithful_ok=fb == text)
        rts.append(row)
    out["round_trips"] = rts
    if has_sp:
        rows = T.compare(d, sample)
        for r in rows:
            mm = r["first_mismatch"]
            if mm:
                i = mm["index"]
                r["faithful_piece_at"] = r["faithful_pieces"][i] if i < len(r["faithful_pieces"]) else None
                r["engine_piece_at"] = r["engine_pieces"][i] if i < len(r["engine_pieces"]) else None
        out["fidelity"] = rows
        out["fidelity_ok"] = all(r["match"] for r in rows)
    else:
        out["fidelity"] = []
        out["fidelity_ok"] = None
    return out


def fidelity_check(tr: dict[str, Any]) -> tuple[str, str, str]:
    """(status, detail_en, detail_zh) of the tokenizer-fidelity check from tokenizer_report()."""
    if tr["fidelity_ok"] is None:
        return ("not_run", "no tokenizer.model in the model directory: nothing to compare against",
                "模型目录没有 tokenizer.model,无从比对")
    n = len(tr["fidelity"])
    bad = [r for r in tr["fidelity"] if not r["match"]]
    if not bad:
        return ("pass", f"the engine's tokenizer ({tr['class']}) gives SentencePiece's ids (BOS included) on all {n} sample texts",
                f"引擎分词器({tr['class']})在全部 {n} 条样本上与 SentencePiece 的编码(含 BOS)一致")
    r = bad[0]
    mm = r["first_mismatch"]
    txt = r["text"] if len(r["text"]) <= 40 else r["text"][:39] + "…"
    en = (f"{len(bad)}/{n} sample texts differ; first: {txt!r} at token {mm['index']}: SentencePiece "
          f"{mm['a']} {r.get('faithful_piece_at')!r} vs engine {mm['b']} {r.get('engine_piece_at')!r} "
          f"({tr['class']} rebuilt by transformers); the report feeds SentencePiece ids, a text API would not")
    zh = (f"{len(bad)}/{n} 条样本不一致;首个:{txt!r} 第 {mm['index']} 个 token:SentencePiece "
          f"{mm['a']} {r.get('faithful_piece_at')!r},引擎 {mm['b']} {r.get('engine_piece_at')!r}"
          f"(transformers 重建了 {tr['class']});本报告以 SentencePiece 的 id 送入引擎,以文本调用的接口则不然")
    return "fail", en, zh


def deployed_tokenizer(tr: dict[str, Any], decision: Any) -> dict[str, Any]:
    """The engine tokenizer as deployed, i.e. with prompting.engine_tokenizer's decision applied (the
    faithful tokenizer directory where the override is in effect, else the model's own, `tr`):
    {status, detail_en, detail_zh, report}. Pass when it encodes the sample like SentencePiece (BOS
    included) and renders the ChatML chat template."""
    dtr = tokenizer_report(Path(decision.path)) if decision.path is not None else tr
    where_en = "the faithful tokenizer directory" if decision.path is not None else "the model directory's own tokenizer"
    where_zh = "忠实分词器目录" if decision.path is not None else "模型目录自带的分词器"
    if dtr["fidelity_ok"] is None:
        st, en, zh = "not_run", f"{where_en}: no tokenizer.model to compare against", f"{where_zh}:没有 tokenizer.model,无从比对"
    else:
        n = len(dtr["fidelity"])
        good = sum(r["match"] for r in dtr["fidelity"])
        ok = dtr["fidelity_ok"] and dtr["chat_template_is_chatml"]
        st = "pass" if ok else "fail"
        en = (f"{where_en} ({dtr['class']}): {good}/{n} sample texts encode like SentencePiece (BOS included), chat "
              f"template {'renders' if dtr['chat_template_is_chatml'] else 'does not render'} ChatML")
        zh = (f"{where_zh}({dtr['class']}):{good}/{n} 条样本与 SentencePiece 编码一致(含 BOS),对话模板"
              f"{'渲染为' if dtr['chat_template_is_chatml'] else '未渲染为'} ChatML")
    return {"status": st, "detail_en": f"{en}. {decision.en}", "detail_zh": f"{zh}。{decision.zh}", "report": dtr}


def architecture(model_dir: Path) -> list[dict[str, Any]]:
    """The architecture table (model layer's derivation from the files)."""
    return mcfg.architecture_rows(model_dir)


def consistency(model_dir: Path, *, tokenizer_size: Optional[int], max_model_len: int,
                kv_cache_tokens: Optional[int] = None) -> list[dict[str, Any]]:
    """Checks a reviewer wants, each {id, status, name_en, name_zh, detail_en, detail_zh}."""
    d = Path(model_dir)
    cfg = mcfg.read_config(d)
    names = mcfg.weight_names(d)
    checks = []
    tie = bool(cfg["tie_word_embeddings"])
    if names:
        lm = "lm_head.weight" in names
        ok = tie != lm
        checks.append(dict(
            id="tie_vs_lm_head", status="pass" if ok else "fail",
            name_en="tie_word_embeddings vs lm_head.weight", name_zh="tie_word_embeddings 与 lm_head.weight",
            detail_en=f"tie_word_embeddings={tie} ({'config.json' if 'tie_word_embeddings' in json.loads((d / 'config.json').read_text()) else 'class default'}), "
                      f"lm_head.weight {'present' if lm else 'absent'} in the checkpoint"
                      + ("" if ok else ": inconsistent, the engine would use a wrong or random output head"),
            detail_zh=f"tie_word_embeddings={tie},权重中{'有' if lm else '无'} lm_head.weight"
                      + ("" if ok else ":不一致,引擎会使用错误或随机的输出层")))
    else:
        checks.append(dict(
            id="tie_vs_lm_head", status="not_run", name_en="tie_word_embeddings vs lm_head.weight",
            name_zh="tie_word_embeddings 与 lm_head.weight",
            detail_en=f"no weights in {d.name}: tie_word_embeddings={tie}; only a weight file can confirm it",
            detail_zh=f"{d.name} 中无权重:tie_word_embeddings={tie};只有权重文件能确认"))
    vs = int(cfg["vocab_size"])
    if tokenizer_size is not None:
        st = "pass" if tokenizer_size == vs else ("warn" if tokenizer_size < vs else "fail")
        checks.append(dict(
            id="vocab_vs_tokenizer", status=st, name_en="vocab_size vs tokenizer size", name_zh="vocab_size 与分词器大小",
            detail_en=f"config vocab_size {vs}, tokenizer {tokenizer_size} tokens"
                      + {"pass": "", "warn": ": the embedding has unused rows", "fail": ": token ids beyond the embedding"}[st],
            detail_zh=f"config vocab_size {vs},分词器 {tokenizer_size} 个 token"
                      + {"pass": "", "warn": ":嵌入表有未使用的行", "fail": ":token id 超出嵌入表"}[st]))
    maxpos = int(cfg["max_position_embeddings"])
    limits = [maxpos] + ([kv_cache_tokens] if kv_cache_tokens else [])
    achievable = min(limits)
    st = "pass" if max_model_len <= achievable else "fail"
    rope = mcfg.longrope(cfg, max_model_len)
    rope_en = (f"; LongRoPE uses the {'long' if rope['use_long'] else 'short'} factors at this length" if rope else "")
    rope_zh = (f";此长度下 LongRoPE 使用 {'long' if rope['use_long'] else 'short'} 因子" if rope else "")
    checks.append(dict(
        id="max_model_len", status=st, name_en="max_model_len configured vs achievable",
        name_zh="max_model_len 配置值与可达值",
        detail_en=f"configured {max_model_len}; achievable {achievable} = min(max_position_embeddings {maxpos}"
                  + (f", KV cache {kv_cache_tokens} tokens" if kv_cache_tokens else ", KV cache not known yet") + ")" + rope_en,
        detail_zh=f"配置 {max_model_len};可达 {achievable} = min(max_position_embeddings {maxpos}"
                  + (f",KV cache {kv_cache_tokens} tokens" if kv_cache_tokens else ",KV cache 尚未知") + ")" + rope_zh))
    return checks


def weight_files(model_dir: Path) -> list[dict[str, Any]]:
    """Each weight file (safetensors / bin) with its size and SHA-256."""
    d = Path(model_dir)
    files = sorted(list(d.glob("*.safetensors")) + list(d.glob("*.bin")))
    out = []
    for f in files:
        out.append({"file": f.name, "bytes": f.stat().st_size, "sha256": sha256_file(f)})
    return out


def stored_dtypes(model_dir: Path) -> dict[str, int]:
    """{dtype: tensor count} from the safetensors headers (no tensor data read)."""
    counts: dict[str, int] = {}
    for f in safetensors_files(model_dir):
        for v in safetensors_header(f).values():
            counts[v["dtype"]] = counts.get(v["dtype"], 0) + 1
    return counts


def matrix(dummy: dict[str, Any], real: dict[str, Any]) -> list[dict[str, Any]]:
    """The dummy-vs-real matrix: what each load proved. `dummy`/`real`: {"ok": bool, ...} as the
    notebook collected them (ok = the engine started; smoke = the first request ran; graded = the
    real output passed its expectation; sha = weight checksums taken; tie_ok = head consistent)."""
    def m(x: Optional[bool]) -> str:
        return "—" if x is None else ("✅" if x else "❌")

    d_ok, r_ok = dummy.get("ok"), real.get("ok")
    rows = [
        ("Architecture registered and instantiated by vLLM", "vLLM 注册并实例化该架构", d_ok, r_ok, "both"),
        ("Full-size shapes (0.5B config) accepted; KV cache sized at the real shape",
         "接受完整尺寸(0.5B)配置;按真实形状分配 KV cache", d_ok if dummy.get("full_size") else None,
         True if r_ok and real.get("full_size") else None, "dummy"),
        ("Forward pass runs end to end (first request)", "前向计算端到端运行(首个请求)", dummy.get("smoke"), real.get("smoke"), "both"),
        ("Tokenizer and remote-code config load", "分词器与远程代码配置可加载", d_ok, r_ok, "both"),
        ("Weight names / shapes / dtype match the checkpoint", "权重名称/形状/精度与检查点一致", None, r_ok, "real"),
        ("Output head consistent (tie_word_embeddings vs lm_head.weight)", "输出层一致(tie_word_embeddings 与 lm_head.weight)",
         None, real.get("tie_ok"), "real"),
        ("Weight files identified (SHA-256)", "权重文件可识别(SHA-256)", None, real.get("sha"), "real"),
        ("Outputs are meaningful (graded probe)", "输出有意义(探针评分)", None, real.get("graded"), "real"),
    ]
    return [{"what_en": en, "what_zh": zh, "dummy": m(dv), "real": m(rv), "only": only} for en, zh, dv, rv, only in rows]
