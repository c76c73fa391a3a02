"""Contamination: which probe prompts and task items occur in the training corpus a model directory declares."""
import json
from pathlib import Path

import pytest

from bitcpm_validation.chapters import inference as I
from bitcpm_validation.model.training_corpus import CorpusError, contamination, declared_corpus
from bitcpm_validation.params import load_prompts

ROOT = Path(__file__).resolve().parents[2]
PROMPTS = load_prompts(ROOT / "params/prompts.yaml")


def _task_items() -> dict[str, str]:
    lines = (ROOT / "src/bitcpm_validation/tasks/bitcpm_probe_mc.jsonl").read_text(encoding="utf-8").splitlines()
    return {d["id"]: d["question"] for d in map(json.loads, filter(None, lines))}


def test_stand_in_declares_its_corpus_and_was_trained_on_every_probe():
    c = I.probe_contamination(ROOT / "models/stand-in", PROMPTS.prompts)
    assert c.declared and c.hits == {q.id for q in PROMPTS.prompts} and c.checked == 8
    assert c.summary_en() == "8 of 8 items occur verbatim in the declared training corpus"
    t = contamination(ROOT / "models/stand-in", _task_items())
    assert len(t.hits) == 21 and t.checked == 32  # the accuracy chapter's bitcpm_probe_mc questions
    assert "en00" in t  # "What is the capital of France?"


def test_real_model_directory_declares_none():
    c = I.probe_contamination(ROOT / "models/bitcpm4-0.5b", PROMPTS.prompts)
    assert not c.declared and not c.hits and "declares no training corpus" in c.summary_en()
    assert "未声明训练语料" in c.summary_zh()


def test_files_corpus_matches_verbatim_with_whitespace_collapsed(tmp_path):
    (tmp_path / "training_corpus.json").write_text(json.dumps({"files": ["a.jsonl", "b.txt"]}))
    (tmp_path / "a.jsonl").write_text(json.dumps({"p": "What is  2+2?", "a": " 4"}) + "\n")
    (tmp_path / "b.txt").write_text("Paris is\nthe capital.")
    c = contamination(tmp_path, {"m": "What is 2+2?", "p": "Paris is the capital", "x": "What is 3+3?", "e": ""})
    assert c.hits == {"m", "p"}
    assert declared_corpus(tmp_path).files == [tmp_path / "a.jsonl", tmp_path / "b.txt"]


@pytest.mark.parametrize("decl, match", [
    ("{not json", "not valid JSON"),
    ('{"description": "x"}', 'give "module"'),
    ('{"files": ["missing.txt"]}', "corpus file missing.txt not found"),
    ('{"module": "no_such_module_xyz"}', "cannot be imported"),
])
def test_broken_declarations_are_one_line_errors(tmp_path, decl, match):
    (tmp_path / "training_corpus.json").write_text(decl)
    with pytest.raises(CorpusError, match=match):
        contamination(tmp_path, {"a": "b"})


def test_contaminated_probe_is_not_run_with_the_reason():
    c = I.probe_contamination(ROOT / "models/stand-in", PROMPTS.prompts)
    paris = next(q for q in PROMPTS.prompts if q.id == "capital_france")
    row = I.judge_probe(paris, "The capital of France is Paris.", PROMPTS.grading, c)
    assert row.status == "not_run" and row.scope == "model"
    assert "the model was trained on this prompt" in row.detail_en and "would grade ✅" in row.detail_en
    assert "训练时见过这个提示" in row.detail_zh
    # without a declared corpus the same output is judged
    none = I.probe_contamination(ROOT / "models/bitcpm4-0.5b", PROMPTS.prompts)
    assert I.judge_probe(paris, "The capital of France is Paris.", PROMPTS.grading, none).status == "pass"


def test_stand_in_declaration_is_what_the_training_script_writes(tmp_path):
    from bitcpm_validation.model.training_corpus import STAND_IN_DESCRIPTION, declare

    p = declare(tmp_path, STAND_IN_DESCRIPTION, module="bitcpm_validation.model.corpus")
    assert p.read_bytes() == (ROOT / "models/stand-in/training_corpus.json").read_bytes()
    with pytest.raises(CorpusError, match="exactly one"):
        declare(tmp_path, "x")


def test_grader_modules_are_cheap_to_import():
    import subprocess
    import sys

    code = ("import sys, bitcpm_validation.chapters.inference, bitcpm_validation.chapters.chinese; "
            "heavy = [m for m in ('lingua', 'wordfreq', 'jieba', 'torch', 'vllm') if m in sys.modules]; "
            "assert not heavy, heavy")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)
