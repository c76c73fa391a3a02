"""Write notebooks/11_provenance.ipynb (no outputs). The notebook is the source; re-run this after editing here."""
import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook
from pathlib import Path

NB = Path(__file__).resolve().parents[1] / "notebooks"

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

cells = [
    md("# 11 · 来源与可复现性 · Provenance"),
    md("本章记录本次运行由什么构成:每个输入文件(权重、配置、分词器、参数文件、提示词文件)的 SHA-256、"
       "项目的 git 提交(以及工作区是否有未提交修改)、软件版本、随机种子和引擎设置。"
       "当 `trust_remote_code` 为真且模型目录的 `config.json` 含有 `auto_map` 时,引擎会执行模型目录中的 Python 文件:"
       "本章逐一列出这些文件及其 SHA-256。", "lang-zh"),
    md("What this run was made of: the SHA-256 of every input file (weights, config, tokenizer, params file, prompts "
       "file), the project's git commit (and whether the working tree had uncommitted changes), software versions, "
       "seeds and engine settings. When `trust_remote_code` is true and the model directory's `config.json` has an "
       "`auto_map`, the engine executes Python files from the model directory: this chapter lists each of them with "
       "its SHA-256.", "lang-en"),
    code('params_path = "params/default.yaml"\nrun_dir = "runs/lab"', "parameters"),
    code("import json\n"
         "from bitcpm_validation.chapter import Chapter\n"
         "from bitcpm_validation import provenance as P\n"
         "from bitcpm_validation.textsafe import show_table, show_md, md_table, md_code\n\n"
         'ch = Chapter.open("11_provenance", params_path, run_dir)\n'
         "prov = P.collect(ch.params, ch.run_dir)\n"
         'ch.data["provenance"] = prov\n'
         "ch.save()\n"
         'ch.evidence("provenance (bitcpm_validation.provenance.collect):\\n" + json.dumps(prov, ensure_ascii=False, indent=2))\n'
         'show_md(f"模型目录 Model directory: `{prov[\'model_path\']}` · 参数文件 Params file: `{prov[\'params_path\']}`")'),
    md("## 输入文件哈希 · Input hashes"),
    code("inputs = prov[\"inputs\"]\n"
         "rows = [(e[\"set\"], e[\"role\"], e[\"path\"], \"—\" if e[\"bytes\"] is None else f\"{e['bytes']:,}\", e[\"sha256\"] or \"missing 缺失\")\n"
         "        for e in inputs]\n"
         'show_table(["集合 Set", "角色 Role", "文件 File", "字节 Bytes", "SHA-256"], rows)\n'
         'model_files = [e for e in inputs if e["set"] == "model"]\n'
         'weights = [e for e in model_files if e["role"] == "weights"]\n'
         'missing = [e for e in inputs if e.get("missing")]\n'
         "if not prov[\"model_dir_exists\"]:\n"
         '    ch.check("inputs_hashed", "fail", "Input files hashed", "输入文件已计算哈希",\n'
         "             f\"model directory {prov['model_path']} not found: nothing to hash\",\n"
         "             f\"模型目录 {prov['model_path']} 不存在,无法计算哈希\")\n"
         "elif not weights or missing:\n"
         '    what = "no weight files" if not weights else f"missing: {\', \'.join(e[\'path\'] for e in missing)}"\n'
         '    ch.check("inputs_hashed", "warn", "Input files hashed", "输入文件已计算哈希",\n'
         '             f"{len(model_files)} model file(s) hashed; {what}", f"已计算 {len(model_files)} 个模型文件的哈希;{what}")\n'
         "else:\n"
         '    ch.check("inputs_hashed", "pass", "Input files hashed", "输入文件已计算哈希",\n'
         '             f"{len(inputs)} file(s), {len(weights)} weight file(s)", f"{len(inputs)} 个文件,其中权重文件 {len(weights)} 个")\n'
         'ch.metric("input_files", len(inputs), "", "Input files hashed", "已计算哈希的输入文件")\n'
         'ch.metric("weight_bytes", sum(e["bytes"] or 0 for e in weights), "B", "Weight files size", "权重文件大小")\n'
         'for e in weights:\n'
         '    if e["path"].endswith(".safetensors"):\n'
         '        ch.metric(f"sha256:{e[\'path\']}", e["sha256"], "", f"SHA-256 of {e[\'path\']}", f"{e[\'path\']} 的 SHA-256")'),
    md("## 远程代码 · Remote code (`trust_remote_code`)"),
    md("`trust_remote_code` 必须在参数文件中显式写出:为真时,下表中标记为“执行”的文件会在引擎启动时被导入执行。", "lang-zh"),
    md("`trust_remote_code` must be written explicitly in the params file: when true, the files marked “executed” "
       "below are imported and run when the engine starts.", "lang-en"),
    code("rc = prov[\"remote_code\"]\n"
         "trc = rc[\"trust_remote_code\"]\n"
         "if rc[\"explicit\"]:\n"
         '    ch.check("trust_remote_code_explicit", "pass", "trust_remote_code set explicitly", "trust_remote_code 已显式设置",\n'
         "             f\"trust_remote_code: {str(trc).lower()} in {prov['params_path']}\", f\"参数文件 {prov['params_path']} 中 trust_remote_code: {str(trc).lower()}\")\n"
         "else:\n"
         '    ch.check("trust_remote_code_explicit", "warn", "trust_remote_code set explicitly", "trust_remote_code 已显式设置",\n'
         "             f\"not written in {prov['params_path']}: the default ({str(trc).lower()}) applied; write it explicitly\",\n"
         "             f\"参数文件 {prov['params_path']} 未写明,使用了默认值 {str(trc).lower()};请显式写出\")\n"
         "rc_rows = P.remote_code_rows(prov)\n"
         "executed = [r for r in rc_rows if r[\"executed\"]]\n"
         "if rc_rows:\n"
         '    show_table(["集合 Set", "文件 File", "方式 How", "引用 Referenced by", "SHA-256", "执行 Executed"],\n'
         '               [(r["set"], r["file"], r["how"], r["referenced_by"] or "—", r["sha256"] or "missing 缺失",\n'
         '                 "✅ 执行 executed" if r["executed"] else "— 未执行 not executed") for r in rc_rows])\n'
         "else:\n"
         '    show_md("模型目录中没有 Python 文件 · no Python files in the model directories.")\n'
         "status, en, zh = P.remote_code_check(prov)\n"
         'ch.check("remote_code_listed", status, "Executed remote code listed", "执行的远程代码已列出", en, zh)\n'
         "show_md(f\"{'✅' if status == 'pass' else '⚠️' if status == 'warn' else '—'} {zh} · {en}\")\n"
         'ch.metric("remote_code_files", len(executed), "", "Remote-code files executed", "执行的远程代码文件", key=True)'),
    md("## 提交与版本 · Commit and versions"),
    code("g = prov[\"git\"]\n"
         "show_table([\"项目 Item\", \"值 Value\"], [(\"提交 Commit\", g.get(\"commit\") or g.get(\"note\")), (\"分支 Branch\", g.get(\"branch\") or \"—\"),\n"
         "          (\"未提交修改 Uncommitted changes\", \"—\" if g.get(\"dirty\") is None else (\"yes 是: \" + \", \".join(g.get(\"changed_files\", [])) if g[\"dirty\"] else \"no 否\")),\n"
         "          (\"主机 Host\", prov[\"host\"][\"hostname\"]), (\"系统 OS\", prov[\"host\"][\"os\"])])\n"
         "if g.get(\"commit\") is None:\n"
         '    ch.check("git_commit", "warn", "Project commit recorded", "已记录项目提交", g.get("note", "unknown"), "不是 git 检出目录,提交未知")\n'
         "elif g[\"dirty\"]:\n"
         '    ch.check("git_commit", "warn", "Project commit recorded", "已记录项目提交",\n'
         "             f\"{g['commit'][:12]} with uncommitted changes: the code that ran is not exactly that commit\",\n"
         "             f\"{g['commit'][:12]},但工作区有未提交修改:运行的代码与该提交不完全一致\")\n"
         "else:\n"
         '    ch.check("git_commit", "pass", "Project commit recorded", "已记录项目提交", f"{g[\'commit\'][:12]}, clean", f"{g[\'commit\'][:12]},工作区干净")\n'
         'ch.metric("git_commit", (g.get("commit") or "unknown")[:12] + ("-dirty" if g.get("dirty") else ""), "", "Project commit", "项目提交", key=True)\n'
         'show_table(["软件 Software", "版本 Version"], [(k, v or "— 未安装 not installed") for k, v in prov["versions"].items()])'),
    md("## 种子与引擎设置 · Seeds and engine settings"),
    code('show_table(["种子 Seed", "值 Value"], [(k, "— 未设置 unset" if v is None else v) for k, v in prov["seeds"].items()])\n'
         "eng = prov[\"engine\"]\n"
         "keys = sorted(set(eng.get(\"real\", {})) | set(eng.get(\"dummy\", {})))\n"
         'show_table(["设置 Setting", "真实权重 Real weights", "虚拟权重 Dummy weights"],\n'
         '           [(k, eng.get("real", {}).get(k, "—"), eng.get("dummy", {}).get(k, "—")) for k in keys])'),
    code("vers = prov[\"versions\"]\n"
         "card = [\"#### 输入文件 · Input files\", \"\",\n"
         "        md_table([\"集合 Set\", \"角色 Role\", \"文件 File\", \"SHA-256\"], [(e[\"set\"], e[\"role\"], e[\"path\"], e[\"sha256\"] or \"missing\") for e in inputs\n"
         "                 if e[\"role\"] in (\"weights\", \"config\", \"tokenizer\", \"params\", \"prompts\")]), \"\",\n"
         "        f\"#### 远程代码 · Remote code (trust_remote_code: {str(trc).lower()}{'' if rc['explicit'] else ', default'})\", \"\",\n"
         "        md_table([\"集合 Set\", \"文件 File\", \"SHA-256\", \"执行 Executed\"], [(r[\"set\"], r[\"file\"], r[\"sha256\"] or \"missing\", \"yes\" if r[\"executed\"] else \"no\") for r in rc_rows])\n"
         "        if rc_rows else \"—\", \"\",\n"
         "        \"#### 提交、版本、种子 · Commit, versions, seeds\", \"\",\n"
         "        md_table([\"项目 Item\", \"值 Value\"], [(\"commit\", (g.get(\"commit\") or \"unknown\") + (\" (dirty)\" if g.get(\"dirty\") else \"\"))]\n"
         "                 + [(k, v) for k, v in vers.items() if v] + [(k, v) for k, v in prov[\"seeds\"].items() if v is not None]), \"\",\n"
         "        \"#### 引擎设置 · Engine settings\", \"\",\n"
         "        md_table([\"设置 Setting\", \"值 Value\"], [(k, v) for k, v in eng.get(\"real\", {}).items()])]\n"
         'ch.card("Provenance", "来源与可复现性", "\\n".join(str(x) for x in card))\n'
         "ch.finish();"),
]
nb = new_notebook(cells=cells, metadata={"kernelspec": {"name": "python3", "display_name": "Python 3 (bitcpm-validation)", "language": "python"},
                                         "language_info": {"name": "python"}})
for i, c in enumerate(nb.cells):
    c["id"] = f"11-{i:02d}"
nbformat.write(nb, NB / "11_provenance.ipynb")
print("ok")
