"""Benchmarks through the real loading code, offline: a processed `datasets` cache built here with datasets'
own builder under the real dataset names (ceval/ceval-exam, openai/gsm8k), read by engine.datasets and by
lm-eval (through chapters.accuracy) against a small local OpenAI-compatible server that scores
deterministically. No hub, no engine."""
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml

from bitcpm_validation.chapters import accuracy as A
from bitcpm_validation.engine import datasets as D
from bitcpm_validation.report import items, stats

ROOT = Path(__file__).resolve().parents[2]
COMMIT = "c0ffee0000000000000000000000000000000001"


def write_processed(cache: Path, repo_id: str, config: str, splits: dict[str, list[dict]], commit: str = COMMIT):
    """What `load_dataset(repo_id, config)` leaves in HF_DATASETS_CACHE, made with datasets' Json builder:
    <org>___<name>/<config>/0.0.0/<commit>/ (arrow files + dataset_info.json)."""
    from datasets.packaged_modules.json.json import Json

    src = cache.parent / "src" / repo_id.replace("/", "__") / config
    src.mkdir(parents=True, exist_ok=True)
    files = {}
    for split, rows in splits.items():
        f = src / f"{split}.jsonl"
        f.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows) + "\n", encoding="utf-8")
        files[split] = str(f)
    b = Json(cache_dir=str(cache), dataset_name=repo_id.split("/")[-1], config_name=config, config_id=config,
             hash=commit, data_files=files)
    b.repo_id = repo_id  # the cache folder carries the namespace, as for a hub dataset
    b._cache_dir = b._build_cache_dir()
    b.download_and_prepare()


def _ceval_rows(n, seed):
    return [{"id": i, "question": f"题目 {seed}-{i}：1 + {i} 等于几？", "A": str(1 + i), "B": str(2 + i), "C": str(3 + i),
             "D": str(4 + i), "answer": "ABCD"[(i + seed) % 4], "explanation": ""} for i in range(n)]


def _gsm_rows(n):
    return [{"question": f"Tom has {i} apples and buys 3 more. How many now?", "answer": f"{i} + 3 = {i + 3}\n#### {i + 3}"}
            for i in range(n)]


class _Scorer(BaseHTTPRequestHandler):
    """/v1/completions: log-likelihoods that depend only on the token ids (echo), or a fixed answer."""

    def log_message(self, *a):
        pass

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        prompts = body["prompt"]
        if not isinstance(prompts, list) or (prompts and isinstance(prompts[0], int)) or isinstance(prompts[0], str) and len(prompts) == 1:
            prompts = [prompts] if not (isinstance(prompts, list) and prompts and isinstance(prompts[0], (list, str))) else prompts
        choices = []
        for i, p in enumerate(prompts):
            if body.get("echo"):
                ids = p if isinstance(p, list) else list(p.encode())
                lps = [-float((t * 7919) % 13) / 3.0 for t in ids] + [0.0]
                choices.append({"index": i, "text": "", "logprobs": {"token_logprobs": lps,
                                "top_logprobs": [{str(t): lp} for t, lp in zip(ids + [0], lps)], "tokens": [str(t) for t in ids + [0]]}})
            else:
                choices.append({"index": i, "text": " 3 + 3 = 6\n#### 6\n\nQuestion: x", "finish_reason": "stop"})
        out = json.dumps({"id": "x", "object": "text_completion", "model": body.get("model"), "choices": choices}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    import datasets.config

    tmp = tmp_path_factory.mktemp("bench")
    cache = tmp / "hf_datasets"
    mp = pytest.MonkeyPatch()
    mp.setenv("HF_DATASETS_CACHE", str(cache))
    offline = D.hub_offline(True)  # as the accuracy chapter evaluates offline: no minute of retries per load
    offline.__enter__()
    mp.setattr(datasets.config, "HF_DATASETS_CACHE", cache)
    tm = A.task_manager(tmp / "out")
    needs = D.task_needs(["ceval-valid"], tm=tm)["ceval-valid"]
    assert len(needs) == 52
    for k, need in enumerate(needs):  # subtasks of 2..9 items: the allocation has sizes to follow
        write_processed(cache, need.path, need.config, {"val": _ceval_rows(2 + k % 8, k), "dev": _ceval_rows(5, 99)})
    write_processed(cache, "openai/gsm8k", "main", {"test": _gsm_rows(6), "train": _gsm_rows(8)})
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _Scorer)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{srv.server_address[1]}/v1/completions"
    yield {"tmp": tmp, "cache": cache, "tm": tm, "url": url, "needs": needs}
    srv.shutdown()
    offline.__exit__(None, None, None)
    mp.undo()


def _params(tmp: Path, accuracy: dict):
    from bitcpm_validation.params import load_params

    y = {"profile": "t", "prompts": str(ROOT / "params/prompts.yaml"), "model": {"path": str(ROOT / "models/stand-in")},
         "engine": {"max_model_len": 2048}, "accuracy": accuracy}
    f = tmp / f"p{len(list(tmp.glob('p*.yaml')))}.yaml"
    f.write_text(yaml.safe_dump(y))
    return load_params(f)


def test_resolution_reads_the_processed_cache_offline(bench):
    load = __import__("datasets").load_dataset
    d = load("ceval/ceval-exam", "computer_network")  # what lm-eval calls, offline
    assert d["val"].num_rows >= 2
    res = D.resolve(["ceval-valid", "gsm8k", "mmlu"], {}, params_source="params/x.yaml", online=False, tm=bench["tm"],
                    say=lambda m: None)
    ds = res["datasets"]
    assert ds["ceval/ceval-exam"]["status"] == "ok" and ds["ceval/ceval-exam"]["revision"] == COMMIT
    assert ds["ceval/ceval-exam"]["configs"] == 52 and ds["openai/gsm8k"]["revision"] == COMMIT
    line = ds["cais/mmlu"]["reason"]
    assert ds["cais/mmlu"]["status"] == "missing" and "\n" not in line
    assert "cais/mmlu" in line and str(bench["cache"]) in line and "prefetch-datasets params/x.yaml" in line
    assert res["tasks"] == {"ceval-valid": None, "gsm8k": None, "mmlu": line}
    pinned = D.resolve(["gsm8k"], {"openai/gsm8k": "deadbeef"}, online=False, tm=bench["tm"], say=lambda m: None)
    assert pinned["datasets"]["openai/gsm8k"]["status"] == "pin_mismatch" and "deadbeef" in pinned["tasks"]["gsm8k"]
    ok = D.resolve(["gsm8k"], {"openai/gsm8k": COMMIT[:12]}, online=False, tm=bench["tm"], say=lambda m: None)
    assert ok["tasks"]["gsm8k"] is None


def test_a_dataset_with_a_loading_script_is_one_line():
    said = []

    def refuse(path, config, revision):
        raise RuntimeError("Dataset scripts are no longer supported, but found cmmlu.py")

    needs = {"cmmlu": [D.Need("cmmlu", "cmmlu_agronomy", "haonan-li/cmmlu", "agronomy", "test")]}
    st = D.prefetch(needs, {"haonan-li/cmmlu": "refs/convert/parquet"}, say=said.append, load=refuse, online=True)["haonan-li/cmmlu"]
    assert st.status == "script" and "loading script" in st.reason and "parquet" in st.reason
    st = D.prefetch(needs, {}, say=said.append, load=refuse, online=True)["haonan-li/cmmlu"]  # known: not even tried
    assert st.status == "script" and "cmmlu.py" in st.reason and all("\n" not in s for s in said)


def test_group_is_sampled_stratified_and_weighted_by_size(bench):
    p = _params(bench["tmp"], {"tasks": ["ceval-valid"], "settings": {"ceval-valid": {"n": 80, "concurrency": 2}}})
    said = []
    m = A.measure_task("ceval-valid", p, base_url=bench["url"], model="m", out_dir=bench["tmp"] / "out",
                       evidence=None, say=said.append, tm=bench["tm"])
    r = m.result
    assert r.status == "ok", r.reason
    sizes = {n.subtask: 2 + k % 8 for k, n in enumerate(bench["needs"])}
    assert m.plan.available == sum(sizes.values()) and (m.plan.n, m.plan.capped_by) == (80, "params n")
    chosen = json.loads(Path(r.samples_file).read_text())
    assert chosen == A.choose_items(sizes, 80, 0) and sum(map(len, chosen.values())) == 80
    recs = items.read_items(r.items_file)
    assert len(recs) == 80 and {(x["subtask"], x["doc_id"]) for x in recs} == {(s, i) for s, ids in chosen.items() for i in ids}
    assert all(x["doc_hash"] and x["prompt_hash"] and x["target_hash"] for x in recs)
    # the group score: subtask means weighted by subtask size, not by items drawn
    by = {}
    for x in recs:
        by.setdefault(x["subtask"], []).append(x["score"])
    want = sum(sizes[s] * sum(v) / len(v) for s, v in by.items()) / sum(sizes.values())
    assert r.score["points"] == pytest.approx(100 * want, abs=1e-3) and r.score["weighted_by"] == "subtask size"
    assert r.score["ci"][0] < r.score["points"] < r.score["ci"][1] and r.score["n"] == 80
    assert "--samples" in r.command and r.samples_file in r.command and "--tasks ceval-valid" in r.command
    assert "num_concurrent=2" in r.command
    assert any("80 of" in s for s in said) and any(" in " in s and "estimated" in s for s in said)
    en, _ = A.verdict_line(m)
    assert "80 items detect a drop of 19.7 points" in en and "capped by the task's n; 3435 needed" in en


def test_gsm8k_generation_keeps_both_filters_and_pairs_with_a_baseline(bench):
    p = _params(bench["tmp"], {"tasks": ["gsm8k"], "num_fewshot": 1})
    m = A.measure_task("gsm8k", p, base_url=bench["url"], model="m", out_dir=bench["tmp"] / "out_gsm",
                       evidence=None, say=lambda s: None, tm=bench["tm"])
    r = m.result
    assert r.status == "ok", r.reason
    assert m.plan.capped_by == "dataset" and r.samples_file is None and "--num_fewshot 1" in r.command
    recs = items.read_items(r.items_file)
    assert {x["filter"] for x in recs} == {"strict-match", "flexible-extract"} and len(recs) == 12
    assert r.score["metric"] == "exact_match" and r.score["filter"] == "strict-match"
    # the server always answers 6: item 3 (3 + 3) is the one right answer
    assert r.score["n"] == 6 and r.score["points"] == pytest.approx(100 / 6, abs=1e-3)
    # a baseline run on the same items that got them all right: the candidate loses 5 of 6 -> too few to judge
    base = [{**x, "score": 1.0} for x in recs]
    pairing = items.pair(recs, base, metric="exact_match", filter_="strict-match")
    assert pairing.n == 6 and A.judge_baseline("gsm8k", pairing, 0.05, "runs/b").status == "not_run"
    ci = stats.proportion_interval(1, 6)
    assert r.score["ci"] == pytest.approx([round(ci[0], 3), round(ci[1], 3)])


def test_a_missing_dataset_is_skipped_with_its_line_and_the_others_run(bench):
    p = _params(bench["tmp"], {"tasks": ["mmlu"]})
    m = A.measure_task("mmlu", p, base_url=bench["url"], model="m", out_dir=bench["tmp"] / "out_m", evidence=None,
                       dataset_problem="dataset cais/mmlu is not in the datasets cache X: run `python -m ...`")
    assert m.result.status == "skipped" and A.judge_task(m.result).status == "not_run"


def test_an_unknown_task_fails_in_one_line(bench):
    p = _params(bench["tmp"], {"tasks": ["ceval-valdi"]})
    m = A.measure_task("ceval-valdi", p, base_url=bench["url"], model="m", out_dir=bench["tmp"] / "out_u",
                       evidence=None, tm=bench["tm"])
    assert m.result.status == "failed" and "ceval-valdi" in m.result.reason and "accuracy.tasks" in m.result.reason
    assert A.judge_task(m.result).status == "fail" and m.plan is None


def test_run_resolution_and_prefetch_command(bench, capsys):
    from bitcpm_validation.cli import main

    p = _params(bench["tmp"], {"tasks": ["bitcpm_probe_mc", "gsm8k", "mmlu"]})
    said = []
    q = D.with_resolution(p, say=said.append)  # what the runner calls before the first chapter
    assert q.accuracy.resolved.tasks["gsm8k"] is None and "cais/mmlu" in q.accuracy.resolved.tasks["mmlu"]
    assert q.accuracy.resolved.datasets["openai/gsm8k"]["revision"] == COMMIT and len(said) == 1
    assert "bitcpm_probe_mc" not in q.accuracy.resolved.tasks  # the project's own task needs no hub data
    # the prefetch command loads every config (here: from the cache, the hub being offline) and says what it stored
    rc = main(["prefetch-datasets", p.source])
    out = capsys.readouterr().out
    assert rc == 1  # mmlu could not be fetched offline
    assert f"stored  openai/gsm8k: 1 config(s) at commit {COMMIT}" in out and "cais/mmlu" in out
    assert main(["prefetch-datasets", str(ROOT / "params/default.yaml")]) == 0
    assert "no hub dataset to fetch" in capsys.readouterr().out
