"""Chapter 03 (chapters/inference.py): its display helpers (the trained-on reason said once, each output's result
beside it), and its probe grader on a random-weight MiniCPM directory (model.writer), which must yield ❌ on the model
scope. That directory's real generated text (greedy, 64 tokens, the project's fp32 reference model: the same text
vLLM produces for these weights, see models/README.md) is graded with the default prompts.yaml criteria; the same
outputs (one fixture, computed once per weight scale) also feed the Chinese chapter's grader, whose test stays beside
it here rather than compute them a second time in test_chinese.py."""
import pytest

from bitcpm_validation.chapters import chinese as C
from bitcpm_validation.chapters import inference as I
from bitcpm_validation.engine.prompting import with_chat
from bitcpm_validation.model.training_corpus import contamination
from bitcpm_validation.params import ChineseParams, GradingCriteria, Prompt, load_prompts

G = GradingCriteria()
SEEN = Prompt(id="seen", lang="en", kind="knowledge", prompt="What is the capital of France?")
NEW = Prompt(id="new", lang="zh", kind="chat", prompt="你好", chat=True)


def _trained(tmp_path):
    (tmp_path / "training_corpus.json").write_text('{"files": ["c.txt"]}')
    (tmp_path / "c.txt").write_text("What is the capital of France?\nParis.")
    return contamination(tmp_path, {q.id: q.prompt for q in (SEEN, NEW)})


def test_the_reason_is_said_once_and_each_row_shows_its_would_be_grade(tmp_path):
    trained = _trained(tmp_path)
    zh, en = I.not_judged_note(trained, ["seen", "new"])
    assert "1 of 2 items" in en and "seen is not judged (not run)" in en and "recall, not ability" in en
    assert "其中 seen 不评判" in zh and "new" not in zh and "记忆" in zh
    row = I.judge_probe(SEEN, "The capital of France is Paris.", G, trained)
    assert row.status == "not_run" and "would grade ✅" in row.detail_en  # the row keeps its full reason
    zh_cell, en_cell = I.result_cell(row, "pass", "中文回答", "Chinese")
    assert (zh_cell, en_cell) == ("—（本应为 ✅）", "— (would be ✅)")  # ✅ has one meaning: no label
    assert I.result_cell(row, "warn", "重复严重", "repetition severe") == ("—（本应为 ⚠️ 重复严重）",
                                                                        "— (would be ⚠️ repetition severe)")
    judged = I.judge_probe(NEW, "qzx vbnq kjwp zzrt xqv", G, trained)  # not trained on: graded (noise: ❌), its reason shown
    assert judged.status == "fail"
    zh_cell, en_cell = I.result_cell(judged)
    assert en_cell == "❌ " + judged.detail_en and zh_cell == "❌ " + judged.detail_zh


def test_every_probe_trained_on_and_no_corpus(tmp_path):
    trained = _trained(tmp_path)
    assert "None of them is judged (not run)" in I.not_judged_note(trained, ["seen"])[1]
    assert "这些项全部不评判" in I.not_judged_note(trained, ["seen"])[0]
    none = contamination(tmp_path / "absent", {"seen": SEEN.prompt})
    assert I.not_judged_note(none, ["seen"]) == (none.summary_zh(), none.summary_en())


def test_probe_cell_marks_names_as_data():
    zh, en = I.probe_cell(NEW)
    assert en == '<span class="bv-verbatim">new (zh, chat)</span>, chat template' and zh.endswith("，对话模板")
    evil = Prompt(id="<b>x", lang="en", kind="k", prompt="p")
    assert "<b>" not in I.probe_cell(evil)[1] and I.probe_cell(evil)[1].endswith("</span>")


# -- a random-weight directory's real outputs fail the probe and Chinese graders ----------------------------------
PROMPTS = load_prompts("params/prompts.yaml")


@pytest.fixture(scope="module", params=[0.05, 0.5], ids=["std0.05", "std0.5"])
def outputs(request, tmp_path_factory):
    torch = pytest.importorskip("torch")  # torch comes with the engine stack: without it only these two tests skip
    from bitcpm_validation.model.reference import ReferenceModel
    from bitcpm_validation.model.tokenizer import FaithfulTokenizer
    from bitcpm_validation.model.writer import write_tiny_random_model

    torch.set_num_threads(1)
    d = write_tiny_random_model(tmp_path_factory.mktemp("random") / "m", std=request.param, seed=1)
    ref, tok = ReferenceModel.from_pretrained(d), FaithfulTokenizer(d)
    probes = PROMPTS.prompts + [with_chat(q) for q in PROMPTS.prompts if q.lang == "zh"]
    out = {}
    for q in probes:
        ids = tok.encode_chat([{"role": "user", "content": q.prompt}]) if q.chat else tok.encode(q.prompt)
        new, _ = ref.greedy(ids, max_new_tokens=64)
        out[q.id] = (q, tok.decode(new))
    return d, out


def test_every_probe_fails(outputs):
    d, out = outputs
    trained = I.probe_contamination(d, PROMPTS.prompts)
    assert not trained.declared  # a random directory declares no corpus: everything is judged
    for q in PROMPTS.prompts:
        row = I.judge_probe(q, out[q.id][1], PROMPTS.grading, trained)
        assert row.status == "fail", (q.id, out[q.id][1], row.detail_en)


def test_every_chinese_probe_fails(outputs):
    _, out = outputs
    for q in C.select_prompts(PROMPTS):
        row = C.judge_chinese(q, out[q.id][1], ChineseParams(), PROMPTS.grading)
        assert row.status == "fail", (q.id, out[q.id][1], row.detail_en)


def test_probe_name_in_chinese_shows_ids_as_code():
    """Issue 20.5: a probe's id, language and kind are data: code in the Chinese name (no English words)."""
    p = Prompt(id="capital_france", lang="en", kind="knowledge", prompt="The capital of France is")
    row = I.judge_probe(p, "Paris.", GradingCriteria())
    assert row.name_zh == "探针 `capital_france`（`en`，`knowledge`）" and row.name_en == "Probe capital_france (en, knowledge)"
