"""Page one (report.page_one): what was validated (weights, device, the next command), the verdict and findings tables
in one language per cell, and the results card (one named row per figure, with n and what it was measured on)."""
from __future__ import annotations

import re
from types import SimpleNamespace

from bitcpm_validation.report import findings as F
from bitcpm_validation.report import matrix as M
from bitcpm_validation.report import page_one as P1
from bitcpm_validation.report import results as R
from bitcpm_validation.report import summary as S
from bitcpm_validation.report import verdicts as V
from bitcpm_validation.report.display import T
from fake_run import put, chk, scoped_run, SPECS, GOOD, env_result, fake_params


def test_stand_in_run_shows_the_next_command(tmp_path):
    from bitcpm_validation.params import load_params

    p = load_params("params/default.yaml")  # the shipped default profile: the stand-in
    assert p.model.is_stand_in
    env_result(tmp_path, "cpu", "CPU")
    page = P1.page_one(tmp_path, p)
    assert page["weights"] == "stand-in" and "not BitCPM4" in page["weights_text"]["en"]
    assert page["next_command"]["en"].startswith("This run validates the pipeline, not BitCPM4 on Ascend.")
    assert "make report PARAMS=params/ascend-910b3.yaml" in page["next_command"]["en"]
    assert "make report PARAMS=params/ascend-910b3.yaml" in page["next_command"]["zh"]
    assert page["device"]["en"] == "CPU" and page["engine"]["en"] == "vLLM 0.11.0"


def test_real_weights_on_ascend_need_no_next_command(tmp_path):
    env_result(tmp_path, "npu", "Ascend910B3", ascend="0.11.0rc1")
    put(tmp_path, "02_loading", "ok", data={"real": {"smoke": True}, "dummy": {"smoke": True}},
        metrics=[R.Metric("kv", 10, "tokens", "KV", "KV", key=True, measured_on="BitCPM4-0.5B · real · Ascend910B3"),
                 R.Metric("tps", 10.0, "tok/s", "tps", "tps", key=True,
                          measured_on="BitCPM4-0.5B · full-size dummy · Ascend910B3")])
    src = SimpleNamespace(hub="huggingface", repo_id="openbmb/BitCPM4-0.5B", revision=None, commit="abcdef0123456789")
    page = P1.page_one(tmp_path, fake_params(False, source=src))
    assert page["next_command"] is None and page["weights"] == "real"
    assert page["engine"]["en"] == "vLLM 0.11.0 + vLLM-Ascend 0.11.0rc1" and page["device_kind"] == "npu"
    assert page["also_measured_on"] == ["full-size dummy"] and page["source"]["commit"] == "abcdef0123456789"
    headers, rows = P1.validated_table(page)
    cells = {r[0].en: r[1] for r in rows}
    assert cells["Source"] == "huggingface: openbmb/BitCPM4-0.5B @ abcdef012345"
    assert "some metrics on: full-size dummy" in cells["Weights"].en
    # a CPU run with real weights still says it is not an Ascend validation
    env_result(tmp_path, "cpu", "CPU")
    box = P1.page_one(tmp_path, fake_params(False))["next_command"]
    assert box["en"].startswith("This run validates the model on a CPU, not on Ascend. On an Ascend host run make "
                                "report PARAMS=params/ascend-910b3.yaml")


def test_unknown_weights_and_device_are_said(tmp_path):
    page = P1.page_one(tmp_path, fake_params(False))
    assert page["weights"] == "unknown" and "not detected" in page["device"]["en"]
    assert page["next_command"] is None  # neither stand-in nor a detected CPU


def test_tables_are_one_language_per_cell(tmp_path):
    rows = scoped_run(tmp_path, GOOD | {"02_loading": [chk("kv", "warn", "engine", "a" * 300)]})
    v = V.scope_verdicts(rows, SPECS)
    for headers, body in (P1.scopes_table(v), S.matrix_display(rows), S.registry_table(SPECS),
                          P1.results_card_table(P1.results_card(M.key_metrics(tmp_path))), F.document_table(F.document_claims(rows)),
                          P1.validated_table(P1.page_one(tmp_path, fake_params(True)))):
        for cell in [*headers, *(c for r in body for c in r)]:
            text = cell.en if isinstance(cell, T) else str(cell)
            if isinstance(cell, T):  # no "中文 · English" labels: the English text carries no Chinese
                assert not re.search(r"[\u4e00-\u9fff（），。：；]", cell.en), cell
            assert "\n" not in text and "Check(" not in text and "{'" not in text
    matrix = S.matrix_display(rows)[1]
    assert all(len(r[3].en) <= 70 for r in matrix if isinstance(r[3], T))  # short reasons: details in the chapter
    chapters = [r[0] for r in matrix if r[0]]
    assert len(chapters) == len({r.chapter for r in rows})  # chapter named once, on its first row


def test_validated_line_escapes_names_from_files(tmp_path):
    page = P1.page_one(tmp_path, fake_params(False, name="evil/*model*<b>"))
    line = P1.validated_line(page)
    assert line.en.startswith("**Model** evil/\\*model\\*&lt;b&gt; · **Weights** unknown")
    assert line.zh.startswith("**模型** evil/") and "**设备** 未检测" in line.zh and "Profile" not in line.en


def test_results_card_escapes_the_chapter_link():
    km = [M.KeyMetric("02_<i>", "h", "a", "A<i>", "甲", 1.5, "s", measured_on="stand-in · trained · CPU")]
    body = P1.results_card_table(P1.results_card(km))[1]
    assert body[0][5] == '<a href="#ch-02_&lt;i&gt;">02</a>' and body[0][0].en == "A<i>"  # a T cell: escaped on show


def test_fake_run_with_the_stand_in_flag_gets_the_next_command_box(tmp_path):
    from fake_run import make_run  # run.json says is_stand_in: true; results carry untrusted text
    run = make_run(tmp_path / "run")
    page = P1.page_one(run)  # no params: model and stand-in flag from run.json
    assert page["weights"] == "stand-in" and page["model"] == "openbmb/BitCPM4-0.5B"
    assert page["next_command"] == M.tdict(P1.NEXT_COMMAND)
    assert "make report PARAMS=params/ascend-910b3.yaml" in page["next_command"]["zh"]
    f = F.findings(M.check_matrix(run))
    assert any(x.chapter == "04_determinism" and x.status == "fail" for x in f)  # its failed chapter is a finding


def test_synthetic_weights_are_named_as_such_on_page_one(tmp_path):
    """A directory that declares synthetic weights (model.weights_kind) is never shown as 'real weights'."""
    env_result(tmp_path, "cpu", "CPU")
    put(tmp_path, "02_loading", "ok", data={"real": {"smoke": True}})
    p = SimpleNamespace(profile="p", model=SimpleNamespace(name="m", is_stand_in=False, source=None,
                                                           weights_kind="synthetic"))
    page = P1.page_one(tmp_path, p)
    assert page["weights"] == "synthetic" and "not BitCPM4" in page["weights_text"]["en"]
    assert "合成权重" in page["weights_text"]["zh"]
    p.model.weights_kind = "real"
    assert P1.page_one(tmp_path, p)["weights"] == "real"


def test_results_card_one_named_row_per_figure_with_n_and_what_it_was_measured_on():
    on, full = "stand-in · trained ternary · CPU", "BitCPM4-0.5B shape · dummy weights · CPU"
    km = [M.KeyMetric("01_environment", "", "device", "Device", "设备", "CPU", ""),
          M.KeyMetric("02_loading", "", "init_s", "Engine init time", "引擎初始化总时间", 56.22, "s", measured_on=on),
          M.KeyMetric("08_serving", "", "server_startup_s", "Server start to healthy", "服务启动至健康", 56.2, "s",
                      measured_on=on),
          M.KeyMetric("02_loading", "", "max_concurrency", "Concurrency at context", "上下文并发", 256.0,
                      "× 2,048-token requests", measured_on=on),
          M.KeyMetric("03_inference", "", "probes_passed", "Probes passed", "探针通过", "0/0", "judged probes",
                      measured_on=on),
          M.KeyMetric("04_determinism", "", "identical_tokens", "x", "x", "1,280/1,280", "tokens", measured_on=on),
          M.KeyMetric("06_precision", "", "compared_lengths", "Shapes", "形状", "4 shapes", "", measured_on=on),
          M.KeyMetric("07_performance", "", "decode_tok_s", "Batch-1 decode tok/s = 1000 / TPOT p50",
                      "单请求解码速度 = 1000 / TPOT 中位数", 22.4, "tok/s", measured_on=full),
          M.KeyMetric("08_serving", "", "greedy_equal", "Greedy", "贪心", 3, "/3"),
          M.KeyMetric("09_accuracy", "", "ceval_acc", "ceval acc (n 260)", "ceval acc（n 260）", 0.25, "",
                      measured_on=on)]
    perf = R.ChapterResult("07_performance", "Performance", "性能", status="ok")
    perf.data = {"figures": {"rows": [{"id": "decode_tok_s", "samples": 8}]}}
    acc = R.ChapterResult("09_accuracy", "Accuracy", "基准精度", status="ok")
    acc.data = {"tasks": [{"task": "ceval", "score": {"points": 25.0, "se": 2.7, "n": 260}}]}
    rows = P1.results_card(km, {"07_performance": perf, "09_accuracy": acc})
    got = {r.id: (r.name.en, r.value, r.unit.en, r.n, r.measured_on.en) for r in rows}
    # the device is on the identity line, the server start is the engine init, "0/0" judged nothing, a text is
    # the chapter's: none is a row
    assert list(got) == ["init_s", "max_concurrency", "identical_tokens", "decode_tok_s", "greedy_equal", "ceval_acc"]
    assert got["decode_tok_s"] == ("Batch-1 decode speed", "22.40", "tok/s", "8", "full shape, dummy weights")
    assert got["max_concurrency"][2] == "requests of 2,048 tokens"
    assert got["identical_tokens"][1:4] == ("1,280/1,280", "tokens", "1,280")
    assert got["greedy_equal"][1:] == ("3/3", "", "3", "—")
    assert got["ceval_acc"][:2] == ("ceval acc", "0.25") and got["ceval_acc"][3] == "260 / ±0.027"  # n and its stderr
    assert all(" = " not in r.name.en and " = " not in r.name.zh for r in rows)  # names, not formulas
    headers, body = P1.results_card_table(rows)
    assert [h.en for h in headers] == ["Metric", "Value", "Unit", "n / ±", "Measured on", "Chapter"]
    assert body[3][5] == '<a href="#ch-07_performance">07</a>' and body[0][2].zh == "s"
    assert body[2][2].zh == "词元"  # the Chinese unit is a Chinese word


def test_page_one_findings_keep_to_a_limit():
    found = [F.Finding("warn", "engine", "02_loading", f"c{i}", T(f"w{i}", f"w{i}"), T("i", "i"), T("r", "r"))
             for i in range(10)]
    _, body = P1.findings_table(found, limit=4)
    assert len(body) == 4 and body[-1][1].en == "7 more (⚠️\u00a07)"
    assert len(P1.findings_table(found)[1]) == 10


def test_page_one_findings_leave_out_what_the_performance_row_says():
    f = [F.Finding("not_comparable", "performance", "07_performance", "decode", T("忙", "busy"), T("i", "i"), T("r", "r")),
         F.Finding("warn", "engine", "06_precision", "top1", T("w", "w"), T("i", "i"), T("r", "r"))]
    assert [r[1].en for r in P1.findings_table(f, not_comparable=False)[1]] == ["w"]
    assert len(P1.findings_table(f)[1]) == 2


def test_card_name_is_a_name_not_a_formula():
    m = M.KeyMetric("07_performance", "", "prefill_tok_s", "Prefill tok/s = input_len / TTFT p50",
                    "预填充速度 = 输入长度 / TTFT 中位数", 12.0, "tok/s")
    assert P1.card_name(m).en == "Prefill speed" and P1.card_name(m).zh == "预填充速度"
    m = M.KeyMetric("09_accuracy", "", "quiz_acc", "quiz acc = right / all (n 40)", "测验（n 40）", 0.5, "")
    assert (P1.card_name(m).en, P1.card_name(m).zh) == ("quiz acc", "测验")


def test_page_one_findings_are_short_and_keep_what_to_do():
    f = [F.Finding("fail", "engine", "02_loading", "c", T("长" * 100, "word " * 60), T("影响" * 30, "impact " * 30),
                   T("处理" * 30, "remedy " * 30))]
    row = P1.findings_table(f, limit=6)[1][0]
    assert len(row[1].en) <= 110 and len(row[1].zh) <= 60 and row[1].en.endswith("…")
    assert "; remedy" in row[2].en and "；处理" in row[2].zh  # what to do survives the cut
    assert P1.findings_table(f)[1][0][1].en == "word " * 60  # elsewhere: whole


def test_page_one_says_which_shapes_and_lengths_the_engine_verdict_covers():
    """The precision chapter's compared_lengths (a description the card leaves out) is one line under the card."""
    value = "stand-in (4L×256): short 6–11, long-1024 1024 tokens; synthetic bitcpm4-0.5b (24L×1024): full-shape/long-1024 1024"
    km = [M.KeyMetric("06_precision", "", "compared_lengths", "Shapes and prompt lengths compared with the golden",
                      "与黄金实现比较的形状与提示长度", value, ""),
          M.KeyMetric("06_precision", "", "top1", "Top-1", "Top-1", 0.99, "")]
    assert all(r.id != "compared_lengths" for r in P1.results_card(km))
    line = P1.compared_line(km)
    assert f"`{value}`" in line.en and f"`{value}`" in line.zh and line.zh.startswith("引擎结论所覆盖的比较")
    assert P1.compared_line(km[1:]) is None
