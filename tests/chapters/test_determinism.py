"""Token-level comparison tables of the determinism chapter."""
from bitcpm_validation.chapters import determinism as D


def test_compare_equal_and_divergent():
    assert D.compare([1, 2, 3], [1, 2, 3]) == {"tokens_compared": 3, "identical": 3, "first_divergence": None,
                                              "match": True, "len_a": 3, "len_b": 3, "a_at": None, "b_at": None}
    c = D.compare([1, 2, 3, 4], [1, 9, 3])
    assert c["tokens_compared"] == 4 and c["identical"] == 2 and c["first_divergence"] == 1
    assert (c["a_at"], c["b_at"]) == (2, 9) and not c["match"]
    c = D.compare([1, 2], [1, 2, 5])  # a missing token is a difference
    assert c["first_divergence"] == 2 and c["a_at"] is None and c["b_at"] == 5


def _statuses(res):
    return {c.id: c.status for c in (D.judge_repeat(res), D.judge_restart(res), D.judge_batch(res))}


def test_compare_all_groups_and_checks():
    runs = [[[1, 2, 3], [4, 5]], [[1, 2, 3], [4, 5]]]
    res = D.compare_all(["a", "b"], runs, restart=[[1, 2, 3], [4, 5]], alone=[[1, 2, 3], [4, 6]])
    assert [r["group"] for r in res["rows"]] == ["repeat"] * 2 + ["restart"] * 2 + ["batch"] * 2
    t = res["totals"]
    assert t["all"] == {"rows": 6, "rows_matching": 5, "tokens_compared": 15, "identical": 14,
                        "identical_share": 14 / 15}
    assert _statuses(res) == {"determinism_repeat": "pass", "determinism_restart": "pass", "determinism_batch": "warn"}
    det = D.judge_batch(res)
    assert det.scope == "engine" and "b at token 1 (5 ≠ 6)" in det.detail_en and "1/2 sequences" in det.detail_en
    assert "第 1 个词元" in det.detail_zh
    rows = D.table_rows(res["rows"])
    assert len(rows[0]) == len(D.table_headers()) and rows[-1][4] == "1 (5 ≠ 6)" and rows[-1][5] == "❌"
    assert rows[-1][1].en == "inside the batch vs alone" and rows[-1][1].zh == "批内与单独"


def test_repeat_difference_fails_and_disabled_is_not_run():
    res = D.compare_all(["a"], [[[1, 2]], [[1, 3]]])
    assert _statuses(res) == {"determinism_repeat": "fail", "determinism_restart": "not_run",
                              "determinism_batch": "not_run"}
    assert "determinism.restart" in D.judge_restart(res).detail_en


def test_restart_difference_fails():
    res = D.compare_all(["a"], [[[1, 2]], [[1, 2]]], restart=[[1, 2, 7]])
    assert _statuses(res)["determinism_restart"] == "fail"


def test_lengths_are_a_fact():
    full = D.lengths({"run 1": [[1, 2], [3, 4]], "restart": None}, 2)
    assert (full["full"], full["total"], full["text"], full["first_short"]) == (2, 2, "2/2 × 2", None)
    short = D.lengths({"run 1": [[1, 2], [3]]}, 2)
    assert short["full"] == 1 and short["first_short"] == {"label": "run 1", "index": 1, "tokens": 1}
    assert D.lengths({"run 1": None}, 2)["total"] == 0


def test_env_rows_record_platform_vars(monkeypatch):
    monkeypatch.setenv("LCCL_DETERMINISTIC", "1")
    rows = {r["var"]: r for r in D.env_rows("npu")}
    assert rows["LCCL_DETERMINISTIC"]["actual"] == "1" and rows["HCCL_DETERMINISTIC"]["recommended"] == "true"
    assert "VLLM_BATCH_INVARIANT" in rows
    # the table's cells: the project's words in the reader's language, values as code in the Chinese file
    cells = D.env_cells(rows["VLLM_BATCH_INVARIANT"])
    assert cells[1].zh == "1（试验性，可选）" and cells[1].en == "1 (beta, optional)"
    assert D.env_cells(rows["HCCL_DETERMINISTIC"])[1] == ("`true`", "true")
    monkeypatch.delenv("VLLM_BATCH_INVARIANT", raising=False)
    assert D.env_cells(D.env_rows("cpu")[-1])[2] == ("（未设置）", "(unset)")


def test_select_prompts_original_first():
    from bitcpm_validation.params import Prompt, PromptSet

    ps = PromptSet(prompts=[Prompt(id="new", lang="en", kind="k", prompt="x"),
                            Prompt(id="zh", lang="zh", kind="k", prompt="好", from_original=True),
                            Prompt(id="o1", lang="en", kind="k", prompt="y", from_original=True)])
    assert [q.id for q in D.select_prompts(ps, 2)] == ["o1", "zh"]
    assert [q.id for q in D.select_prompts(ps, 5)] == ["o1", "zh", "new"]
