"""Write notebooks/02_loading, 03_inference, 04_determinism, 05_chinese (no outputs).

The notebooks are the source; this script is how they were generated (re-run it after editing here):
    python scripts/make_engine_notebooks.py [OUT_DIR]     (default notebooks/)
"""
import sys

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook
from pathlib import Path

NB = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parents[1] / "notebooks"
META = {"kernelspec": {"name": "python3", "display_name": "Python 3 (bitcpm-validation)", "language": "python"},
        "language_info": {"name": "python"}}


def md(src, *tags):
    c = new_markdown_cell(src)
    if tags:
        c.metadata["tags"] = list(tags)
    return c


def code(src, *tags):
    c = new_code_cell(src)
    if tags:
        c.metadata["tags"] = list(tags)
    return c


def params_cell():
    return code('params_path = "params/default.yaml"\nrun_dir = "runs/lab"', "parameters")


def write(name, cells):
    nb = new_notebook(cells=cells, metadata=META)
    for i, c in enumerate(nb.cells):
        c["id"] = f"{name[:2]}-{i:02d}"
    nbformat.write(nb, NB / f"{name}.ipynb")


OPEN = ("from bitcpm_validation.chapter import Chapter, quiet_logs\n"
        "from bitcpm_validation import engine, prompting\n"
        "from bitcpm_validation.textsafe import show_table, show_text, show_md, md_table, md_code, md_escape\n"
        "import pandas as pd\n\n"
        'ch = Chapter.open("{id}", params_path, run_dir)\n'
        "quiet_logs()\n"
        "engine.import_vllm(ch.evidence_path)\n"
        "p = ch.params\n"
        "model_dir = p.model_path\n")

SETTINGS = ("settings = eng.settings_rows()\n"
            'ch.data.setdefault("engine_settings", {{}})["{key}"] = {{k: v for k, v in settings}}\n'
            "ch.save()\n"
            'show_table(["设置 Setting", "值 Value"], settings)')

STAND_IN = ('if p.model.is_stand_in:\n'
            '    show_md("**替身模型 · Stand-in model**: 本次运行的权重是项目训练的小型三值 QAT MiniCPM,不是 BitCPM4-0.5B · "\n'
            '            "the weights of this run are the project\'s small ternary-QAT MiniCPM, not BitCPM4-0.5B.")')

# ------------------------------------------------------------------------------------------------
write("02_loading", [
    md("# 02 · 模型加载 · Loading"),
    md("本章复现原报告检查矩阵中的加载部分,并逐项给出证据:架构在 vLLM 模型注册表中;config 可加载(以及为何需要 "
       "`trust_remote_code`);分词器可加载并与 SentencePiece 原始编码逐 token 一致;由文件推导的架构表与一致性检查;"
       "完整尺寸架构的 dummy 权重加载与真实权重加载(大小、耗时、SHA-256、引擎初始化时间、KV cache 容量与并发、首个请求);"
       "最后是 dummy 与真实权重各自证明了什么的对照矩阵。本章启动两个引擎(dummy 与真实权重)。", "lang-zh"),
    md("The loading part of the original document's check matrix, each item with evidence: the architecture is in "
       "vLLM's model registry; the config loads (and why it needs `trust_remote_code`); the tokenizer loads and "
       "encodes exactly like SentencePiece; an architecture table derived from the files with consistency checks; a "
       "dummy-weight load of the full-size architecture and a real-weight load (size, load time, SHA-256, engine "
       "init time, KV-cache capacity and concurrency, a first request); and a matrix of what the dummy load proved "
       "versus what only the real weights proved. This chapter starts two engines (dummy and real).", "lang-en"),
    params_cell(),
    code(OPEN.format(id="02_loading") +
         "from bitcpm_validation import loading, grading\n"
         "dummy_dir = p.dummy_config_path\n"
         + STAND_IN),
    md("## 1. 模型注册表 · Model registry"),
    code('reg = loading.registry()\n'
         'ch.data["registry"] = reg\n'
         'ch.check("registry", "pass" if reg["registered"] else "fail", "Architecture in vLLM\'s model registry",\n'
         '         "架构在 vLLM 模型注册表中",\n'
         '         detail_en=f"{reg[\'architecture\']} -> {reg[\'module\']}.{reg[\'class\']} (vLLM\'s native implementation; "\n'
         '                   f"{reg[\'architectures_known\']} architectures known)",\n'
         '         detail_zh=f"{reg[\'architecture\']} -> {reg[\'module\']}.{reg[\'class\']}(vLLM 原生实现)")\n'
         'show_table(["项目 Item", "值 Value"], [[k, v] for k, v in reg.items()])'),
    md("## 2. 配置 · Config"),
    md("config.json 没有 `model_type`,只有 `auto_map` 指向模型目录里的 `configuration_minicpm.py`:transformers 只能通过远程代码"
       "找到配置类,因此需要 `trust_remote_code=True`。vLLM 运行的是它自己的 `MiniCPMForCausalLM`,远程代码只用于配置。", "lang-zh"),
    md("config.json has no `model_type`, only `auto_map` pointing at `configuration_minicpm.py` in the model "
       "directory: transformers reaches the config class only through remote code, hence `trust_remote_code=True`. "
       "vLLM runs its own `MiniCPMForCausalLM`; the remote code is used for the config only.", "lang-en"),
    code('cfg = loading.config_load(model_dir)\n'
         'ch.data["config"] = cfg\n'
         'why_en = ("no model_type in config.json, auto_map -> " + str((cfg["auto_map"] or {}).get("AutoConfig"))\n'
         '          if not cfg["model_type"] else f"model_type {cfg[\'model_type\']}")\n'
         'ch.check("config", "pass" if cfg["loaded"] else "fail", "Config loads", "Config 可加载",\n'
         '         detail_en=(f"{cfg.get(\'config_class\')} via trust_remote_code ({why_en}); without remote code: "\n'
         '                    f"{cfg[\'without_remote_code\']}") if cfg["loaded"] else cfg.get("error", ""),\n'
         '         detail_zh=(f"{cfg.get(\'config_class\')}(trust_remote_code;{why_en});不信任远程代码时:"\n'
         '                    f"{cfg[\'without_remote_code\']}") if cfg["loaded"] else cfg.get("error", ""))\n'
         'show_table(["项目 Item", "值 Value"], [[k, v] for k, v in cfg.items()])'),
    md("## 3. 分词器 · Tokenizer"),
    code('tr = loading.tokenizer_report(model_dir)\n'
         'ch.data["tokenizer"] = {k: v for k, v in tr.items() if k != "fidelity"}\n'
         'ch.data["tokenizer_fidelity"] = [{k: r[k] for k in ("text", "match", "first_mismatch", "faithful_ids", "engine_ids")}\n'
         '                                 for r in tr["fidelity"]]\n'
         'ch.save()\n'
         'n_added = len(tr["added_tokens"])\n'
         'ch.check("tokenizer", "pass", "Tokenizer loads", "分词器可加载",\n'
         '         detail_en=f"{tr[\'class\']} (tokenizer_config: {tr[\'config_class\']}), base vocabulary {tr[\'base_vocab\']}, "\n'
         '                   f"{n_added} added tokens, {tr[\'size\']} in all",\n'
         '         detail_zh=f"{tr[\'class\']}(tokenizer_config:{tr[\'config_class\']}),基础词表 {tr[\'base_vocab\']},"\n'
         '                   f"附加 {n_added} 个 token,共 {tr[\'size\']}")\n'
         'ch.check("chat_template", "pass" if tr["chat_template_is_chatml"] else ("warn" if tr["chat_template_present"] else "fail"),\n'
         '         "Chat template present (ChatML)", "对话模板存在(ChatML)",\n'
         '         detail_en="renders ChatML exactly" if tr["chat_template_is_chatml"] else "present but not the expected ChatML"\n'
         '                   if tr["chat_template_present"] else "no chat_template in tokenizer_config.json",\n'
         '         detail_zh="渲染结果与 ChatML 完全一致" if tr["chat_template_is_chatml"] else "存在但不是预期的 ChatML"\n'
         '                   if tr["chat_template_present"] else "tokenizer_config.json 中没有 chat_template")\n'
         'rt_ok = all(r["engine_ok"] and r.get("faithful_ok", True) for r in tr["round_trips"])\n'
         'ch.check("round_trip", "pass" if rt_ok else "warn", "English and Chinese round trip", "中英文往返编码",\n'
         '         detail_en="; ".join(f"{r[\'lang\']}: engine {\'ok\' if r[\'engine_ok\'] else \'differs\'}, "\n'
         '                            f"SentencePiece {\'ok\' if r.get(\'faithful_ok\', True) else \'differs\'}" for r in tr["round_trips"]),\n'
         '         detail_zh=";".join(f"{r[\'lang\']}:引擎 {\'一致\' if r[\'engine_ok\'] else \'不一致\'},"\n'
         '                            f"SentencePiece {\'一致\' if r.get(\'faithful_ok\', True) else \'不一致\'}" for r in tr["round_trips"]))\n'
         'st, den, dzh = loading.fidelity_check(tr)\n'
         'ch.check("tokenizer_fidelity", st, "Engine tokenizer = SentencePiece encoding", "引擎分词 = SentencePiece 编码",\n'
         '         detail_en=den, detail_zh=dzh)\n'
         'show_table(["项目 Item", "值 Value"], [[k, tr[k]] for k in ("class", "config_class", "is_fast", "base_vocab", "size",\n'
         '           "bos", "eos", "add_bos_token", "chat_template_present", "chat_template_is_chatml", "has_tokenizer_model")]\n'
         '           + [["added_tokens", ", ".join(f"{t}={i}" for t, i in tr["added_tokens"].items())]])\n'
         'show_table(["语言 Lang", "文本 Text", "引擎往返 Engine round trip", "一致 OK"],\n'
         '           [[r["lang"], r["text"], r["engine_round_trip"], r["engine_ok"]] for r in tr["round_trips"]])'),
    md("### 分词保真度 · Tokenizer fidelity\n\n"
       "逐条样本比较 SentencePiece 的原始编码(BOS 按 `add_bos_token`)与引擎分词器(vLLM 所用的 AutoTokenizer)的 id;"
       "不一致时给出第一个不同的位置及其 piece。 · Per sample text, SentencePiece's own ids (BOS per `add_bos_token`) "
       "against the engine's tokenizer (AutoTokenizer, as vLLM loads it); where they differ, the first differing "
       "position and its pieces."),
    code('fid_rows = [[r["text"], "✅" if r["match"] else "❌", "—" if r["match"] else r["first_mismatch"]["index"],\n'
         '             "" if r["match"] else f"{r[\'first_mismatch\'][\'a\']} {r.get(\'faithful_piece_at\')!r}",\n'
         '             "" if r["match"] else f"{r[\'first_mismatch\'][\'b\']} {r.get(\'engine_piece_at\')!r}",\n'
         '             " ".join(r["faithful_pieces"][:12]), " ".join(r["engine_pieces"][:12])] for r in tr["fidelity"]]\n'
         'FID_H = ["样本 Sample", "一致 Match", "首个不同 First mismatch", "SentencePiece", "引擎 Engine",\n'
         '         "SentencePiece pieces", "引擎 pieces Engine pieces"]\n'
         'show_table(FID_H, fid_rows)\n'
         'decision = prompting.describe(model_dir)\n'
         'ch.data["prompting"] = decision\n'
         'ch.save()\n'
         'show_md(f"**提示输入方式 · How prompts are fed: `{decision[\'mode\']}`**\\n\\n{decision[\'zh\']}\\n\\n{decision[\'en\']}")'),
    md("### 部署时的引擎分词器 · Engine tokenizer as deployed\n\n"
       "上面的保真度检查如实评判模型自带的分词器文件。`engine.tokenizer_override: auto` 时,若其与 SentencePiece 不一致,"
       "本报告把同一 tokenizer.json 以 `PreTrainedTokenizerFast` 原样加载的忠实分词器目录写入本次运行,"
       "并作为 `tokenizer=`(离线引擎)与 `--tokenizer`(`vllm serve`)交给引擎;此处检查实际部署的分词器。 · "
       "The fidelity check above judges the model's own tokenizer files (the truth about what ships). With `engine.tokenizer_override: auto`, where "
       "they differ from SentencePiece, the report writes a faithful tokenizer directory into the run (the same "
       "tokenizer.json, loaded as is as `PreTrainedTokenizerFast`) and gives it to the engine as `tokenizer=` (offline) "
       "and `--tokenizer` (`vllm serve`); this checks the tokenizer as deployed."),
    code('tok_dec = prompting.engine_tokenizer(p, ch.run_dir)\n'
         'dep = loading.deployed_tokenizer(tr, tok_dec)\n'
         'ch.data["engine_tokenizer"] = {"override": p.engine.tokenizer_override,\n'
         '                               "path": None if tok_dec.path is None else str(tok_dec.path.relative_to(ch.run_dir)),\n'
         '                               "en": tok_dec.en, "zh": tok_dec.zh,\n'
         '                               "fidelity": [{k: r[k] for k in ("text", "match", "first_mismatch")} for r in dep["report"]["fidelity"]]}\n'
         'ch.check("engine_tokenizer_deployed", dep["status"], "Engine tokenizer as deployed (with the override) = SentencePiece",\n'
         '         "部署时的引擎分词器(含替换)= SentencePiece 编码", detail_en=dep["detail_en"], detail_zh=dep["detail_zh"])\n'
         'show_table(["样本 Sample", "一致 Match"], [[r["text"], "✅" if r["match"] else "❌"] for r in dep["report"]["fidelity"]])\n'
         'show_md(f"**引擎分词器 · Engine tokenizer: `{ch.data[\'engine_tokenizer\'][\'path\'] or \'model directory\'}`**\\n\\n{tok_dec.zh}\\n\\n{tok_dec.en}")'),
    md("## 4. 架构 · Architecture\n\n"
       "由文件推导(config.json、权重头信息、配置类默认值),不从文档抄写。 · Derived from the files (config.json, "
       "weight headers, config-class defaults), not copied from a document. `source` 列说明每个值的来源 · says "
       "where each value comes from."),
    code('arch_loaded = {r["key"]: r for r in loading.architecture(model_dir)}\n'
         'arch_full = {r["key"]: r for r in loading.architecture(dummy_dir)} if dummy_dir else {}\n'
         'keys = list(arch_full or arch_loaded) + [k for k in arch_loaded if k not in (arch_full or arch_loaded)]\n'
         'arch_rows = []\n'
         'for k in keys:\n'
         '    r = arch_full.get(k) or arch_loaded.get(k)\n'
         '    arch_rows.append([f"{r[\'name_zh\']} {r[\'name_en\']}", arch_full.get(k, {}).get("value", "—"),\n'
         '                      arch_loaded.get(k, {}).get("value", "—"), r["unit"], r["source"]])\n'
         'ARCH_H = ["参数 Parameter", f"完整尺寸架构 Full-size ({dummy_dir.name if dummy_dir else \'—\'})",\n'
         '          f"加载的模型 Loaded model ({model_dir.name})", "单位 Unit", "来源 Source"]\n'
         'ch.data["architecture"] = {"full_size": list(arch_full.values()), "loaded": list(arch_loaded.values())}\n'
         'ch.save()\n'
         'show_table(ARCH_H, arch_rows)'),
    md("## 5. Dummy 权重加载(完整尺寸架构)· Dummy-weight load (full-size architecture)\n\n"
       "vLLM 以随机权重(`load_format=dummy`)实例化真实的 0.5B 形状:证明架构、形状、KV cache 分配和前向计算可运行,"
       "但不证明输出有意义。 · vLLM instantiates the real 0.5B shape with random weights (`load_format=dummy`): it "
       "proves the architecture, shapes, KV-cache sizing and forward pass run, not that outputs mean anything."),
    code('dummy = {"ok": None}\n'
         'if dummy_dir is None:\n'
         '    ch.check("load_dummy", "not_run", "Weight load (dummy)", "权重加载 (dummy)",\n'
         '             detail_en="model.dummy_config is not set in the profile", detail_zh="配置中未设置 model.dummy_config")\n'
         'else:\n'
         '    try:\n'
         '        eng = engine.start(p, ch.evidence_path, which="dummy")\n'
         '    except engine.EngineError as e:\n'
         '        dummy = {"ok": False, "error": str(e)}\n'
         '        ch.check("load_dummy", "fail", "Weight load (dummy)", "权重加载 (dummy)", detail_en=str(e), detail_zh=str(e))\n'
         '    else:\n'
         '        try:\n'
         + "\n".join("            " + ln for ln in SETTINGS.format(key="dummy").splitlines()) + "\n"
         '            ids = prompting.prompt_ids("Hello, my name is", dummy_dir)\n'
         '            g = eng.generate([ids], max_tokens=8, ignore_eos=True)[0]\n'
         '            full = loading.architecture(dummy_dir)\n'
         '            dummy = {"ok": True, "full_size": True, "smoke": len(g.token_ids) == 8, "init_s": round(eng.init_s, 2),\n'
         '                     "kv_cache_tokens": eng.kv_cache_tokens, "max_concurrency": eng.max_concurrency,\n'
         '                     "smoke_tokens": len(g.token_ids), "log": eng.log_facts}\n'
         '        finally:\n'
         '            eng.close()\n'
         '        params_b = next(r["value"] for r in full if r["key"] == "parameters")\n'
         '        ch.check("load_dummy", "pass", "Weight load (dummy)", "权重加载 (dummy)",\n'
         '                 detail_en=f"full-size architecture, {params_b / 1e9:.3f} B parameters, {p.engine.dtype}; "\n'
         '                           f"KV cache {dummy[\'kv_cache_tokens\']} tokens",\n'
         '                 detail_zh=f"完整尺寸架构,{params_b / 1e9:.3f} B 参数,{p.engine.dtype};KV cache {dummy[\'kv_cache_tokens\']} tokens")\n'
         '        ch.check("infer_dummy", "pass" if dummy["smoke"] else "fail", "Inference (dummy)", "推理执行 (dummy)",\n'
         '                 detail_en=f"{dummy[\'smoke_tokens\']}/8 tokens generated from random weights (runs; output meaningless)",\n'
         '                 detail_zh=f"随机权重生成 {dummy[\'smoke_tokens\']}/8 个 token(可运行;输出无意义)")\n'
         '        ch.metric("dummy_init_s", dummy["init_s"], "s", "Engine init (dummy, full size)", "引擎初始化(dummy,完整尺寸)", timing=True)\n'
         '        ch.metric("dummy_kv_cache_tokens", dummy["kv_cache_tokens"], "tokens", "KV cache (dummy, full size)", "KV cache(dummy,完整尺寸)")\n'
         '        ch.metric("dummy_max_concurrency", dummy["max_concurrency"], f"× @ {p.engine.max_model_len}",\n'
         '                  "Concurrency at context (dummy, full size)", "上下文并发(dummy,完整尺寸)")\n'
         'ch.data["dummy"] = {k: v for k, v in dummy.items() if k not in ("init_s", "log")}\n'
         'ch.data.setdefault("timings", {})["dummy"] = {"init_s": dummy.get("init_s"), "log": dummy.get("log")}\n'
         'ch.save()\n'
         'show_table(["项目 Item", "值 Value"], [[k, v] for k, v in dummy.items() if k != "log"])'),
    md("## 6. 真实权重加载 · Real-weight load\n\n"
       "权重文件的大小与 SHA-256、加载耗时、引擎初始化时间、KV cache 容量及其在配置上下文长度下允许的并发,以及首个请求。"
       " · Weight files with size and SHA-256, load time, engine init time, KV-cache capacity and the concurrency it "
       "allows at the configured context, and a first request."),
    code('files = loading.weight_files(model_dir)\n'
         'dtypes = loading.stored_dtypes(model_dir)\n'
         'total = sum(f["bytes"] for f in files)\n'
         'ch.data["weight_files"] = files\n'
         'ch.data["stored_dtypes"] = dtypes\n'
         'ch.metric("weight_gb", round(total / 1e9, 4), "GB", "Weight size", "权重加载大小", key=True,\n'
         '          note=f"{total / 2**30:.3f} GiB, {len(files)} file(s), stored {\', \'.join(dtypes)}")\n'
         'show_table(["文件 File", "字节 Bytes", "SHA-256"], [[f["file"], f["bytes"], f["sha256"]] for f in files])'),
    code('real = {"ok": False}\n'
         'try:\n'
         '    eng = engine.start(p, ch.evidence_path, which="real")\n'
         'except engine.EngineError as e:\n'
         '    real["error"] = str(e)\n'
         '    ch.check("load_real", "fail", "Weight load (real)", "权重加载 (real)", detail_en=str(e), detail_zh=str(e))\n'
         'else:\n'
         '    try:\n'
         + "\n".join("        " + ln for ln in SETTINGS.format(key="real").splitlines()) + "\n"
         '        probes = ch.prompts.prompts\n'
         '        first = next((q for q in probes if q.id == "capital_france"), probes[0])\n'
         '        ids = prompting.prompt_ids(first, model_dir)\n'
         '        g = eng.generate([ids], max_tokens=p.inference.max_tokens)[0]\n'
         '        text = prompting.decode(g.token_ids, model_dir)\n'
         '        gr = grading.grade(text, first.expect)\n'
         '        real.update(ok=True, smoke=len(g.token_ids) > 0, graded=gr.passed, kv_cache_tokens=eng.kv_cache_tokens,\n'
         '                    max_concurrency=eng.max_concurrency, init_s=round(eng.init_s, 2), log=eng.log_facts,\n'
         '                    first_prompt=first.prompt, first_output=text, first_tokens=len(g.token_ids), sha=bool(files),\n'
         '                    full_size=not p.model.is_stand_in)\n'
         '    finally:\n'
         '        eng.close()'),
    code('if real["ok"]:\n'
         '    lf = real["log"]\n'
         '    ch.check("load_real", "pass", "Weight load (real)", "权重加载 (real)",\n'
         '             detail_en=f"{total / 1e9:.4f} GB ({total / 2**30:.3f} GiB), {len(files)} file(s), stored {\', \'.join(dtypes)}, "\n'
         '                       f"run as {p.engine.dtype}",\n'
         '             detail_zh=f"{total / 1e9:.4f} GB({total / 2**30:.3f} GiB),{len(files)} 个文件,存储 {\', \'.join(dtypes)},"\n'
         '                       f"以 {p.engine.dtype} 运行")\n'
         '    ch.check("infer_real", "pass" if real["smoke"] else "fail", "Inference (real weights), first request",\n'
         '             "推理执行 (real weights),首个请求",\n'
         '             detail_en=f"{real[\'first_tokens\']} tokens for {real[\'first_prompt\']!r}; graded: {gr.status} ({gr.detail_en})",\n'
         '             detail_zh=f"{real[\'first_prompt\']!r} 生成 {real[\'first_tokens\']} 个 token;评分:{gr.status}({gr.detail_zh})")\n'
         '    ch.metric("weights_load_s", lf.get("weights_load_s"), "s", "Weight load time", "权重加载耗时", key=True, timing=True)\n'
         '    ch.metric("init_s", real["init_s"], "s", "Engine init time", "引擎初始化总时间", key=True, timing=True)\n'
         '    ch.metric("kv_cache_tokens", real["kv_cache_tokens"], "tokens", "KV cache capacity", "KV Cache 容量", key=True)\n'
         '    ch.metric("max_concurrency", real["max_concurrency"], f"× @ {p.engine.max_model_len} ctx",\n'
         '              "Concurrency at context", "上下文并发", key=True)\n'
         '    show_table(["项目 Item", "值 Value"], [[k, v] for k, v in real.items() if k not in ("log", "first_output")])\n'
         '    show_md("首个请求输出 · First request output (verbatim, escaped):")\n'
         '    show_text(real["first_output"])\n'
         'tok_size = tr["size"]\n'
         'cons = loading.consistency(model_dir, tokenizer_size=tok_size, max_model_len=p.engine.max_model_len,\n'
         '                           kv_cache_tokens=real.get("kv_cache_tokens"))\n'
         'if dummy_dir:\n'
         '    cons_full = loading.consistency(dummy_dir, tokenizer_size=None, max_model_len=p.engine.max_model_len,\n'
         '                                    kv_cache_tokens=dummy.get("kv_cache_tokens"))\n'
         '    cons += [dict(c, id="full_" + c["id"], name_en=c["name_en"] + " (full-size architecture)",\n'
         '                  name_zh=c["name_zh"] + "(完整尺寸架构)") for c in cons_full if c["id"] != "tie_vs_lm_head"]\n'
         'for c in cons:\n'
         '    ch.check(c["id"], c["status"], c["name_en"], c["name_zh"], detail_en=c["detail_en"], detail_zh=c["detail_zh"])\n'
         'ch.data["consistency"] = cons\n'
         'ch.data["real"] = {k: v for k, v in real.items() if k not in ("init_s", "log")}\n'
         'ch.data.setdefault("timings", {})["real"] = {"init_s": real.get("init_s"), "log": real.get("log")}\n'
         'ch.save()\n'
         'show_table(["检查 Check", "状态 Status", "说明 Detail"], [[f"{c[\'name_zh\']} {c[\'name_en\']}", c["status"], c["detail_en"]] for c in cons])'),
    md("## 7. Dummy 与真实权重对照 · Dummy vs real matrix\n\n"
       "dummy 加载证明形状与运行路径;只有真实权重能证明权重文件、输出层绑定和输出质量。 · The dummy load proves shapes "
       "and the execution path; only the real weights prove the weight files, the output-head tying and output quality."),
    code('real["tie_ok"] = next((c["status"] == "pass" for c in cons if c["id"] == "tie_vs_lm_head"), None)\n'
         'mx = loading.matrix(dummy, real)\n'
         'ch.data["matrix"] = mx\n'
         'ch.save()\n'
         'MX_H = ["验证内容 What", "dummy", "real", "仅由 Only by"]\n'
         'show_table(MX_H, [[f"{r[\'what_zh\']} · {r[\'what_en\']}", r["dummy"], r["real"], r["only"]] for r in mx])'),
    md("## 报告卡片 · Report card"),
    code('ch.card("Tokenizer fidelity", "分词保真度", md_table(FID_H[:5], [r[:5] for r in fid_rows]) + "\\n\\n" + md_escape(decision["en"]))\n'
         'ch.card("Architecture (derived from the files)", "架构(由文件推导)", md_table(ARCH_H, arch_rows))\n'
         'ch.card("Weight files", "权重文件", md_table(["文件 File", "字节 Bytes", "SHA-256"], [[f["file"], f["bytes"], f["sha256"]] for f in files]))\n'
         'ch.card("Dummy vs real weights", "Dummy 与真实权重", md_table(MX_H, [[f"{r[\'what_zh\']} · {r[\'what_en\']}", r["dummy"], r["real"], r["only"]] for r in mx]))\n'
         'ch.card("Engine settings", "引擎设置", md_table(["设置 Setting", "dummy", "real"],\n'
         '        [[k, ch.data["engine_settings"].get("dummy", {}).get(k, "—"), v] for k, v in ch.data["engine_settings"].get("real", {}).items()]))\n'
         'ch.finish();'),
])

# ------------------------------------------------------------------------------------------------
write("03_inference", [
    md("# 03 · 推理测试 · Inference"),
    md("params/prompts.yaml 中的每个探针提示(包括原报告的五个英文提示与三个中文提示)在 temperature 0 下运行,"
       "max_tokens 取自参数。输出原样(已转义)展示,并按提示的预期评分:✅ 通过,⚠️ 未达预期(附原因)。"
       "所有提示在一个引擎中以一个批次运行,以 SentencePiece token id 输入(见加载章节)。", "lang-zh"),
    md("Every probe of params/prompts.yaml (the original document's five English and three Chinese prompts "
       "included) at temperature 0 with the configured max_tokens. Each output is shown verbatim (escaped) and "
       "graded against its expectation: ✅ pass, ⚠️ expectation not met (with the reason). All prompts run as one "
       "batch in one engine, fed as SentencePiece token ids (see the loading chapter).", "lang-en"),
    params_cell(),
    code(OPEN.format(id="03_inference") +
         "from bitcpm_validation import grading\n"
         "probes = ch.prompts.prompts\n"
         "prepared = prompting.prepare(probes, model_dir)\n"
         'orig_en = [q.id for q in probes if q.from_original and q.lang == "en"]\n'
         'ch.check("original_prompts", "pass" if len(orig_en) >= 5 else "warn", "The original\'s five English prompts included",\n'
         '         "包含原报告的五个英文提示", detail_en=f"{len(orig_en)} English prompts from the original: {\', \'.join(orig_en)}",\n'
         '         detail_zh=f"原报告英文提示 {len(orig_en)} 个:{\', \'.join(orig_en)}")\n'
         + STAND_IN),
    md("## 引擎设置 · Engine settings"),
    code('eng = engine.start(p, ch.evidence_path, which="real")\n'
         'try:\n'
         + "\n".join("    " + ln for ln in SETTINGS.format(key="real").splitlines()) + "\n"
         '    gens = eng.generate([x.token_ids for x in prepared], max_tokens=p.inference.max_tokens)\n'
         'finally:\n'
         '    eng.close()\n'
         'ch.data.setdefault("timings", {})["init_s"] = round(eng.init_s, 2)\n'
         'ch.save()'),
    md("## 输出与评分 · Outputs and grades"),
    code('outputs = []\n'
         'for q, x, g in zip(probes, prepared, gens):\n'
         '    text = prompting.decode(g.token_ids, model_dir)\n'
         '    gr = grading.grade(text, q.expect)\n'
         '    outputs.append({"id": q.id, "lang": q.lang, "kind": q.kind, "prompt": q.prompt, "chat": q.chat,\n'
         '                    "from_original": q.from_original, "prompt_token_ids": x.token_ids, "token_ids": g.token_ids,\n'
         '                    "text": text, "engine_text": g.text, "finish_reason": g.finish_reason, "grade": gr.as_dict()})\n'
         '    ch.check(f"probe_{q.id}", gr.status, f"Probe {q.id} ({q.lang}, {q.kind})", f"探针 {q.id}({q.lang},{q.kind})",\n'
         '             detail_en=gr.detail_en, detail_zh=gr.detail_zh)\n'
         '    show_md(f"### {q.id} — {gr.status == \'pass\' and \'✅\' or \'⚠️\'}\\n\\n**输入 Input** ({q.lang}, {q.kind}{\', chat\' if q.chat else \'\'}):")\n'
         '    show_text(q.prompt)\n'
         '    show_md(f"**输出 Output** ({len(g.token_ids)} tokens, finish: {g.finish_reason}):")\n'
         '    show_text(text)\n'
         '    show_md("**评分 Grade**: " + md_escape(gr.detail_zh) + "<br>" + md_escape(gr.detail_en))\n'
         'ch.data["outputs"] = outputs\n'
         'n_pass = sum(o["grade"]["status"] == "pass" for o in outputs)\n'
         'ch.metric("probes_passed", f"{n_pass}/{len(outputs)}", "", "Probes passed", "探针通过", key=True)\n'
         'ch.metric("probes_passed_n", n_pass, "", "Probes passed (count)", "探针通过数")\n'
         'ch.metric("output_tokens", sum(len(o["token_ids"]) for o in outputs), "tokens", "Output tokens", "输出 token 数")\n'
         'ch.save()'),
    md("## 汇总 · Summary table"),
    code('SUM_H = ["提示 Prompt", "输入 Input", "输出 Output", "评分 Grade", "原因 Reason"]\n'
         'sum_rows = [[o["id"], o["prompt"], o["text"], "✅" if o["grade"]["status"] == "pass" else "⚠️",\n'
         '             o["grade"]["detail_zh"] + " / " + o["grade"]["detail_en"]] for o in outputs]\n'
         'show_table(SUM_H, sum_rows)\n'
         'ch.card("Sample outputs (temperature 0)", "推理输出样例(temperature 0)",\n'
         '        f"max_tokens {p.inference.max_tokens}; prompts fed as `{prepared[0].mode}` token ids.\\n\\n" + md_table(SUM_H, sum_rows))\n'
         'ch.card("Engine settings", "引擎设置", md_table(["设置 Setting", "值 Value"], settings))\n'
         'ch.finish();'),
])

# ------------------------------------------------------------------------------------------------
write("04_determinism", [
    md("# 04 · 推理自洽性 · Determinism"),
    md("temperature 0 下,N 个提示 × R 次运行在同一个引擎中逐 token 比较;再重启引擎比较一次;并比较每个提示单独运行"
       "与在一批其他提示中运行的结果。引擎模式(eager 或 graph)与平台的确定性环境变量一并记录。"
       "原报告的结论是“5 组 prompt × 2 次运行完全一致”(每次 64 token);这里给出 token 级的表格与首个分歧位置。"
       "每次生成都跑满 max_tokens(忽略 EOS),使每组比较的 token 数相同。本章启动两个引擎(重启)。", "lang-zh"),
    md("At temperature 0: N prompts × R runs compared token by token in one engine; once more after an engine "
       "restart; and each prompt alone against the same prompt inside a batch of others. The engine mode (eager or "
       "graph) and the platform's determinism environment variables are recorded beside the table. The original "
       "document said \"5 prompts × 2 runs identical\" (64 tokens each); here is the token-level table with the first "
       "divergence. Every generation runs the full max_tokens (EOS ignored) so that each comparison covers the same number "
       "of tokens. "
       "This chapter starts two engines (the restart).", "lang-en"),
    params_cell(),
    code(OPEN.format(id="04_determinism") +
         "from bitcpm_validation import determinism as D\n"
         "dp = p.determinism\n"
         "probes = D.select_prompts(ch.prompts, dp.prompts)\n"
         "prepared = prompting.prepare(probes, model_dir)\n"
         "batch = [x.token_ids for x in prepared]\n"
         'show_md(f"N = {len(probes)} 提示 prompts × R = {dp.runs} 次 runs, max_tokens {dp.max_tokens}; "\n'
         '        f"重启 restart: {dp.restart}; 单独 vs 批内 alone vs batch: {dp.batch}")'),
    md("## 引擎设置与确定性环境变量 · Engine settings and determinism environment"),
    code('eng = engine.start(p, ch.evidence_path, which="real")\n'
         'try:\n'
         + "\n".join("    " + ln for ln in SETTINGS.format(key="first").splitlines()) + "\n"
         '    runs = [eng.generate_ids(batch, max_tokens=dp.max_tokens, ignore_eos=True) for _ in range(dp.runs)]\n'
         '    alone = [eng.generate_ids([ids], max_tokens=dp.max_tokens, ignore_eos=True)[0] for ids in batch] if dp.batch else None\n'
         '    platform, mode = eng.platform, eng.settings()["mode"]\n'
         'finally:\n'
         '    eng.close()\n'
         'env_rows = D.env_rows(platform)\n'
         'ch.data["platform"], ch.data["mode"], ch.data["env"] = platform, mode, env_rows\n'
         'ch.metric("mode", mode, "", "Engine mode", "引擎模式")\n'
         'show_table(["变量 Variable", "建议值 Recommended", "实际值 Actual"], [[r["var"], r["recommended"], r["actual"]] for r in env_rows])'),
    code('restart = None\n'
         'if dp.restart:\n'
         '    eng = engine.start(p, ch.evidence_path, which="real")\n'
         '    try:\n'
         '        restart = eng.generate_ids(batch, max_tokens=dp.max_tokens, ignore_eos=True)\n'
         '    finally:\n'
         '        eng.close()'),
    md("## Token 级比较 · Token-level comparison"),
    code('res = D.compare_all([x.id for x in prepared], runs, restart=restart, alone=alone)\n'
         'ch.data["rows"] = res["rows"]\n'
         'ch.data["totals"] = res["totals"]\n'
         'ch.data["generations"] = {"runs": runs, "restart": restart, "alone": alone}\n'
         'ch.save()\n'
         'for c in D.checks(res):\n'
         '    ch.check(**c)\n'
         't = res["totals"]["all"]\n'
         'ch.metric("identical_tokens", f"{t[\'identical\']}/{t[\'tokens_compared\']}", "tokens",\n'
         '          "Determinism: identical tokens / compared", "自洽性:相同 token / 比较 token", key=True)\n'
         'ch.metric("identical_share", round(t["identical_share"], 6) if t["identical_share"] is not None else None, "",\n'
         '          "Determinism: identical share", "自洽性:相同比例")\n'
         'show_table(D.TABLE_HEADERS, D.table_rows(res["rows"]))\n'
         'show_table(["比较 Comparison", "行 Rows", "一致行 Matching", "比较的 token Tokens compared", "相同 Identical"],\n'
         '           [[k, v["rows"], v["rows_matching"], v["tokens_compared"], v["identical"]] for k, v in res["totals"].items()])'),
    code('ch.card("Determinism (temperature 0, token level)", "推理自洽性(temperature 0,token 级)",\n'
         '        f"Engine mode **{mode}** on **{platform}**; {len(probes)} prompts × {dp.runs} runs, restart {dp.restart}, "\n'
         '        f"alone vs batch {dp.batch}; max_tokens {dp.max_tokens}.\\n\\n" + md_table(D.TABLE_HEADERS, D.table_rows(res["rows"]))\n'
         '        + "\\n\\n" + md_table(["变量 Variable", "建议值 Recommended", "实际值 Actual"], [[r["var"], r["recommended"], r["actual"]] for r in env_rows]))\n'
         'ch.card("Engine settings", "引擎设置", md_table(["设置 Setting", "值 Value"], settings))\n'
         'ch.finish();'),
])

# ------------------------------------------------------------------------------------------------
write("05_chinese", [
    md("# 05 · 中文能力 · Chinese"),
    md("原报告以肉眼判断中文输出(“重复严重”)。本章对原报告的三个中文提示及更多提示(翻译提示,以及通过对话模板发送的"
       "同样三个问题)逐条计算:汉字比例、distinct-n、最长重复片段及其占比,并按参数中写明的阈值给出结论。", "lang-zh"),
    md("The original document judged Chinese output by eye (\"repetition severe\"). For its three Chinese prompts and "
       "more (the translation prompt, and the same three questions sent through the chat template) this chapter "
       "computes per output the CJK share, distinct-n and the longest repeated span with its share, and gives a "
       "verdict against thresholds written in the params.", "lang-en"),
    params_cell(),
    code(OPEN.format(id="05_chinese") +
         "from bitcpm_validation import chinese as C\n"
         "cp = p.chinese\n"
         "probes = C.select_prompts(ch.prompts)\n"
         "prepared = prompting.prepare(probes, model_dir)\n"
         + STAND_IN),
    md("## 阈值 · Thresholds"),
    code('TH_H = ["指标 Metric", "说明 Meaning", "要求 Rule", "不满足时 When not met"]\n'
         'th_rows = [[t["metric"], f"{t[\'name_zh\']} · {t[\'name_en\']}", t["rule"], f"{t[\'fails_zh\']} · {t[\'fails_en\']}"]\n'
         '           for t in C.thresholds(cp)]\n'
         'ch.data["thresholds"] = C.thresholds(cp)\n'
         'show_table(TH_H, th_rows)'),
    md("## 引擎设置 · Engine settings"),
    code('eng = engine.start(p, ch.evidence_path, which="real")\n'
         'try:\n'
         + "\n".join("    " + ln for ln in SETTINGS.format(key="real").splitlines()) + "\n"
         '    gens = eng.generate([x.token_ids for x in prepared], max_tokens=cp.max_tokens)\n'
         'finally:\n'
         '    eng.close()'),
    md("## 逐条结果 · Per output"),
    code('rows = []\n'
         'for q, x, g in zip(probes, prepared, gens):\n'
         '    text = prompting.decode(g.token_ids, model_dir)\n'
         '    m = C.metrics(text)\n'
         '    v = C.verdict(m, cp)\n'
         '    rows.append({"id": q.id, "prompt": q.prompt, "chat": q.chat, "from_original": q.from_original, "text": text,\n'
         '                 "tokens": len(g.token_ids), **m.as_dict(), "verdict": v.status, "label_en": v.label_en,\n'
         '                 "label_zh": v.label_zh, "detail_en": v.detail_en, "detail_zh": v.detail_zh})\n'
         '    ch.check(f"zh_{q.id}", v.status, f"Chinese: {q.id}" + (" (chat)" if q.chat else ""), f"中文:{q.id}" + ("(对话)" if q.chat else ""),\n'
         '             detail_en=f"{v.label_en}: {v.detail_en}", detail_zh=f"{v.label_zh}:{v.detail_zh}")\n'
         '    show_md(f"### {q.id}{\' (chat)\' if q.chat else \'\'} — {\'✅\' if v.status == \'pass\' else \'⚠️\'} {v.label_zh} · {v.label_en}")\n'
         '    show_text(q.prompt)\n'
         '    show_text(text)\n'
         'ch.data["outputs"] = rows\n'
         'ch.save()\n'
         'n_ok = sum(r["verdict"] == "pass" for r in rows)\n'
         'ch.metric("zh_passed", f"{n_ok}/{len(rows)}", "", "Chinese probes without severe repetition", "中文探针(无严重重复)", key=True)\n'
         'ch.metric("zh_mean_cjk_share", round(sum(r["cjk_share"] for r in rows) / len(rows), 4), "",\n'
         '          "Mean CJK share", "平均汉字比例")\n'
         'ZH_H = ["提示 Prompt", "输出 Output", "汉字比例 CJK share", "distinct-1", "distinct-2", "最长重复片段 Longest repeat",\n'
         '        "重复占比 Repeat share", "结论 Verdict"]\n'
         'zh_rows = [[r["id"] + (" (chat)" if r["chat"] else ""), r["text"], r["cjk_share"], r["distinct_1"], r["distinct_2"],\n'
         '            f"{r[\'longest_repeat\']!r} × {r[\'longest_repeat_count\']}", r["repeat_share"],\n'
         '            ("✅ " if r["verdict"] == "pass" else "⚠️ ") + r["label_zh"] + " · " + r["label_en"]] for r in rows]\n'
         'show_table(ZH_H, zh_rows)'),
    code('ch.card("Chinese probes", "中文能力", md_table(ZH_H, zh_rows) + "\\n\\n" + md_table(TH_H, th_rows))\n'
         'ch.card("Engine settings", "引擎设置", md_table(["设置 Setting", "值 Value"], settings))\n'
         'ch.finish();'),
])
print("wrote 02_loading, 03_inference, 04_determinism, 05_chinese")
