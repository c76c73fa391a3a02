"""Accuracy: the local bilingual task, lm-eval result parsing, published comparison, a hub task skipped while the
hub is unreachable (no server needed: nothing is sent), and the chapter's evaluation of the local task on the
stand-in through the run's shared server, asserted on the session's default report (conftest `e2e_run`)."""
from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest
import yaml

from bitcpm_validation.chapters import accuracy as A
from bitcpm_validation.engine import datasets
from bitcpm_validation.report import items
from bitcpm_validation.report import results as R
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


@pytest.fixture(scope="module")
def task_manager(tmp_path_factory):
    """lm-eval's TaskManager with the local task's include dir, as the chapter builds it (seconds: built once)."""
    return A.task_manager(tmp_path_factory.mktemp("tm"))


def closed_port() -> int:
    """A local port nothing listens on: a request sent there fails at once, naming 127.0.0.1 and the port."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_unknown_task_is_a_failure(tmp_path, task_manager):
    r = A.evaluate_task("no_such_task_xyz", base_url="http://127.0.0.1:9/v1/completions", model="m",
                        tokenizer="unused", out_dir=tmp_path, tm=task_manager)
    assert r.status == "failed" and "no_such_task_xyz" in r.reason and "accuracy.tasks" in r.reason
    c = A.judge_task(r)
    assert c.status == "fail" and c.id == "task:no_such_task_xyz" and c.scope == "model"


def test_lm_evals_own_tasks_are_indexed_only_when_asked_for(tmp_path, task_manager):
    """The project's local task alone needs no index of lm-eval's ~15,000 configs (seconds saved per run); any
    other task, or no list, gets them."""
    local = A.task_manager(tmp_path, None, ["bitcpm_probe_mc"])
    assert local.all_tasks == ["bitcpm_probe_mc"]
    assert "mmlu" in task_manager.all_tasks and "bitcpm_probe_mc" in task_manager.all_tasks  # tasks=None
    assert not A.needs_lm_evals_tasks(["bitcpm_probe_mc"])
    assert A.needs_lm_evals_tasks(["bitcpm_probe_mc", "mmlu"]) and A.needs_lm_evals_tasks(["no_such_task_xyz"])
    assert A.needs_lm_evals_tasks(None)


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


def test_unreachable_hub_task_is_skipped_not_failed(tmp_path, task_manager):
    """Skipped before any request is sent: no server listens on the URL, so a request would fail naming the server,
    which is a failure, never 'unreachable' (test_unreachable_only_while_the_hub_is_offline_and_never_for_the_server)."""
    if datasets.hub_reachable():
        pytest.skip("the hub is reachable from this host")
    r = A.evaluate_task("mmlu", base_url=f"http://127.0.0.1:{closed_port()}/v1/completions", model="m",
                        tokenizer=ROOT / "models/stand-in", out_dir=tmp_path, limit=1, max_length=512, tm=task_manager)
    assert r.status == "skipped" and "unreachable" in r.reason, r.reason
    assert A.judge_task(r).status == "not_run"


# -- the local task through the run's shared vLLM server: the session's default report (e2e) ----------------------
def in_run(run_dir: Path, written: str) -> Path:
    """A file the chapter wrote (an absolute path, where that run lived) in this run dir: the run may have been moved
    since (BITCPM_E2E_RUN_DIR). Chapters write their files under <run>/artifacts/."""
    parts = Path(written).parts
    assert "artifacts" in parts, f"{written}: not a file of the run's artifacts"
    last = len(parts) - 1 - parts[::-1].index("artifacts")
    return run_dir.joinpath(*parts[last:])


@pytest.fixture(scope="module")
def local_task(e2e_run):
    """(run dir, the chapter's results, its entry for the local task) of the session's default report."""
    rd = e2e_run["run_dir"]
    p = rd / "results" / "09_accuracy.json"
    assert p.is_file(), f"09_accuracy wrote no results; runner output:\n{e2e_run['output'][-3000:]}"
    res = R.load(p)
    task = next((t for t in res.data["tasks"] if t["task"] == "bitcpm_probe_mc"), None)
    assert task is not None, [t["task"] for t in res.data["tasks"]]
    return rd, res, task


@pytest.mark.e2e
def test_local_task_through_the_runs_server(local_task):
    """The local task through lm-eval's local-completions against the run's shared server, on the items the
    stand-in was not trained on: its headline row, the saved results, one item record per kept item, the score."""
    rd, res, task = local_task
    assert task["status"] == "ok", task["reason"]
    seen = res.data["contamination"]["bitcpm_probe_mc"]
    shipped = [json.loads(x)["id"] for x in (TASKS_DIR / "bitcpm_probe_mc.jsonl").read_text(encoding="utf-8").splitlines()]
    assert seen["items"] == len(shipped) == 32 and set(seen["removed"]) < set(shipped)
    n = seen["items"] - len(seen["removed"])
    h = A.headline(task["rows"], "bitcpm_probe_mc")
    assert h["metric"] == "acc" and 0.0 <= h["value"] <= 1.0 and h["stderr"] is not None and h["n"] == n, h
    saved = json.loads(in_run(rd, task["output_file"]).read_text(encoding="utf-8"))
    assert "bitcpm_probe_mc" in saved["results"]
    # the data lm-eval read: the shipped items less those seen in training, in order
    kept = [json.loads(x) for x in in_run(rd, saved["configs"]["bitcpm_probe_mc"]["dataset_kwargs"]["data_files"]["test"])
            .read_text(encoding="utf-8").splitlines()]
    assert [k["id"] for k in kept] == [i for i in shipped if i not in seen["removed"]]
    # per-item results kept, pairable: one line per kept item (lm-eval's doc id = its line in the kept data, its doc
    # hash that line's), with lm-eval's prompt hash; the score carries its n
    from lm_eval.utils import handle_non_serializable, hash_string

    recs = items.read_items(in_run(rd, task["items_file"]))
    assert len(recs) == n and {x["doc_id"] for x in recs} == set(range(n)) and all(x["prompt_hash"] for x in recs)
    for x in recs:
        doc = json.dumps(kept[x["doc_id"]], indent=2, default=handle_non_serializable, ensure_ascii=False)
        assert x["doc_hash"] == hash_string(doc), (x["doc_id"], kept[x["doc_id"]]["id"])
    score = task["score"]
    assert score["n"] == n and score["points"] == pytest.approx(100 * h["value"], abs=1e-3)
    assert score["ci"][0] <= score["points"] <= score["ci"][1]
    cmd = task["command"]
    assert "--tasks bitcpm_probe_mc" in cmd and "--include_path" in cmd and "--samples" not in cmd, cmd


@pytest.mark.e2e
def test_local_task_is_found_by_lm_eval(local_task):
    """lm-eval's TaskManager found the local task in the include dir the chapter wrote (evaluate_task fails a task
    its TaskManager does not know, before sending anything), and ran the task from that dir's YAML."""
    rd, _, task = local_task
    assert task["status"] == "ok", task["reason"]
    include = in_run(rd, task["command"].split("--include_path ", 1)[1].split()[0])
    assert (include / "bitcpm_probe_mc.yaml").is_file(), include
    config = json.loads(in_run(rd, task["output_file"]).read_text(encoding="utf-8"))["configs"]["bitcpm_probe_mc"]
    assert config["task"] == "bitcpm_probe_mc" and config["output_type"] == "multiple_choice"
    assert in_run(rd, config["metadata"]["config_source"]) == include / "bitcpm_probe_mc.yaml"
