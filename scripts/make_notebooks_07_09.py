"""Write notebooks/07_performance.ipynb, 08_serving.ipynb and 09_accuracy.ipynb (no outputs).

The notebooks are the source; this script is how they were generated (re-run it after editing here).
"""
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


PARAMS = code('params_path = "params/default.yaml"\nrun_dir = "runs/lab"', "parameters")
META = {"kernelspec": {"name": "python3", "display_name": "Python 3 (bitcpm-validation)", "language": "python"},
        "language_info": {"name": "python"}}


def write(name, cells):
    nb = new_notebook(cells=cells, metadata=META)
    for i, c in enumerate(nb.cells):
        c["id"] = f"{name[:2]}-{i:02d}"
    nbformat.write(nb, NB / f"{name}.ipynb")


# ------------------------------------------------------------------------------------------------
write("07_performance", [
    md("# 07 · 性能 · Performance"),
    md("本章用 vLLM 自带的基准工具测速:`vllm bench latency`(离线引擎,批大小 1)与 `vllm bench serve`(对 OpenAI 服务,"
       "逐级并发)。模型为真实 0.5B 结构;没有真实权重时使用 dummy 权重(`--load-format dummy`),速度只取决于结构与设备,"
       "与权重数值无关。所有数字都来自本次运行工具输出的 JSON。另在本次运行中实测内存带宽,按“每输出一个 token 需读一遍全部"
       "权重与 KV 缓存”算出带宽上限,并给出每个实测值占上限的百分比。原文档的数字(昇腾 910B3)单独列出,仅供参考,来自另一台机器。",
       "lang-zh"),
    md("Speed measured with vLLM's own benchmark tools: `vllm bench latency` (offline engine, batch 1) and "
       "`vllm bench serve` (against the OpenAI server, one run per concurrency level). The model is the real 0.5B "
       "shape; where real weights are absent it runs with dummy weights (`--load-format dummy`): speed depends on "
       "shape and device, not on weight values. Every figure comes from the JSON the tools wrote in this run. The "
       "memory bandwidth is measured in this run too; the bandwidth-bound decode limit (each output token reads all "
       "weights and the KV cache once) is computed from it and each measured figure is shown as a percent of it. "
       "The original document's figures (Ascend 910B3) are shown for reference only: another machine.", "lang-en"),
    PARAMS,
    code("import json\n"
         "from pathlib import Path\n"
         "from bitcpm_validation.chapter import Chapter, quiet_logs\n"
         "from bitcpm_validation import performance as P, server, engine\n"
         "from bitcpm_validation.textsafe import show_table, show_md, show_text, md_table, md_code\n\n"
         "quiet_logs()\n"
         'ch = Chapter.open("07_performance", params_path, run_dir)\n'
         "pp = ch.params.performance\n"
         "platform = engine.detect_platform()\n"
         "# real weights when asked for and present; else the full-size architecture with dummy weights\n"
         "has_real = ch.params.model_path.is_dir() and any(ch.params.model_path.glob('*.safetensors'))\n"
         'which = "real" if (pp.model == "real" and has_real) else "dummy"\n'
         'model_dir = ch.params.model_path if which == "real" else ch.params.dummy_config_path\n'
         'arith = P.model_arith(model_dir / "config.json", ch.params.engine.dtype)\n'
         'ch.data["setup"] = dict(which=which, model_dir=str(model_dir), platform=platform, input_len=pp.input_len,\n'
         "                        output_len=pp.output_len, num_iters=pp.num_iters, concurrency=list(pp.concurrency),\n"
         "                        requested=pp.model, real_weights_present=has_real)\n"
         'ch.data["model_arith"] = arith\n'
         "ch.save()\n"
         'show_table(["项目 Item", "值 Value"], [\n'
         '    ["权重 Weights", "dummy(真实 0.5B 结构,无权重数值 · real 0.5B shape, no weight values)" if which == "dummy" else "real 真实权重"],\n'
         '    ["模型目录 Model dir", str(model_dir)], ["平台 Platform", platform],\n'
         '    ["参数量 Parameters", f"{arith[\'params\']:,}"], ["权重字节 Weight bytes", f"{arith[\'weight_bytes\'] / 1e9:.3f} GB ({ch.params.engine.dtype})"],\n'
         '    ["KV 字节/token KV bytes per token", f"{arith[\'kv_bytes_per_token\']:,}"],\n'
         '    ["输入/输出长度 Input / output len", f"{pp.input_len} / {pp.output_len}"], ["并发 Concurrency", str(list(pp.concurrency))],\n'
         "])"),
    md("## 内存带宽 · Memory bandwidth"),
    md("在引擎所在设备上对一块大张量做复制(读 + 写字节计入)与只读归约(解码每步读一遍权重即是只读),各取多次中最好的一次;"
       "在基准测试前后各测一次,取本次运行观测到的最好值作为上限(共享机器上单次测量可能恰逢繁忙)。CPU 上 vLLM 的推理线程只绑定"
       "部分核心,而本测试使用 torch 的全部线程。", "lang-zh"),
    md("A large tensor on the engine's device: a copy (bytes read + written) and a read-only reduction (what a decode "
       "step does with the weights), best of several repeats; measured before and again after the benchmarks, and the "
       "best observed value is the limit (on a shared machine a single measurement may catch a busy moment). On CPU "
       "vLLM binds its inference threads to a subset of cores while this test uses all of torch's threads.", "lang-en"),
    code("bw = P.measure_bandwidth(platform, size_mib=pp.bandwidth_mib)\n"
         'ch.data["bandwidth"] = bw\n'
         'ch.evidence(f"=== bandwidth: {json.dumps(bw)}")\n'
         'show_table(["项目 Item", "值 Value"], [["设备 Device", bw["device"]], ["方法 Method", bw["method"]],\n'
         '           ["缓冲区 Buffer", f"{bw[\'buffer_mib\']} MiB"], ["线程 Threads", bw["threads"]],\n'
         '           ["复制 Copy", f"{bw[\'copy_gb_s\']:.2f} GB/s"], ["只读 Read", f"{bw[\'read_gb_s\']:.2f} GB/s"]])'),
    md("## vllm bench latency(批大小 1 · batch 1)"),
    code('lat_json = ch.artifacts_dir / "bench_latency_b1.json"\n'
         'lat_run = P.run_latency(ch.params, which, lat_json, ch.evidence_path, timeout=pp.timeout_s)\n'
         'lat = P.parse_latency(lat_run["result"], pp.output_len)\n'
         'ch.data["latency"] = {"command": lat_run["command"], "parsed": lat, "artifact": lat_json.name}\n'
         'ch.data.setdefault("timings", {})["bench_latency_wall_s"] = round(lat_run["wall_s"], 2)\n'
         "ch.save()\n"
         'ch.check("bench_latency", "pass", "vllm bench latency ran", "vllm bench latency 运行成功",\n'
         '         detail_en=f"{lat[\'iterations\']} iterations, avg {lat[\'avg_latency_s\']:.3f} s per request",\n'
         '         detail_zh=f"{lat[\'iterations\']} 次迭代,平均每请求 {lat[\'avg_latency_s\']:.3f} 秒")\n'
         'show_md(md_code(lat_run["command"], "bash"))\n'
         'show_table(["指标 Metric", "值 Value"], [["平均延迟 Avg latency", f"{lat[\'avg_latency_s\']:.3f} s"],\n'
         '           ["p50 / p99", f"{lat[\'p50_latency_s\']:.3f} / {lat[\'p99_latency_s\']:.3f} s"],\n'
         '           ["输出速度 Output tok/s", f"{lat[\'output_tok_s\']:.2f}"]])'),
    md("## vllm bench serve:并发扫描 · concurrency sweep"),
    md("启动一次 OpenAI 服务(参数与离线引擎相同),对每个并发级别运行一次 `vllm bench serve`(随机数据集,`--ignore-eos`,"
       "固定输入/输出长度)。", "lang-zh"),
    md("One OpenAI server start (same settings as the offline engine), one `vllm bench serve` per concurrency level "
       "(random dataset, `--ignore-eos`, fixed input / output lengths).", "lang-en"),
    code("with server.serving(ch.params, ch.evidence_path, which) as srv:\n"
         "    tokenizer = srv.model_path or str(model_dir)\n"
         "    sweep = P.run_serve_sweep(ch.params, srv.root_url, srv.model, tokenizer, ch.artifacts_dir,\n"
         "                              ch.evidence_path, pp.concurrency, timeout=pp.timeout_s)\n"
         "    srv.check_alive()\n"
         "    startup_s, serve_cmd = srv.startup_s, srv.command\n"
         "for s in sweep:\n"
         '    s["parsed"] = P.parse_serve(s["result"])\n'
         'ch.data["serve"] = [{"concurrency": s["concurrency"], "command": s["command"], "parsed": s["parsed"],\n'
         '                     "artifact": f"serve_c{s[\'concurrency\']}.json"} for s in sweep]\n'
         'ch.data["server_command"] = serve_cmd\n'
         'ch.data.setdefault("timings", {})["server_startup_s"] = round(startup_s, 2) if startup_s else None\n'
         "ch.save()\n"
         'failed = sum(s["parsed"]["failed"] for s in sweep)\n'
         'ch.check("bench_serve", "pass" if failed == 0 else "fail", "vllm bench serve: every request completed",\n'
         '         "vllm bench serve:全部请求完成",\n'
         '         detail_en=f"{sum(s[\'parsed\'][\'completed\'] for s in sweep)} completed, {failed} failed over concurrency {list(pp.concurrency)}",\n'
         '         detail_zh=f"并发 {list(pp.concurrency)}:完成 {sum(s[\'parsed\'][\'completed\'] for s in sweep)} 个,失败 {failed} 个")\n'
         'show_md(md_code(sweep[0]["command"], "bash"))'),
    md("## 结果与带宽上限 · Results against the bandwidth limit"),
    md("上限 = 并发数 × 带宽 / (权重字节 + 并发数 × 每 token KV 字节 × 平均上下文长度)。解码受带宽约束时,实测值应低于上限;"
       "小模型在 CPU 上还受调度与算子开销约束,通常远低于上限。预填充是算力约束,百分比仅供量级参考。", "lang-zh"),
    md("Limit = concurrency × bandwidth / (weight bytes + concurrency × KV bytes per token × mean context). A "
       "bandwidth-bound decode stays below it; a small model on CPU is also bound by scheduling and kernel overhead "
       "and usually sits far below. Prefill is compute-bound: its percent is for scale only.", "lang-en"),
    code("bw_after = P.measure_bandwidth(platform, size_mib=pp.bandwidth_mib)\n"
         'ch.evidence(f"=== bandwidth after the benchmarks: {json.dumps(bw_after)}")\n'
         "bw = P.combine_bandwidth(bw, bw_after)\n"
         'ch.data["bandwidth"] = bw\n'
         'ch.metric("bandwidth_gbs", round(bw["gb_s"], 2), "GB/s", "Memory bandwidth (best observed in this run)",\n'
         '          "内存带宽(本次运行观测最好值)", timing=True)\n'
         'show_md(f"带宽 Bandwidth: 前 before {bw[\'samples_gb_s\'][0]} GB/s, 后 after {bw[\'samples_gb_s\'][1]} GB/s → "\n'
         '        f"上限取 limit uses **{bw[\'gb_s\']:.2f} GB/s**")\n'
         'F = P.figures(lat, sweep, bw["gb_s"], arith, pp.input_len, pp.output_len)\n'
         'ch.data["figures"] = F\n'
         "ch.save()\n"
         "fmt = lambda v, d=2: '—' if v is None else f'{v:,.{d}f}'\n"
         'show_table(["指标 Metric", "值 Value", "单位 Unit", "带宽上限 Limit", "占上限 % of limit", "来源 Tool"],\n'
         '           [[f"{r[\'name_zh\']} · {r[\'name_en\']}", fmt(r["value"]), r["unit"], fmt(r["limit"], 1),\n'
         '             fmt(r["pct"], 1), r["tool"]] for r in F["rows"]])\n'
         'keys = {"latency_b1_output_tok_s", "serve_b1_output_tok_s", "ttft_ms_p50", "tpot_ms_p50"}\n'
         'for r in F["rows"]:\n'
         '    if r["value"] is None:\n'
         "        continue\n"
         '    ch.metric(r["id"], round(r["value"], 3), r["unit"], r["name_en"], r["name_zh"], key=r["id"] in keys, timing=True)\n'
         '    if r["pct"] is not None and r["id"] != "prefill_tok_s":\n'
         '        ch.metric(r["id"] + "_pct_of_limit", round(r["pct"], 2), "%", r["name_en"] + " (% of bandwidth limit)",\n'
         '                  r["name_zh"] + "(占带宽上限 %)", key=r["id"] == "decode_tok_s", timing=True)\n'
         'ch.metric("decode_limit_b1", round(F["limit_b1"], 2), "tok/s", "Bandwidth-bound decode limit, batch 1",\n'
         '          "带宽约束解码上限(批大小 1)", timing=True)\n'
         'over = [r for r in F["rows"] if r["pct"] is not None and r["pct"] > 100 and r["id"] != "prefill_tok_s"]\n'
         '_ = ch.check("below_limit", "pass" if not over else "warn", "Decode figures below the bandwidth limit",\n'
         '         "解码速度低于带宽上限",\n'
         '         detail_en="all below" if not over else "above the limit (bandwidth under-measured?): " + ", ".join(r["id"] for r in over),\n'
         '         detail_zh="全部低于上限" if not over else "超过上限(带宽测量偏低?):" + ", ".join(r["id"] for r in over))'),
    md("### 吞吐与并发 · Throughput against concurrency"),
    code('show_table(["并发 Concurrency", "输出吞吐 Output tok/s", "上限 Limit", "占上限 % of limit", "TTFT p50 (ms)", "TPOT p50 (ms)", "完成/失败 Done/failed"],\n'
         '           [[r["concurrency"], fmt(r["output_tok_s"]), fmt(r["limit"], 1), fmt(r["pct"], 1), fmt(r["ttft_ms_p50"], 1),\n'
         '             fmt(r["tpot_ms_p50"], 1), f"{r[\'completed\']}/{r[\'failed\']}"] for r in F["sweep"]])\n'
         'fig = P.plot_sweep(F["sweep"], bw["gb_s"], arith, F["context_tokens"], ch.artifacts_dir / "throughput_vs_concurrency.png")\n'
         'sw = F["sweep"]\n'
         "if len(sw) > 1:\n"
         '    scales = sw[-1]["output_tok_s"] > sw[0]["output_tok_s"]\n'
         '    ch.check("scales", "pass" if scales else "warn", "Throughput grows with concurrency", "吞吐随并发增长",\n'
         '             detail_en=f"{fmt(sw[0][\'output_tok_s\'])} tok/s at {sw[0][\'concurrency\']} -> {fmt(sw[-1][\'output_tok_s\'])} tok/s at {sw[-1][\'concurrency\']}",\n'
         '             detail_zh=f"并发 {sw[0][\'concurrency\']}:{fmt(sw[0][\'output_tok_s\'])} tok/s → 并发 {sw[-1][\'concurrency\']}:{fmt(sw[-1][\'output_tok_s\'])} tok/s")'),
    code("if pp.throughput:\n"
         '    thr_json = ch.artifacts_dir / "bench_throughput.json"\n'
         "    n = max(pp.num_prompts, 2 * max(pp.concurrency))\n"
         "    thr_run = P.run_throughput(ch.params, which, thr_json, ch.evidence_path, n, timeout=pp.timeout_s)\n"
         '    thr = P.parse_throughput(thr_run["result"])\n'
         '    ch.data["throughput"] = {"command": thr_run["command"], "parsed": thr}\n'
         '    ch.metric("throughput_total_tok_s", round(thr["total_tok_s"], 2), "tok/s", "Offline throughput (input + output)",\n'
         '              "离线吞吐(输入 + 输出)", timing=True)\n'
         '    show_md(md_code(thr_run["command"], "bash"))\n'
         '    show_table(["指标 Metric", "值 Value"], [["请求 Requests", thr["requests"]], ["总吞吐 Total tok/s", fmt(thr["total_tok_s"])],\n'
         '               ["请求/秒 Requests/s", fmt(thr["request_per_s"], 3)]])\n'
         "else:\n"
         '    show_md("`vllm bench throughput` 未启用(`performance.throughput: false`)· not enabled.")'),
    md("## 与原文档对照 · Beside the original document"),
    md("⚠️ 右列来自原文档,**另一台机器**(昇腾 910B3 NPU, vLLM-Ascend 0.18.0rc1, eager),不是本次测量;左列为本次运行。", "lang-zh"),
    md("⚠️ The right column is the original document's, from **another machine** (Ascend 910B3 NPU, vLLM-Ascend "
       "0.18.0rc1, eager), not measured here; the left column is this run.", "lang-en"),
    code("O = P.ORIGINAL\n"
         'b1 = next((r["value"] for r in F["rows"] if r["id"] == "serve_b1_output_tok_s"), None)\n'
         'show_table(["指标 Metric", f"本次运行 This run ({platform}, {which} weights)", f"原文档 Original document (另一台机器 another machine: {O[\'machine\']})"], [\n'
         '    ["单请求输出速度 Batch-1 output tok/s", f"{fmt(b1)} (output_len {pp.output_len})", f"~{O[\'output_tok_s\']:.0f} (max_tokens {O[\'max_tokens\']})"],\n'
         '    ["服务启动(至健康)Server start to healthy", f"{fmt(startup_s, 1)} s", "—"],\n'
         '    ["引擎初始化 Engine init", "见 02 章 · see chapter 02", f"~{O[\'init_s\']:.0f} s"],\n'
         '    ["带宽上限(批 1)Bandwidth limit (batch 1)", f"{fmt(F[\'limit_b1\'], 1)} tok/s", "—"],\n'
         "])\n"
         'ch.data["original_document"] = O'),
    code("rows = [[r['name_en'], fmt(r['value']), r['unit'], fmt(r['limit'], 1), fmt(r['pct'], 1)] for r in F['rows']]\n"
         "card = (f\"Measured with vLLM's own tools (`vllm bench latency`, `vllm bench serve`) on {platform}, \"\n"
         "        f\"{'dummy weights at the real 0.5B shape' if which == 'dummy' else 'real weights'}, input {pp.input_len} / output {pp.output_len} tokens. \"\n"
         "        f\"Memory bandwidth measured in the run: {bw['gb_s']:.1f} GB/s.\\n\\n\"\n"
         "        + md_table(['Metric', 'Value', 'Unit', 'Bandwidth limit', '% of limit'], rows)\n"
         "        + f\"\\n\\nOriginal document, another machine ({O['machine']}): ~{O['output_tok_s']:.0f} output tok/s, ~{O['init_s']:.0f} s engine init.\")\n"
         'ch.card("Performance", "性能", card)\n'
         "ch.finish();"),
])


# ------------------------------------------------------------------------------------------------
write("08_serving", [
    md("# 08 · 服务部署 · Serving"),
    md("本章按原文档的部署指南真实部署一次:用 `vllm serve`(CPU 版本的控制台命令不可用时改用 "
       "`python -m vllm.entrypoints.openai.api_server`)启动 OpenAI 兼容服务,只绑定 127.0.0.1 的空闲端口,等待健康检查;"
       "通过 `openai` 客户端检查 /v1/models、/v1/completions、带对话模板的 /v1/chat/completions、流式输出和并发请求;"
       "并验证服务端的贪心输出与离线引擎对同一提示(相同 token id)的输出逐 token 相同。最后用刚刚跑通的命令生成部署指南。"
       "服务在本章结束、出错或中断时总会被停止,不留进程。参数 `serving.endpoint` 给出时,改为验证已运行的部署。",
       "lang-zh"),
    md("The original document's deployment guide, done for real: the OpenAI-compatible server started with "
       "`vllm serve` (or `python -m vllm.entrypoints.openai.api_server` where the CPU build's console command fails), "
       "bound to a free port on 127.0.0.1, health-checked; probed through the `openai` client: /v1/models, "
       "/v1/completions, /v1/chat/completions with the chat template, streaming and concurrent requests; the server's "
       "greedy output must equal the offline engine's for the same prompt token ids. The deployment guide below is "
       "generated from the commands that just worked. The server is always stopped, also on errors and interrupts. "
       "With `serving.endpoint` set, an already-running deployment is validated instead.", "lang-en"),
    PARAMS,
    code("import psutil\n"
         "from bitcpm_validation.chapter import Chapter, quiet_logs\n"
         "from bitcpm_validation import server, serving as S, engine, prompting\n"
         "from bitcpm_validation.textsafe import show_table, show_md, show_text, md_code, one_line\n\n"
         "quiet_logs()\n"
         'ch = Chapter.open("08_serving", params_path, run_dir)\n'
         "sp = ch.params.serving\n"
         "model_dir = ch.params.model_path\n"
         "local = model_dir.is_dir()\n"
         "raw = [p for p in ch.prompts.prompts if not p.chat]\n"
         "probe = next((p for p in raw if p.id == 'capital_france'), raw[0])\n"
         "greedy = raw[: sp.greedy_prompts]\n"
         "conc = [raw[i % len(raw)] for i in range(sp.concurrent_requests)]\n"
         "ids = {p.id: prompting.prompt_ids(p, model_dir) for p in [*greedy, *conc, probe]} if local else {}\n"
         'ch.data["setup"] = {"endpoint": sp.endpoint, "probe_prompt": probe.id, "greedy_prompts": [p.id for p in greedy],\n'
         '                    "concurrent_requests": sp.concurrent_requests, "max_tokens": sp.max_tokens,\n'
         '                    "prompt_feed": prompting.feed_mode(model_dir) if local else "text"}\n'
         "ch.save()"),
    md("## 离线引擎参照 · Offline engine reference"),
    md("先用离线引擎(`vllm.LLM`,与服务相同的参数)对同样的 token id 做贪心生成,关闭后再启动服务,两者不同时占用 CPU。", "lang-zh"),
    md("First the offline engine (`vllm.LLM`, the same settings as the server) generates greedily from the same token "
       "ids; it is closed before the server starts so the two never compete for the CPU.", "lang-en"),
    code("offline = None\n"
         "if local and any(model_dir.glob('*.safetensors')):\n"
         "    eng = engine.start(ch.params, ch.evidence_path, 'real')\n"
         "    try:\n"
         "        offline = {p.id: g.token_ids for p, g in zip(greedy, eng.generate([ids[p.id] for p in greedy], max_tokens=sp.max_tokens))}\n"
         "    finally:\n"
         "        eng.close()\n"
         '    ch.data.setdefault("timings", {})["offline_init_s"] = round(eng.init_s, 2)\n'
         '    show_md(f"离线引擎生成 {len(offline)} 条 · offline engine generated {len(offline)} answers.")\n'
         "else:\n"
         '    show_md("本机没有模型权重,跳过离线对照 · no local weights: offline comparison not run.")'),
    md("## 启动服务并探测 · Start the server and probe it"),
    md("服务与离线引擎使用同一分词器决定(`engine.tokenizer_override`,见第 02 章):模型自带分词器与 SentencePiece "
       "不一致时,以 `--tokenizer` 指向本次运行写出的忠实分词器目录。 · The server and the offline engine share one "
       "tokenizer decision (`engine.tokenizer_override`, see chapter 02): where the model's own tokenizer differs from "
       "SentencePiece, `--tokenizer` points at the faithful tokenizer directory written into this run."),
    code("probes, greedy_rows = {}, []\n"
         "with server.serving(ch.params, ch.evidence_path, 'real') as srv:\n"
         "    pid = srv.pid\n"
         "    descendants = psutil.Process(pid).children(recursive=True) if pid else []\n"
         "    cl = S.client(srv)\n"
         "    pin = ids.get(probe.id, probe.prompt)\n"
         '    probes["models"] = S.probe_models(cl, srv)\n'
         '    probes["completions"] = S.probe_completion(cl, srv, pin, sp.max_tokens)\n'
         "    chat_ids = prompting.prompt_ids(probe, model_dir, chat=True) if local else None\n"
         '    probes["chat"] = S.probe_chat(cl, srv, probe.prompt, sp.max_tokens, chat_ids)\n'
         '    probes["stream"] = S.probe_stream(cl, srv, pin, sp.max_tokens, probes["completions"].detail.get("text"))\n'
         '    probes["concurrent"] = S.probe_concurrent(cl, srv, [ids.get(p.id, p.prompt) for p in conc], sp.max_tokens)\n'
         "    if offline is not None:\n"
         "        served = [S.complete(cl, srv, ids[p.id], sp.max_tokens)['token_ids'] for p in greedy]\n"
         "        greedy_rows = S.compare_greedy([offline[p.id] for p in greedy], served)\n"
         "        for p, r, s in zip(greedy, greedy_rows, served):\n"
         "            r.update(id=p.id, offline_text=prompting.decode(offline[p.id], model_dir), served_text=prompting.decode(s or [], model_dir))\n"
         "    srv.check_alive()\n"
         "    guide = S.deployment_guide(srv, ch.params, probe.prompt, sp.max_tokens)\n"
         "    startup_s, external, command, base_url = srv.startup_s, srv.external, srv.command, srv.base_url\n"
         "    srv_tok, srv_tok_reason = srv.tokenizer, srv.tokenizer_reason\n"
         "left = [p.pid for p in descendants if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]\n"
         "if pid:\n"
         "    left += [pid] if psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE else []\n"
         'ch.data["probes"] = {k: v.as_dict() for k, v in probes.items()}\n'
         'ch.data["greedy"] = greedy_rows\n'
         'ch.data["deployment_guide"] = guide\n'
         'ch.data["server"] = {"command": command, "base_url": base_url, "external": external,\n'
         '                     "tokenizer": srv_tok, "tokenizer_reason": srv_tok_reason}\n'
         'ch.data.setdefault("timings", {})["server_startup_s"] = round(startup_s, 2) if startup_s else None\n'
         "ch.save()\n"
         "if srv_tok_reason:\n"
         '    show_md(f"**服务分词器 · Server tokenizer: `{\'--tokenizer \' + srv_tok if srv_tok else \'model directory\'}`**\\n\\n"\n'
         '            f"{srv_tok_reason[\'zh\']}\\n\\n{srv_tok_reason[\'en\']}")\n'
         "if startup_s:\n"
         '    ch.metric("server_startup_s", round(startup_s, 1), "s", "Server start to healthy", "服务启动至健康", key=True, timing=True)'),
    md("## 探测结果 · Probe results"),
    code("NAMES = {\n"
         '    "models": ("GET /v1/models lists the served model", "/v1/models 列出所部署的模型"),\n'
         '    "completions": ("POST /v1/completions answers", "/v1/completions 正常回答"),\n'
         '    "chat": ("POST /v1/chat/completions with the chat template answers", "/v1/chat/completions(对话模板)正常回答"),\n'
         '    "stream": ("Streaming: several chunks, joined equal to the non-streamed text", "流式输出:多个分块,拼接后与非流式相同"),\n'
         '    "concurrent": (f"{sp.concurrent_requests} concurrent requests all answered", f"{sp.concurrent_requests} 个并发请求全部得到回答"),\n'
         "}\n"
         "def summary(k, r):\n"
         "    d = r.detail\n"
         '    if r.error: return r.error\n'
         '    if k == "models": return f"models: {d[\'models\']}"\n'
         '    if k in ("completions", "chat"): return f"{len(d.get(\'token_ids\') or [])} tokens, finish {d.get(\'finish_reason\')}: " + one_line(d.get("text", ""), 120)\n'
         '    if k == "stream": return f"{d[\'chunks\']} chunks, first after {d[\'first_chunk_s\']} s, equal to non-streamed: {d.get(\'equals_non_streamed\')}"\n'
         '    if k == "concurrent": return f"{d[\'answered\']}/{d[\'requests\']} answered in {d[\'wall_s\']} s, {d[\'output_tokens\']} tokens"\n'
         "    return ''\n"
         "for k, r in probes.items():\n"
         "    en, zh = NAMES[k]\n"
         '    ch.check(k, "pass" if r.ok else "fail", en, zh, detail_en=summary(k, r), detail_zh=summary(k, r))\n'
         'show_table(["探测 Probe", "结果 Result", "耗时 Time (s)", "详情 Detail"],\n'
         '           [[k, "✅" if r.ok else "❌", r.seconds, summary(k, r)] for k, r in probes.items()])\n'
         'tm = probes["chat"].detail.get("template_matches")\n'
         'fd = probes["chat"].detail.get("template_first_diff")\n'
         "if tm is not None:\n"
         '    ch.check("chat_template", "pass" if tm else "warn", "Chat prompt ids equal the ChatML encoding",\n'
         '             "对话提示 token 与 ChatML 编码一致",\n'
         '             detail_en="the server applied the model\'s chat template exactly as the project encodes ChatML" if tm else\n'
         '             f"the server\'s chat prompt ids differ from the project\'s ChatML encoding from position {fd} on (the engine\'s text tokenizer, see chapter 02): chat answers through the server are affected",\n'
         '             detail_zh="服务端套用的对话模板与项目的 ChatML 编码逐 token 相同" if tm else f"服务端对话提示的 token 从第 {fd} 位起与项目 ChatML 编码不同(引擎文本分词器差异,见第 02 章):经服务的对话回答受影响")\n'
         '_ = ch.metric("concurrent_answered", probes["concurrent"].detail.get("answered", 0), "", "Concurrent requests answered", "并发请求得到回答数")'),
    md("### 贪心输出:服务 vs 离线引擎 · Greedy output: server vs offline engine"),
    code("if greedy_rows:\n"
         '    eq = sum(r["equal"] for r in greedy_rows)\n'
         '    ch.check("greedy_equal", "pass" if eq == len(greedy_rows) else "fail", "Server greedy output equals the offline engine\'s",\n'
         '             "服务端贪心输出与离线引擎一致",\n'
         '             detail_en=f"{eq}/{len(greedy_rows)} prompts token-identical ({sp.max_tokens} tokens max)",\n'
         '             detail_zh=f"{eq}/{len(greedy_rows)} 条提示逐 token 相同(最多 {sp.max_tokens} token)")\n'
         '    ch.metric("greedy_equal", eq, f"/{len(greedy_rows)}", "Greedy answers equal (server vs offline)", "贪心输出一致数(服务 vs 离线)", key=True)\n'
         '    show_table(["提示 Prompt", "一致 Equal", "首个差异 First diff", "离线 Offline", "服务 Server"],\n'
         '               [[r["id"], "✅" if r["equal"] else "❌", "—" if r["first_diff"] is None else r["first_diff"],\n'
         '                 r["offline_text"], r["served_text"]] for r in greedy_rows])\n'
         "else:\n"
         '    ch.check("greedy_equal", "not_run", "Server greedy output equals the offline engine\'s", "服务端贪心输出与离线引擎一致",\n'
         '             detail_en="no local weights to run the offline engine", detail_zh="本机无权重,无法运行离线引擎")'),
    md("### 进程清理 · Process cleanup"),
    code("if not external:\n"
         '    ch.check("stopped", "pass" if not left else "fail", "Server stopped, no process left", "服务已停止,无残留进程",\n'
         '             detail_en=f"server pid {pid} and {len(descendants)} child process(es) gone" if not left else f"still running: {left}",\n'
         '             detail_zh=f"服务进程 {pid} 及 {len(descendants)} 个子进程均已退出" if not left else f"仍在运行:{left}")\n'
         "    show_md(f\"服务进程 server pid {pid}:{'已全部退出 · all gone' if not left else f'残留 · left: {left}'}\")"),
    md("## 部署指南(本次运行实测可用)· Deployment guide (as run on this host)"),
    md("以下命令与本次运行完全一致(端口、模型路径、参数);在其他机器上只需替换模型路径与端口。", "lang-zh"),
    md("These are exactly the commands of this run (port, model path, flags); on another host change only the model "
       "path and port.", "lang-en"),
    code('show_md("**1. 启动服务 · Start the server**")\n'
         'show_text(guide["serve"])\n'
         'show_md("**2. curl**")\n'
         'show_text(guide["curl"])\n'
         'show_md("**3. Python (openai)**")\n'
         'show_text(guide["python"])\n'
         'show_md("**4. 离线 Python (vllm.LLM) · Offline Python**")\n'
         'show_text(guide["offline"])\n'
         'ans = probes["chat"].detail.get("text", "")\n'
         'show_md("**本次运行的回答 · This run\'s answer** (`/v1/chat/completions`):")\n'
         "show_text(ans)"),
    code('card = ("Deployed and probed on this host through the OpenAI API (`openai` client).\\n\\n"\n'
         '        "Start the server:\\n\\n" + md_code(guide["serve"], "bash") + "\\n\\nCall it with curl:\\n\\n" + md_code(guide["curl"], "bash")\n'
         '        + "\\n\\nOr from Python:\\n\\n" + md_code(guide["python"], "python"))\n'
         'ch.card("Deployment (vLLM serve)", "部署(vLLM serve)", card)\n'
         "ch.finish();"),
])


# ------------------------------------------------------------------------------------------------
write("09_accuracy", [
    md("# 09 · 基准精度 · Accuracy"),
    md("本章用 lm-evaluation-harness(`lm_eval.simple_evaluate`,模型类型 `local-completions`)评测已部署的服务:"
       "按参数中的任务逐个运行,输出 任务 | 指标 | 数值 | 标准误 表。本机无法访问 Hugging Face Hub,因此附带一个项目自带的"
       "中英双语选择题任务(`bitcpm_probe_mc`,离线运行);无法获取数据集的 Hub 任务记为“跳过”并写明原因,不算模型失败。"
       "与 BitCPM4-0.5B 公布数字(MiniCPM4 技术报告,用 OpenCompass 测得)比较时使用相对容差:OpenCompass 与 lm-eval 的"
       "提示模板、少样本示例与答案抽取方式不同,数字不可逐点等同。", "lang-zh"),
    md("lm-evaluation-harness (`lm_eval.simple_evaluate`, model type `local-completions`) against the served "
       "endpoint, task by task from params, giving a Task | Metric | Value | Stderr table. This host cannot reach the "
       "Hugging Face Hub, so the project ships its own small bilingual multiple-choice task (`bitcpm_probe_mc`, runs "
       "offline); a hub task whose dataset cannot be fetched is reported as skipped with the reason, never as a "
       "failure of the model. Published BitCPM4-0.5B numbers (MiniCPM4 technical report) were measured with "
       "OpenCompass, whose prompts, few-shot examples and answer extraction differ from lm-eval's: they are compared "
       "within a relative tolerance, not point for point.", "lang-en"),
    PARAMS,
    code("from bitcpm_validation.chapter import Chapter, quiet_logs\n"
         "from bitcpm_validation import server, accuracy as A\n"
         "from bitcpm_validation.textsafe import show_table, show_md, md_table\n\n"
         "quiet_logs()\n"
         'ch = Chapter.open("09_accuracy", params_path, run_dir)\n'
         "ap = ch.params.accuracy\n"
         'ch.data["setup"] = {"tasks": list(ap.tasks), "num_fewshot": ap.num_fewshot, "limit": ap.limit, "rtol": ap.rtol,\n'
         '                    "model_type": "local-completions", "tokenized_requests": True}\n'
         "ch.save()\n"
         'show_table(["项目 Item", "值 Value"], [["任务 Tasks", ", ".join(ap.tasks)], ["少样本 Few-shot", ap.num_fewshot],\n'
         '           ["样本上限 Limit", ap.limit or "全部 all"], ["相对容差 rtol", ap.rtol], ["lm-eval 模型 model", "local-completions"]])'),
    md("## 评测 · Evaluation"),
    code("results = []\n"
         "with server.serving(ch.params, ch.evidence_path, 'real') as srv:\n"
         "    for task in ap.tasks:\n"
         '        r = A.evaluate_task(task, base_url=srv.base_url + "/completions", model=srv.model,\n'
         "                            tokenizer=ch.params.model_path, out_dir=ch.artifacts_dir, num_fewshot=ap.num_fewshot,\n"
         "                            limit=ap.limit, trust_remote_code=ch.params.trust_remote_code,\n"
         "                            max_length=ch.params.engine.max_model_len, seed=ch.params.engine.seed,\n"
         "                            evidence=ch.evidence_path)\n"
         "        srv.check_alive()\n"
         "        results.append(r)\n"
         '        ch.evidence(f"=== lm-eval {task}: {r.status} {r.reason or \'\'} ({r.seconds} s)")\n'
         "    startup_s = srv.startup_s\n"
         'ch.data["tasks"] = [r.as_dict() for r in results]\n'
         'ch.data.setdefault("timings", {}).update({"server_startup_s": round(startup_s, 2) if startup_s else None,\n'
         '                                         **{f"{r.task}_s": r.seconds for r in results}})\n'
         "ch.save()\n"
         "for r in results:\n"
         '    if r.status == "ok":\n'
         '        ch.check(f"task_{r.task}", "pass", f"lm-eval {r.task} ran", f"lm-eval {r.task} 完成",\n'
         '                 detail_en=f"{len(r.rows)} metric rows in {r.seconds:.0f} s", detail_zh=f"{len(r.rows)} 行指标,用时 {r.seconds:.0f} 秒")\n'
         '    elif r.status == "skipped":\n'
         '        ch.check(f"task_{r.task}", "not_run", f"lm-eval {r.task} skipped", f"lm-eval {r.task} 跳过",\n'
         '                 detail_en=r.reason, detail_zh="数据集不可获取或任务不存在:" + (r.reason or ""))\n'
         "    else:\n"
         '        ch.check(f"task_{r.task}", "fail", f"lm-eval {r.task} failed", f"lm-eval {r.task} 失败",\n'
         '                 detail_en=r.reason, detail_zh=r.reason)'),
    md("## 结果 · Results"),
    code("fmt = lambda v: '—' if v is None else f'{v:.4f}'\n"
         "table = [[row['task'], row['metric'], fmt(row['value']), fmt(row['stderr']), row['n'] or '—'] for r in results for row in r.rows]\n"
         'show_table(["任务 Task", "指标 Metric", "数值 Value", "标准误 Stderr", "样本 n"], table) if table else show_md("—")\n'
         "skipped = [r for r in results if r.status != 'ok']\n"
         "if skipped:\n"
         '    show_table(["任务 Task", "状态 Status", "原因 Reason"], [[r.task, r.status, r.reason] for r in skipped])\n'
         "for r in results:\n"
         "    h = A.headline(r.rows, r.task)\n"
         "    if h:\n"
         '        ch.metric(f"{r.task}_{h[\'metric\'].split(\' \')[0]}", round(h["value"], 4), "", f"{r.task} {h[\'metric\']}",\n'
         '                  f"{r.task} {h[\'metric\']}", key=True)'),
    md("### 本地任务 · The local task"),
    md("`bitcpm_probe_mc`:项目自带的 32 道中英双语常识选择题(首都、算术、北京景点等),4 个选项,随机猜测的期望准确率为 0.25。"
       "替身模型只是一个很小的模型,可能得任何分数,如实报告。", "lang-zh"),
    md("`bitcpm_probe_mc`: the project's 32 bilingual facts questions (capitals, arithmetic, Beijing sights, ...), 4 "
       "choices each; chance is 0.25. The stand-in is a very small model and may score anything; reported as is.",
       "lang-en"),
    code("local = next((r for r in results if r.task == 'bitcpm_probe_mc' and r.status == 'ok'), None)\n"
         "if local:\n"
         "    h = A.headline(local.rows, local.task)\n"
         '    above = h["value"] > 0.25\n'
         '    ch.check("local_above_chance", "pass" if above else "warn", "Local task above chance (0.25)", "本地任务高于随机水平(0.25)",\n'
         '             detail_en=f"acc {h[\'value\']:.3f} ± {h[\'stderr\'] or 0:.3f}", detail_zh=f"准确率 {h[\'value\']:.3f} ± {h[\'stderr\'] or 0:.3f}")'),
    md("## 与公布数字对比 · Against the published numbers"),
    code("cmp_rows = []\n"
         "for r in results:\n"
         "    h = A.headline(r.rows, r.task) if r.status == 'ok' else None\n"
         "    c = A.compare_published(r.task, h['value'], ap.rtol) if h else None\n"
         "    if c:\n"
         "        c['task'] = r.task\n"
         "        cmp_rows.append(c)\n"
         'ch.data["published_comparison"] = cmp_rows\n'
         "ch.save()\n"
         "if ch.params.model.is_stand_in:\n"
         '    ch.check("published", "not_run", "Scores within rtol of BitCPM4-0.5B\'s published numbers", "得分在公布数字的相对容差内",\n'
         '             detail_en="stand-in model: not BitCPM4-0.5B, its scores are not comparable",\n'
         '             detail_zh="替身模型不是 BitCPM4-0.5B,得分不可比")\n'
         "elif not cmp_rows:\n"
         '    ch.check("published", "not_run", "Scores within rtol of BitCPM4-0.5B\'s published numbers", "得分在公布数字的相对容差内",\n'
         '             detail_en="no task with a published number ran (hub datasets unreachable?)",\n'
         '             detail_zh="没有运行带公布数字的任务(Hub 数据集不可访问?)")\n'
         "else:\n"
         "    for c in cmp_rows:\n"
         '        st = "pass" if c["within"] else ("fail" if ap.fail_outside_rtol else "warn")\n'
         '        ch.check(f"published_{c[\'task\']}", st, f"{c[\'benchmark\']} within rtol {ap.rtol} of published {c[\'published\']}",\n'
         '                 f"{c[\'benchmark\']} 与公布值 {c[\'published\']} 的相对差在 {ap.rtol} 内",\n'
         '                 detail_en=f"measured {c[\'measured\']} (lm-eval) vs {c[\'published\']} (OpenCompass): relative difference {c[\'rel_diff\']:.3f}",\n'
         '                 detail_zh=f"实测 {c[\'measured\']}(lm-eval)vs 公布 {c[\'published\']}(OpenCompass):相对差 {c[\'rel_diff\']:.3f}")\n'
         "pub = [[v[0], k, f\"{v[1]:.2f}\", next((f\"{c['measured']:.2f}\" for c in cmp_rows if c['task'] == k), '—')] for k, v in A.PUBLISHED.items() if k != 'ceval']\n"
         'show_table(["基准 Benchmark", "lm-eval 任务 task", "公布 Published (OpenCompass)", "本次 This run (lm-eval)"], pub)\n'
         'show_md(f"公布数字来源 Source: {A.PUBLISHED_SOURCE}。OpenCompass 与 lm-eval 的提示与答案抽取不同 · prompts and answer extraction differ.")'),
    code("rows = [[row['task'], row['metric'], fmt(row['value']), fmt(row['stderr'])] for r in results for row in r.rows]\n"
         "rows += [[r.task, '—', r.status, r.reason or ''] for r in results if r.status != 'ok']\n"
         'card = ("lm-evaluation-harness (`local-completions` against the vLLM OpenAI server"\n'
         "        + (\", stand-in model: not BitCPM4-0.5B\" if ch.params.model.is_stand_in else \"\") + \"):\\n\\n\"\n"
         "        + md_table(['Task', 'Metric', 'Value', 'Stderr'], rows)\n"
         "        + f\"\\n\\nPublished BitCPM4-0.5B numbers ({A.PUBLISHED_SOURCE}) were measured with OpenCompass; prompts differ from lm-eval's.\")\n"
         'ch.card("Accuracy (lm-eval)", "基准精度(lm-eval)", card)\n'
         "ch.finish();"),
])
print("ok")
