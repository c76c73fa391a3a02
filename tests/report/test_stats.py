"""The accuracy statistics (report.stats, report.items) against values computed independently here, and the one
rule for which percentiles a sample size supports (issue 20.4)."""
import math

import pytest
from scipy.stats import binomtest, norm

from bitcpm_validation.chapters import accuracy as A
from bitcpm_validation.report import items, stats


def test_sample_size_matches_the_hand_formula_and_the_known_case():
    # theta 3 points, alpha 0.05, beta 0.2, p = 0.5 (sigma 50 points): n = 2 sigma^2 (z_0.95 + z_0.8)^2 / theta^2
    by_hand = 2 * 50.0 ** 2 * (norm.ppf(0.95) + norm.ppf(0.8)) ** 2 / 3.0 ** 2
    assert 3400 < by_hand < 3450  # the issue: "theta = 3 points needs n ≈ 3,400"
    assert stats.samples_needed(3.0, 50.0, 0.05, 0.2) == math.ceil(by_hand) == 3435
    assert stats.sigma_of(50.0) == 50.0 and stats.sigma_of(20.0) == pytest.approx(40.0)


def test_detectable_theta_where_the_dataset_caps_n():
    # C-Eval val has 1,346 items, GSM8K test 1,319: about 4.8 points (the figure)
    for n in (1346, 1319):
        t = stats.detectable_theta(n, 50.0, 0.05, 0.2)
        assert t == pytest.approx((norm.ppf(0.8) - norm.ppf(0.05)) * math.sqrt(2 * 2500 / n))
        assert 4.7 < t < 4.9
    # 11 items (the default CPU profile's local task): only gross breakage, about 53 points
    assert stats.detectable_theta(11, 50.0) == pytest.approx(53.0, abs=0.1)
    # inverse of each other
    assert stats.detectable_theta(stats.samples_needed(2.0, 40.0), 40.0) <= 2.0


def test_threshold_is_tensorrt_llms():
    # TensorRT-LLM compute_threshold: ref + norm.ppf(alpha) * sqrt(2 sigma^2 / n)
    assert stats.threshold(50.0, 4096, 50.0, 0.05) == pytest.approx(50.0 + norm.ppf(0.05) * math.sqrt(5000 / 4096))
    assert stats.threshold(10.0, 100, 5.0, 0.05, higher_is_better=False) > 10.0


def test_intervals():
    lo, hi = stats.proportion_interval(7, 11)
    ci = binomtest(7, 11).proportion_ci(method="wilson")
    assert (lo, hi) == pytest.approx((100 * ci.low, 100 * ci.high))
    strata = [stats.Stratum("a", 300, 30, 0.6, 0.24), stats.Stratum("b", 100, 10, 0.3, 0.21)]
    score, se = stats.stratified(strata)
    assert score == pytest.approx(100 * (0.75 * 0.6 + 0.25 * 0.3))
    assert se == pytest.approx(100 * math.sqrt(0.75 ** 2 * 0.24 / 30 * 0.9 + 0.25 ** 2 * 0.21 / 10 * 0.9))


def test_allocation_is_proportional_and_exact():
    sizes = {"a": 500, "b": 300, "c": 150, "d": 50}
    assert stats.allocate(sizes, 100) == {"a": 50, "b": 30, "c": 15, "d": 5}
    got = stats.allocate({"a": 7, "b": 3, "c": 1}, 5)
    assert sum(got.values()) == 5 and all(got[k] <= s for k, s in {"a": 7, "b": 3, "c": 1}.items()) and got["c"] == 1
    assert stats.allocate(sizes, 5000) == sizes
    chosen = A.choose_items(sizes, 100, seed=0)
    assert {k: len(v) for k, v in chosen.items()} == stats.allocate(sizes, 100)
    assert chosen == A.choose_items(sizes, 100, seed=0) != A.choose_items(sizes, 100, seed=1)
    assert all(v == sorted(set(v)) and max(v) < sizes[k] for k, v in chosen.items())


def test_mcnemar_equals_scipys_binomial_test():
    cand = [True] * 60 + [False] * 25 + [True] * 10 + [False] * 5
    base = [True] * 60 + [True] * 25 + [False] * 10 + [False] * 5
    r = stats.mcnemar(cand, base)
    assert (r.candidate_only, r.baseline_only, r.n) == (10, 25, 100)
    assert r.p_worse == pytest.approx(binomtest(25, 35, 0.5, alternative="greater").pvalue)
    assert r.p_two_sided == pytest.approx(binomtest(25, 35, 0.5).pvalue)
    assert r.diff_points == pytest.approx(-15.0) and r.ci[0] < -15.0 < r.ci[1] < 0
    same = stats.mcnemar(cand, cand)
    assert same.p_worse == 1.0 and same.diff_points == 0.0


def _records(scores, **over):
    return [{"task": "t", "subtask": "s", "doc_id": i, "filter": "none", "doc_hash": f"d{i}", "prompt_hash": f"p{i}",
             "target_hash": f"t{i}", "metric": "acc", "score": float(x), **over} for i, x in enumerate(scores)]


def test_flipped_baseline_fails_and_an_equal_one_passes():
    base = _records([1] * 150 + [0] * 50)
    flipped = _records([0] * 30 + [1] * 120 + [0] * 50)  # 30 items the baseline had right, now wrong
    assert A.judge_baseline("t", items.pair(flipped, base), 0.05, "runs/b").status == "fail"
    assert A.judge_baseline("t", items.pair(base, base), 0.05, "runs/b").status == "pass"
    few = items.pair(base[:5], base)
    assert A.judge_baseline("t", few, 0.05, "runs/b").status == "not_run"


def test_pairs_with_different_questions_are_refused():
    base = _records([1] * 20)
    cand = _records([1] * 20)
    cand[3] = {**cand[3], "prompt_hash": "other template"}
    cand[4] = {**cand[4], "doc_hash": "other data"}
    p = items.pair(cand + _records([1], subtask="extra"), base)
    assert p.n == 18 and [(r[1], r[3]) for r in p.refused] == [(3, "prompt_hash"), (4, "doc_hash")]
    assert p.only_candidate == 1 and p.only_baseline == 0


def test_plan_caps_and_says_what_it_can_detect():
    s = {"theta": 3.0, "alpha": 0.05, "beta": 0.2, "sigma": None, "n": None, "limit": None, "time_limit_s": None}
    full = A.plan_task("mmlu", s, 14042)
    assert (full.n, full.capped_by, full.sigma_from) == (3435, None, "p = 0.5 (largest)") and full.threshold is None
    ceval = A.plan_task("ceval-valid", s, 1346)
    assert ceval.capped_by == "dataset" and ceval.detectable_theta == pytest.approx(4.79, abs=0.01)
    timed = A.plan_task("gsm8k", {**s, "time_limit_s": 100.0}, 1319, seconds_per_item=0.5)
    assert (timed.n, timed.capped_by) == (200, "time")
    ref = A.plan_task("mmlu", s, 14042, reference=30.0)
    assert ref.sigma == pytest.approx(100 * math.sqrt(0.21)) and ref.threshold < 30.0


def test_reference_registry_matching_and_threshold():
    entry = {"model": "openbmb/BitCPM4-0.5B", "revision": None, "task": "mmlu", "dtype": "bfloat16",
             "quantization": None, "harness": "lm-eval 0.4.13", "num_fewshot": None, "chat_template": False,
             "value": 50.0, "n": 3435, "measured_on": "x"}
    key = {k: entry[k] for k in A.MATCH_KEYS}
    assert A.find_reference([entry], {**key, "revision": "abc"}) is entry  # no revision: any revision
    assert A.find_reference([entry], {**key, "dtype": "float16"}) is None
    plan = A.plan_task("mmlu", {"theta": 3.0, "alpha": 0.05, "beta": 0.2}, 14042, reference=50.0)
    thr = stats.threshold(50.0, 3435, 50.0, 0.05)
    assert A.judge_reference("mmlu", {"points": thr + 0.01, "n": 3435}, entry, plan).status == "pass"
    assert A.judge_reference("mmlu", {"points": thr - 0.01, "n": 3435}, entry, plan).status == "fail"
    none = A.judge_reference("mmlu", {"points": 50.0, "n": 3435}, None, plan)
    assert none.status == "not_run" and none.detail_en == "no reference: threshold not computed"
    assert A.load_references("params/accuracy-references.yaml") == []  # measured values only: none yet


def test_task_settings_take_precedence_and_bad_ones_are_one_line(tmp_path):
    from bitcpm_validation.chapters import provenance
    from bitcpm_validation.params import AccuracyParams, DatasetResolution, ParamsError, load_params

    ap = AccuracyParams(tasks=["gsm8k", "mmlu"], settings={"gsm8k": {"num_fewshot": 3, "concurrency": 16, "theta": 5}})
    assert ap.for_task("mmlu")["num_fewshot"] is None  # the task's own default (lm-eval: gsm8k 5-shot)
    assert (ap.for_task("gsm8k")["num_fewshot"], ap.for_task("gsm8k")["concurrency"], ap.for_task("gsm8k")["theta"]) == (3, 16, 5)
    glob = AccuracyParams(tasks=["gsm8k"], num_fewshot=0)
    assert glob.for_task("gsm8k")["num_fewshot"] == 0  # a global number overrides the task's default
    y = tmp_path / "p.yaml"
    y.write_text("profile: t\nmodel: {path: models/stand-in}\naccuracy: {tasks: [mmlu], settings: {gsm8k: {theta: 2}}}\n")
    with pytest.raises(ParamsError) as e:
        load_params(y)
    assert "gsm8k" in str(e.value) and "\n" not in str(e.value)
    y.write_text("profile: t\nmodel: {path: models/stand-in}\naccuracy: {tasks: [mmlu], alpha: 0.7}\n")
    with pytest.raises(ParamsError):
        load_params(y)
    y.write_text("profile: t\nmodel: {path: models/stand-in}\naccuracy: {tasks: [mmlu]}\n")
    p = load_params(y)
    assert provenance.dataset_sources(p) == {}
    res = DatasetResolution(datasets={"cais/mmlu": {"revision": "abc", "pinned": None, "configs": 57, "status": "ok"}},
                            tasks={"mmlu": None})
    p2 = p.model_copy(update={"accuracy": p.accuracy.model_copy(update={"resolved": res})})
    assert provenance.dataset_sources(p2) == {"cais/mmlu": {"revision": "abc", "pinned": None, "configs": 57, "status": "ok"}}
    # the run's params.yaml carries the resolution (like model.source)
    assert "cais/mmlu" in p2.to_yaml() and load_params  # noqa


def test_two_runs_pair_item_by_item_in_compare(tmp_path):
    from bitcpm_validation.report import compare

    a, b = tmp_path / "a", tmp_path / "b"
    base = _records([1] * 150 + [0] * 50)
    items.write_items(items.items_file(a, "mmlu"), base)
    items.write_items(items.items_file(b, "mmlu"), _records([0] * 30 + [1] * 120 + [0] * 50))
    items.write_items(items.items_file(a, "gsm8k"), base)  # only in one run: not paired
    rows = items.paired_runs(a, b)
    assert [r["task"] for r in rows] == ["mmlu"]
    r = rows[0]
    assert (r["n"], r["b_won"], r["b_lost"], r["diff_points"]) == (200, 0, 30, -15.0)
    assert r["p_two_sided"] == pytest.approx(binomtest(30, 30, 0.5).pvalue)
    c = {"runs": [{"name": n, "path": str(d), "env": {}, "bundle_error": None, "model": None, "profile": None}
                  for n, d in (("a", a), ("b", b))],
         "pairs": [{"a": "a", "b": "b", "error": "no bundle", "accuracy": rows}], "engine_vs_own_reference": {},
         "metrics": []}
    for lang in ("en", "zh"):
        md = compare.to_markdown(c, lang)
        assert "15.00" in md and "0 / 30" in md and "| mmlu | 200 | 0 |" in md


def test_a_bad_registry_is_one_line(tmp_path):
    bad = tmp_path / "r.yaml"
    bad.write_text("references:\n  - {model: m, task: mmlu, value: high}\n")
    with pytest.raises(ValueError) as e:
        A.load_references(bad)
    assert "entry 1" in str(e.value) and "n" in str(e.value) and "\n" not in str(e.value)
    bad.write_text("references: [\n")
    with pytest.raises(ValueError):
        A.load_references(bad)
    assert A.load_references(tmp_path / "absent.yaml") == []


def test_graded_scores_get_a_normal_interval():
    recs = _records([0.5, 0.25, 1.0, 0.75] * 5)
    s = A.score_from_items(recs, {"s": 20})
    mean = sum(r["score"] for r in recs) / 20
    assert s["points"] == pytest.approx(100 * mean, abs=1e-3)
    assert s["ci"][1] - s["points"] == pytest.approx(s["points"] - s["ci"][0], abs=1e-2)


# -- which percentiles a sample size supports -------------------------------------------------------------------
def test_p99_needs_a_hundred_samples_else_p50_and_max():
    assert stats.supported_percentiles(100) == ("p50", "p99")
    assert stats.supported_percentiles(5000) == ("p50", "p99")
    assert stats.supported_percentiles(99) == ("p50", "max")
    assert stats.supported_percentiles(1) == ("p50", "max")


def test_no_sample_supports_no_percentile():
    assert stats.supported_percentiles(0) == ()
    assert stats.supported_percentiles(None) == ()
