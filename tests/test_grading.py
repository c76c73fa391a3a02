"""Grading an output against a Prompt.expect: pass / warn with bilingual reasons."""
from bitcpm_validation.chapters.inference import grade
from bitcpm_validation.params import Expectation


def test_paris_passes_case_insensitive():
    g = grade(" paris is the capital.", Expectation(contains_any=["Paris"], note_en="answers Paris", note_zh="回答 Paris"))
    assert g.status == "pass" and g.passed
    assert "contains 'Paris'" in g.detail_en and "包含" in g.detail_zh
    assert g.detail_en.startswith("expected: answers Paris")


def test_wrong_expectation_warns_with_reason():
    g = grade("Paris", Expectation(contains_any=["Berlin"]))
    assert g.status == "warn"
    assert g.failed == ["contains_any"]
    assert "none of 'Berlin' found" in g.detail_en and "未出现" in g.detail_zh


def test_all_conditions_checked():
    e = Expectation(contains_all=["a", "z"], not_contains=["bad"], min_chars=5, min_cjk_share=0.5)
    g = grade("a bad", e)
    assert g.status == "warn"
    assert set(g.failed) == {"contains_all", "not_contains", "min_cjk_share"}
    assert grade("北京有故宫和长城 a b", Expectation(contains_all=["a", "b"], min_cjk_share=0.5)).passed


def test_empty_output_fails_min_chars():
    g = grade("", Expectation())
    assert g.status == "warn" and g.failed == ["min_chars"]
    assert g.as_dict()["detail_zh"]
