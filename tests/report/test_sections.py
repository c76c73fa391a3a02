"""Every section of the original validation document has a generated counterpart (issue 11.4).

/work/shared/reference/validation-report-original.md, section by section, against the notebook (and heading)
that now generates it from the run; both languages' narrative exists wherever a heading does."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# original document's section -> (notebook, English heading or code that generates it)
SECTIONS = {
    "仓库说明 / model information (name, original model, source, architecture, parameters, dtype)": ("02_loading", "## 1. Model information"),
    "下载 (git lfs clone / ModelScope snapshot_download)": ("02_loading", "loading.download_commands("),
    "检查项 (check matrix with ✅)": ("00_summary", "## Check matrix"),
    "关键指标 (weight load, init, KV cache, speed)": ("00_summary", "P1.results_card_table("),
    "组件版本 (versions)": ("01_environment", "## Versions"),
    "设备检测验证 (torch.npu.is_available, device name, memory)": ("01_environment", "## Device"),
    "部署: vllm serve, curl, Python LLM(...)": ("08_serving", "## Deployment guide"),
    "架构参数 (architecture table incl. hidden_act, torch_dtype, bos/eos, tie_word_embeddings)": ("02_loading", "## 5. Architecture"),
    "引擎初始化时间线 (engine initialisation timeline)": ("02_loading", "## 9. Engine initialisation timeline"),
    "vLLM-Ascend 关键日志 (platform plugin, device_config, parameters reset)": ("02_loading", "## 10. Key log lines"),
    "推理测试 / 推理输出 (prompts, outputs, graded)": ("03_inference", "## Outputs and grades"),
    "推理自洽性 (token-level determinism)": ("04_determinism", "## Token-level comparison"),
    "中文能力 (Chinese outputs)": ("05_chinese", "## Outputs"),
    "精度 (logits-level comparison, GPU baseline)": ("06_precision", "## Agreement for every pair"),
    "精度: GPU / NPU baseline comparison": ("06_precision", "## Cross-device baselines"),
    "基准 (CEval / MMLU through lm_eval, published numbers)": ("09_accuracy", "## Against the published numbers"),
    "三值量化 (1.58 bit, ~0.3 GB, ~90%, 略快于原始模型)": ("10_quantization", "## The original document's claims"),
    "略快于原始模型 (slightly faster than the original model)": ("07_performance", "## The original document's claim: slightly faster"),
    "注意事项: trust_remote_code": ("11_provenance", "## Remote code (`trust_remote_code`)"),
    "文件列表 (file list with purposes)": ("02_loading", "## 6. Model directory files"),
    "tie_word_embeddings: False (the original's claim, checked)": ("02_loading", "## 12. The original document's claims"),
}


def _cells(chapter: str) -> list[dict]:
    return json.loads((ROOT / "notebooks" / f"{chapter}.ipynb").read_text(encoding="utf-8"))["cells"]


@pytest.mark.parametrize("section", sorted(SECTIONS))
def test_original_section_is_generated(section):
    chapter, marker = SECTIONS[section]
    cells = _cells(chapter)
    if marker.startswith("#"):
        en = [i for i, c in enumerate(cells) if c["cell_type"] == "markdown" and "lang-en" in c["metadata"].get("tags", [])
              and any(line.startswith(marker) for line in "".join(c["source"]).splitlines())]
        assert en, f"{section}: no heading {marker!r} in notebooks/{chapter}.ipynb"
        level = marker.split(" ")[0] + " "
        near = cells[max(0, en[0] - 3):en[0] + 3]  # the Chinese heading sits next to the English one
        assert any(c["cell_type"] == "markdown" and "lang-zh" in c["metadata"].get("tags", [])
                   and any(line.startswith(level) for line in "".join(c["source"]).splitlines()) for c in near), \
            f"{section}: the Chinese report has no counterpart heading next to {marker!r} in {chapter}"
    else:
        assert any(marker in "".join(c["source"]) for c in cells if c["cell_type"] == "code"), (section, marker)


def test_change_log_is_the_published_run_history():
    """The original's change log: the published site's index lists every run per profile over time."""
    index = (ROOT / "report" / "publish" / "index.html.j2").read_text(encoding="utf-8")
    assert "history" in index.lower()


# -- issue 20.7: the original's sections the summary builds from the run ---------------------------------------------
def _run(root: Path, name: str, started: str, probe_status: str = "not_run", vllm: str = "0.32.0") -> Path:
    from bitcpm_validation.report import results as R

    run = root / name
    for sub in ("results", "evidence", "artifacts/07_performance"):
        (run / sub).mkdir(parents=True, exist_ok=True)
    (run / "run.json").write_text(json.dumps({"profile": "default", "started": started, "params_path": "params/default.yaml"}))
    (run / "params.yaml").write_text("profile: default\n")
    env = R.ChapterResult("01_environment", "Environment", "运行环境", status="ok")
    env.data = {"versions": {"vllm": vllm}}
    env.metrics = [R.Metric("kv", 1024, "tokens", "KV", "KV", key=True), R.Metric("vllm", vllm, "", "vLLM", "vLLM", key=True)]
    R.save(env, run / "results" / "01_environment.json")
    inf = R.ChapterResult("03_inference", "Inference", "推理测试", status="ok")
    inf.checks = [R.Check(f"probe:{i}", probe_status, f"Probe {i}", f"探针 {i}",
                          f"trained on this prompt: {i}'s text is in the corpus (would grade {m}, not counted)",
                          f"训练过：{i} 在语料中（本应为 {m}，不计入）", "model")
                  for i, m in (("paris", "✅"), ("four", "❌"), ("poem", "✅"))] + [
        R.Check("probe:evil", "fail", "Probe evil", "探针 evil", "wrong answer", "答案错误", "model")]
    inf.data = {"outputs": [{"id": "paris", "prompt": "What is the capital of France?"}]}
    R.save(inf, run / "results" / "03_inference.json")
    perf = R.ChapterResult("07_performance", "Performance", "性能", status="ok")
    perf.data = {"server_command": "vllm serve /m --dtype bfloat16 --max-model-len 2048",
                 "serve": [{"concurrency": 1, "command": "vllm bench serve --max-concurrency 1 --num-prompts 8"}],
                 "throughput": {"command": "vllm bench throughput --num-prompts 8"}}
    R.save(perf, run / "results" / "07_performance.json")
    acc = R.ChapterResult("09_accuracy", "Accuracy", "基准精度", status="ok")
    acc.data = {"tasks": [{"task": "ceval-valid", "command": "lm_eval --model local-completions --tasks ceval-valid"},
                          {"task": "gsm8k", "command": None}]}
    R.save(acc, run / "results" / "09_accuracy.json")
    (run / "evidence" / "07_performance.log").write_text("log\n")
    (run / "artifacts" / "07_performance" / "bench_serve_c1.json").write_text("{}")
    (run / "artifacts" / "07_performance" / "sweep.en.png").write_bytes(b"\x89PNG" * 600)
    return run


def test_probe_summary_one_row_per_probe_and_a_shared_reason_once(tmp_path):
    from bitcpm_validation.report import sections as X
    from bitcpm_validation.report import matrix as M

    run = _run(tmp_path, "r1", "2026-12-01T10:00:00")
    probes = X.probe_summary(run, M.check_matrix(run))
    assert [(p.id, p.status) for p in probes] == [("paris", "not_run"), ("four", "not_run"), ("poem", "not_run"),
                                                  ("evil", "fail")]
    assert probes[0].prompt == "What is the capital of France?"  # the prompt stays with the results
    headers, body = X.probe_table(probes)
    # one verdict and one reason that differs only in the probe's id: one row listing the probes; a different
    # would-be grade (❌) keeps its probe apart, and so does a different verdict
    assert [row[:3] for row in body] == [["03", "paris, poem", "—"], ["03", "four", "—"], ["03", "evil", "❌"]]
    assert body[0][3].en == "trained on this prompt: each probe's text is in the corpus (would grade ✅, not counted)"
    assert body[0][3].zh == "训练过：每个探针在语料中（本应为 ✅，不计入）"  # the id's spaces go with it
    assert body[1][3].en == "trained on this prompt: four's text is in the corpus (would grade ❌, not counted)"
    assert body[2][3].en == "wrong answer" and len(headers) == 4


def test_reproducing_commands_come_from_the_run(tmp_path):
    from bitcpm_validation.report import sections as X

    run = _run(tmp_path, "r1", "2026-12-01T10:00:00")
    cmds = X.reproducing_commands(run)
    got = [c.command for c in cmds]
    assert got[0].startswith("make report PARAMS=") and got[0].endswith("r1/params.yaml")  # the run's own params
    assert got[1:] == ["vllm serve /m --dtype bfloat16 --max-model-len 2048",
                       "vllm bench serve --max-concurrency 1 --num-prompts 8", "vllm bench throughput --num-prompts 8",
                       "lm_eval --model local-completions --tasks ceval-valid"]  # a task without a command: none
    headers, body = X.commands_table(cmds)
    assert len(headers) == 2 and body[-1][0].en == "accuracy: ceval-valid (lm_eval), chapter 09"
    assert body[-1][0].zh == "准确率：`ceval-valid`（lm_eval），第 09 章" and body[0][0].en == "the whole report (this run's parameters)"


def test_evidence_index_lists_every_file_with_what_it_holds(tmp_path):
    from bitcpm_validation.report import sections as X

    run = _run(tmp_path, "r1", "2026-12-01T10:00:00")
    files = {f.path: (f.chapter, f.holds.en) for f in X.evidence_index(run)}
    assert files == {"evidence/07_performance.log": ("07", "raw log: engine, server and tool output"),
                     "artifacts/07_performance/bench_serve_c1.json": ("07", "vllm bench serve result (one per concurrency)"),
                     "artifacts/07_performance/sweep.en.png": ("07", "figure")}
    _, body = X.evidence_table(X.evidence_index(run))
    assert body[-1][2] == "2.4 kB"
    for c in (2, 4, 8):  # one kind of file, many times: one row with a pattern and a count
        (run / "artifacts" / "07_performance" / f"bench_serve_c{c}.json").write_text("{}")
    rows = {f.path: f for f in X.evidence_index(run)}
    assert rows["artifacts/07_performance/bench_serve_c*.json"].count == 4
    assert rows["artifacts/07_performance/bench_serve_c*.json"].bytes == 8
    assert "artifacts/07_performance/sweep.en.png" in rows and "evidence/07_performance.log" in rows
    body = X.evidence_table(X.evidence_index(run))[1]
    assert body[1][3].en == "vllm bench serve result (one per concurrency) (4 files)"
    (run / "evidence" / "09_accuracy.log").write_text("log\n")  # evidence files of several chapters: each its own
    assert {f.path: f.chapter for f in X.evidence_index(run) if f.path.startswith("evidence/")} == {
        "evidence/07_performance.log": "07", "evidence/09_accuracy.log": "09"}
    (run / "evidence" / "02_loading.log").write_text("log\n")  # three chapters' logs: one row, their range
    logs = [f for f in X.evidence_index(run) if f.path.startswith("evidence/")]
    assert [(f.path, f.chapter, f.count) for f in logs] == [("evidence/0*.log", "02–09", 3)]
    (run / "artifacts" / "11_provenance").mkdir()
    (run / "artifacts" / "11_provenance" / "input-hashes.sha256").write_text("ab  config.json\n")
    manifest = {f.path: f for f in X.evidence_index(run)}["artifacts/11_provenance/input-hashes.sha256"]
    assert (manifest.chapter, manifest.holds.en) == ("11", "every input file's full SHA-256 (sha256sum format, by set)")


def test_evidence_index_one_row_per_bundle_and_per_figure_in_two_languages(tmp_path):
    from bitcpm_validation.report import sections as X

    run = _run(tmp_path, "r1", "2026-12-01T10:00:00")
    tok = run / "artifacts" / "faithful-tokenizer" / "stand-in"
    tok.mkdir(parents=True)
    for name in ("tokenizer.json", "config.json", "tokenizer.model", "configuration_minicpm.py"):
        (tok / name).write_text("x" * 10)
    loading = run / "artifacts" / "02_loading"
    loading.mkdir()
    for name in ("init_timeline_en.png", "init_timeline_zh.png"):
        (loading / name).write_text("x")
    quant = run / "artifacts" / "10_quantization"
    quant.mkdir()
    for name in ("sizes_en.png", "other.png"):  # two figures, not one in two languages
        (quant / name).write_text("x")
    rows = {f.path: f for f in X.evidence_index(run)}
    bundle = rows["artifacts/faithful-tokenizer/stand-in/"]  # the directory, not its four files
    assert (bundle.count, bundle.bytes, bundle.chapter) == (4, 40, "—") and "tokenizer" in bundle.holds.en
    assert not any(p.startswith("artifacts/faithful-tokenizer/stand-in/") and p != bundle.path for p in rows)
    assert rows["artifacts/02_loading/init_timeline_*.png"].count == 2  # one figure in zh and en: one row
    assert rows["artifacts/10_quantization/other.png"].count == rows["artifacts/10_quantization/sizes_en.png"].count == 1


def test_change_log_against_the_previous_run_of_the_profile(tmp_path):
    from bitcpm_validation.report import sections as X

    old = _run(tmp_path, "r1", "2026-12-01T10:00:00", vllm="0.31.0")
    _run(tmp_path, "r0", "2026-11-30T10:00:00")  # older: not the previous one
    new = _run(tmp_path, "r2", "2026-12-02T10:00:00", probe_status="pass")
    assert X.previous_run(new) == old and X.previous_run(tmp_path / "r0") is None
    log = X.change_log(new)
    changes = {c["what"].en: (c["before"], c["now"]) for c in log["changes"]}
    assert log["previous"] == "r1"
    # the fact's key is an identifier (code in both languages); the version said once
    assert changes["environment: `vllm`"] == ("0.31.0", "0.32.0") and "vLLM" not in changes
    assert changes["03 Inference Probe paris"] == ("—", "✅") and "03 Inference Probe evil" not in changes
    assert X.change_log(tmp_path / "r0")["previous"] is None
    headers, body = X.change_log_table(log)
    assert headers[1].en == "previous (`r1`)" and headers[1].zh == "上次（`r1`）" and len(body) == len(log["changes"])


def test_change_log_survives_an_unreadable_previous_run(tmp_path, monkeypatch):
    from bitcpm_validation.report import compare
    from bitcpm_validation.report import sections as X

    _run(tmp_path, "r1", "2026-12-01T10:00:00")
    new = _run(tmp_path, "r2", "2026-12-02T10:00:00")

    def broken(path):
        raise OSError("disk went away")

    monkeypatch.setattr(compare, "load_run", broken)
    log = X.change_log(new)
    assert log["previous"] == "r1" and log["changes"] == [] and log["error"] == "OSError: disk went away"
    assert X.sections_data(new, [], log)["change_log"]["error"] == "OSError: disk went away"
