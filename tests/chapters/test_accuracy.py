"""Accuracy: the local bilingual task, lm-eval result parsing, published comparison, and the chapter's
evaluation on the stand-in through the server (one server per module)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from bitcpm_validation.chapters import accuracy as A
from bitcpm_validation.engine import datasets
from bitcpm_validation.tasks import TASKS_DIR

ROOT = Path(__file__).resolve().parents[2]


def test_local_task_data():
    rows = [json.loads(line) for line in (TASKS_DIR / "bitcpm_probe_mc.jsonl").read_text(encoding="utf-8").splitlines()]
    assert 20 <= len(rows) <= 40
    assert {r["lang"] for r in rows} == {"en", "zh"}
    for r in rows:
        assert len(r["choices"]) == 4 and 0 <= r["answer"] < 4 and len(set(r["choices"])) == 4
    assert len({r["id"] for r in rows}) == len(rows)
    cfg = yaml.safe_load((TASKS_DIR / "bitcpm_probe_mc.yaml").read_text())
    assert cfg["dataset_path"] == "json" and cfg["output_type"] == "multiple_choice"


def test_include_dir_has_absolute_data_files(tmp_path):
    d = A.local_include_dir(tmp_path)
    cfg = yaml.safe_load((d / "bitcpm_probe_mc.yaml").read_text())
    f = Path(cfg["dataset_kwargs"]["data_files"]["test"])
    assert f.is_absolute() and f.is_file()


def test_task_is_found_by_lm_eval(tmp_path):
    from lm_eval.tasks import TaskManager

    tm = TaskManager(include_path=str(A.local_include_dir(tmp_path)))
    assert "bitcpm_probe_mc" in tm.all_tasks


def test_rows_and_published():
    res = {"results": {"mmlu": {"alias": "mmlu", "acc,none": 0.5, "acc_stderr,none": 0.01},
                       "gsm8k": {"exact_match,strict-match": 0.25, "exact_match_stderr,strict-match": 0.02}},
           "n-samples": {"mmlu": {"original": 100, "effective": 10}}}
    rows = A.rows_from_results(res, res["n-samples"])
    assert {"task": "mmlu", "metric": "acc", "value": 0.5, "stderr": 0.01, "n": 10} in rows
    assert A.headline(rows, "gsm8k")["metric"] == "exact_match (strict-match)"
    c = A.compare_published("mmlu", 0.5, 0.05)
    assert c["published"] == 49.88 and c["within"] and "OpenCompass" in c["source"]
    assert not A.compare_published("cmmlu", 0.40, 0.05)["within"]
    assert A.compare_published("bitcpm_probe_mc", 0.4, 0.05) is None


def test_unreachable_only_while_the_hub_is_offline_and_never_for_the_server():
    try:
        raise ConnectionError("Couldn't reach 'cais/mmlu' on the Hub (LocalEntryNotFoundError)")
    except ConnectionError as e:
        assert A.is_unreachable(e, hub_offline=True, base_url="http://127.0.0.1:8123/v1/completions")
        assert not A.is_unreachable(e, hub_offline=False)  # hub reachable: a real failure
    server_down = ConnectionError("HTTPConnectionPool(host='127.0.0.1', port=8123): Max retries exceeded with url: "
                                  "/v1/completions")
    assert not A.is_unreachable(server_down, hub_offline=True, base_url="http://127.0.0.1:8123/v1/completions")
    assert not A.is_unreachable(ValueError("404 Not Found: model `x` does not exist"), hub_offline=True)
    assert not A.is_unreachable(ValueError("shape mismatch"), hub_offline=True)


def test_unknown_task_is_a_failure(tmp_path):
    r = A.evaluate_task("no_such_task_xyz", base_url="http://127.0.0.1:9/v1/completions", model="m",
                        tokenizer="unused", out_dir=tmp_path)
    assert r.status == "failed" and "no_such_task_xyz" in r.reason and "accuracy.tasks" in r.reason
    c = A.judge_task(r)
    assert c.status == "fail" and c.id == "task:no_such_task_xyz" and c.scope == "model"


def test_contamination_finds_the_stand_in_corpus_items(tmp_path):
    c = A.task_contamination(ROOT / "models/stand-in", "bitcpm_probe_mc")  # the stand-in declares its corpus
    bad = c.hits
    assert c.declared and c.checked == 32 and len(bad) == 21 and "en00" in bad and "zh27" not in bad
    undeclared = A.task_contamination(tmp_path, "bitcpm_probe_mc")  # e.g. the real BitCPM4: nothing declared
    assert not undeclared.declared and not undeclared.hits
    d = A.local_include_dir(tmp_path, {"bitcpm_probe_mc": set(bad)})
    cfg = yaml.safe_load((d / "bitcpm_probe_mc.yaml").read_text())
    kept = [json.loads(x) for x in Path(cfg["dataset_kwargs"]["data_files"]["test"]).read_text().splitlines()]
    assert len(kept) == 11 and not {k["id"] for k in kept} & set(bad)
    assert len((TASKS_DIR / "bitcpm_probe_mc.jsonl").read_text().splitlines()) == 32  # the shipped data untouched


def test_above_chance_needs_a_significant_margin():
    ok = A.judge_above_chance("t", 0.8, 0.1, 40, 0.25)
    assert ok.status == "pass" and ok.id == "above_chance:t" and "0.450" in ok.detail_en
    noise = A.judge_above_chance("t", 0.40, 0.1, 20, 0.25)  # 1.5 stderr above chance: noise
    assert noise.status == "fail"
    assert A.judge_above_chance("t", 0.2, 0.05, 40, 0.25).status == "fail"
    few = A.judge_above_chance("t", 1.0, 0.0, 5, 0.25, removed=27)
    assert few.status == "not_run" and "27 items seen in training" in few.detail_en
    assert A.judge_above_chance("t", 0.9, 0.05, 40, None).status == "not_run"
    assert A.chance_level("bitcpm_probe_mc") == 0.25 and A.chance_level("mmlu") == 0.25
    assert A.chance_level("unknown") is None


def test_published_comparison():
    assert A.judge_published("mmlu", 0.5, 0.05, fail_outside=False, is_stand_in=False).status == "pass"
    assert A.judge_published("mmlu", 0.3, 0.05, fail_outside=False, is_stand_in=False).status == "warn"
    assert A.judge_published("mmlu", 0.3, 0.05, fail_outside=True, is_stand_in=False).status == "fail"
    assert A.judge_published("mmlu", 0.5, 0.05, fail_outside=True, is_stand_in=True).status == "not_run"
    assert A.judge_published("bitcpm_probe_mc", 0.5, 0.05, fail_outside=True, is_stand_in=False).status == "not_run"


def test_task_rows():
    assert A.judge_task(A.TaskResult("mmlu", "skipped", reason="dataset unreachable (hub offline): x")).status == "not_run"
    ok = A.judge_task(A.TaskResult("t", "ok", [{"task": "t", "metric": "acc", "value": 0.5, "stderr": 0.1, "n": 11}],
                                   seconds=3.0))
    assert ok.status == "pass" and "11 items" in ok.detail_en


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """The stand-in (or, before it is trained, a tiny random model) behind one vLLM server."""
    from bitcpm_validation.engine import server
    from bitcpm_validation.params import load_params

    tmp = tmp_path_factory.mktemp("acc")
    model = ROOT / "models/stand-in"
    if not (model / "config.json").is_file() or not list(model.glob("*.safetensors")):
        from bitcpm_validation.model.writer import write_tiny_random_model

        model = write_tiny_random_model(tmp / "tiny")
    y = {"profile": "t", "prompts": str(ROOT / "params/prompts.yaml"), "model": {"path": str(model)},
         "engine": {"max_model_len": 512}, "inference": {"max_tokens": 8}, "serving": {"startup_timeout_s": 600}}
    (tmp / "p.yaml").write_text(yaml.safe_dump(y))
    p = load_params(tmp / "p.yaml")
    with server.serving(p, tmp / "ev.log", "real") as srv:
        yield srv, p, tmp


@pytest.mark.engine
def test_local_task_through_server(served):
    srv, p, tmp = served
    r = A.evaluate_task("bitcpm_probe_mc", base_url=srv.base_url + "/completions", model=srv.model,
                        tokenizer=p.model_path, out_dir=tmp / "out", max_length=512)
    assert r.status == "ok", r.reason
    h = A.headline(r.rows, "bitcpm_probe_mc")
    assert h["metric"] == "acc" and 0.0 <= h["value"] <= 1.0 and h["stderr"] is not None and h["n"] == 32
    saved = json.loads(Path(r.output_file).read_text())
    assert "bitcpm_probe_mc" in saved["results"]
    # per-item results kept, pairable: one line per item with lm-eval's hashes; the score carries its n
    from bitcpm_validation.report import items

    recs = items.read_items(r.items_file)
    assert len(recs) == 32 and {x["doc_id"] for x in recs} == set(range(32)) and all(x["prompt_hash"] for x in recs)
    assert r.score["n"] == 32 and r.score["points"] == pytest.approx(100 * h["value"], abs=1e-3)
    assert r.score["ci"][0] <= r.score["points"] <= r.score["ci"][1]
    assert "--tasks bitcpm_probe_mc" in r.command and "--include_path" in r.command and "--samples" not in r.command


@pytest.mark.engine
def test_unreachable_hub_task_is_skipped_not_failed(served):
    srv, p, tmp = served
    if datasets.hub_reachable():
        pytest.skip("the hub is reachable from this host")
    r = A.evaluate_task("mmlu", base_url=srv.base_url + "/completions", model=srv.model,
                        tokenizer=p.model_path, out_dir=tmp / "out", limit=1, max_length=512)
    assert r.status == "skipped" and "unreachable" in r.reason and A.judge_task(r).status == "not_run"
    srv.check_alive()
