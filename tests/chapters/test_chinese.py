"""Chinese metrics and the documented-threshold verdict. The Chinese grader on a random-weight directory's real
outputs shares chapter 03's fixture and is tested there: tests/chapters/test_inference.py."""
import random

from bitcpm_validation.chapters import chinese as C
from bitcpm_validation.model.training_corpus import contamination
from bitcpm_validation.report import grading
from bitcpm_validation.params import ChineseParams, Expectation, GradingCriteria, Prompt, PromptSet

CP = ChineseParams()
G = GradingCriteria()
Q = Prompt(id="zh1", lang="zh", kind="chat", prompt="你好")


def test_is_cjk_is_one_definition_including_extension_b():
    """One is_cjk for the Chinese metrics and the language grading: extension B (U+20000, 𠀀) and later
    extensions are ideographs for both; punctuation, kana and an empty edge are not."""
    assert C.grading.is_cjk is grading.is_cjk
    for ch in ("中", "\u3400", "\uf900", "\U00020000", "\U0002a6d6", "\U00030000"):
        assert grading.is_cjk(ch), hex(ord(ch))
    for ch in ("，", "。", "あ", "A", "1", ""):
        assert not grading.is_cjk(ch), repr(ch)
    assert C.cjk_share("\U00020000\U00020001ab") == 0.5
    assert grading.has_cjk("x\U00020000") and grading.word_count("\U00020000\U00020001 word") == 3


def test_cjk_share_ignores_punctuation_and_spaces():
    assert C.cjk_share("你好，世界！") == 1.0
    assert C.cjk_share("Hello 你好") == 2 / 7
    assert C.cjk_share("") == 0.0 and C.cjk_share("。，") == 0.0


def test_distinct_n():
    assert C.distinct_n("abab", 2) == 2 / 3
    assert C.distinct_n("北京 北京", 1) == 0.5
    assert C.distinct_n("a", 2) is None


def test_longest_repeated_span_non_overlapping():
    assert C.longest_repeated_span("abcXabc") == "abc"
    assert C.longest_repeated_span("aaaa") == "aa"  # not the overlapping "aaa"
    assert C.longest_repeated_span("abc") == ""
    assert C.count_non_overlapping("故宫故宫故宫", "故宫") == 3


def test_verdicts():
    good = C.metrics("北京有很多好玩的景点，比如故宫、颐和园、长城和天坛。")
    assert C.verdict(good, CP).status == "pass"
    loop = C.metrics("故宫，故宫，故宫，故宫，故宫，故宫，故宫，故宫。")
    v = C.verdict(loop, CP)
    assert v.status == "warn" and v.label_en == "repetition severe" and "重复" in v.label_zh
    assert loop.repeat_share > CP.max_repeat_share or loop.distinct_2 < CP.min_distinct_2
    en = C.verdict(C.metrics("Hello, how are you? I am fine."), CP)
    assert en.status == "warn" and en.label_en == "not Chinese" and "CJK share" in en.detail_en
    assert C.verdict(C.metrics(""), CP).status == "fail"
    assert [t["metric"] for t in C.thresholds(CP)] == ["cjk_share", "distinct_2", "repeat_share"]


def test_noise_fails_and_chinese_passes():
    good = "北京有很多好玩的景点，比如故宫、颐和园、长城和天坛。故宫是明清两代的皇宫。"
    assert C.judge_chinese(Q, good, CP, G).status == "pass"
    echo = C.judge_chinese(Q, "请介绍一下你自己" * 40, CP, G)  # a random-weight model echoing the prompt
    assert (echo.id, echo.status, echo.scope) == ("zh:zh1", "fail", "model") and "compression ratio" in echo.detail_en
    chars = list(good)
    random.Random(0).shuffle(chars)
    shuffled = C.judge_chinese(Q, "".join(chars), CP, G)
    assert shuffled.status == "fail" and "recognised words" in shuffled.detail_en and "不是语言" in shuffled.detail_zh
    salad = "Ar简单的问题red燕子什么是学的的古hiof山河兴ich atta four"  # random-weight model, std 0.5
    assert C.judge_chinese(Q, salad, CP, G).status == "fail"
    # the document's "repetition severe" answers (described, not quoted there): ⚠️, not ❌
    assert C.judge_chinese(Q, "北京有很多好玩的景点，比如故宫、颐和园、" + "故宫、颐和园、" * 12, CP, G).status == "warn"
    assert C.judge_chinese(Q, "Hello, how are you? I am fine, thank you.", CP, G).status == "warn"


def test_trained_on_prompt_is_not_run(tmp_path):
    (tmp_path / "training_corpus.json").write_text('{"files": ["c.txt"]}')
    (tmp_path / "c.txt").write_text("你好\n好的")
    ps = [Q, Prompt(id="zh1_chat", lang="zh", kind="chat", prompt="你好", chat=True)]
    trained = contamination(tmp_path, {q.id: q.prompt for q in ps})
    for q in ps:
        row = C.judge_chinese(q, "北京有很多好玩的景点，比如故宫。", CP, G, trained)
        assert row.status == "not_run" and "trained on this prompt" in row.detail_en and "✅" in row.detail_en
    assert C.judge_chinese(Q, "北京有很多好玩的景点，比如故宫。", CP, G, contamination(tmp_path / "none", {})).status == "pass"


def test_short_repeats_are_not_counted():
    m = C.metrics("我是学生，我是老师。")  # "我是" repeats: ordinary language
    assert m.repeat_share == 0.0


def test_select_prompts_adds_chat_variants():
    ps = PromptSet(prompts=[
        Prompt(id="en1", lang="en", kind="k", prompt="Hi"),
        Prompt(id="tr", lang="en", kind="translation", prompt="Translate", expect=Expectation(language="zh")),
        Prompt(id="zh1", lang="zh", kind="chat", prompt="你好", from_original=True),
        Prompt(id="zh2", lang="zh", kind="chat", prompt="再见"),
    ])
    sel = C.select_prompts(ps)
    assert [q.id for q in sel] == ["tr", "zh1", "zh2", "zh1_chat"]
    assert sel[-1].chat and not sel[1].chat


def test_same_as_inference_only_on_equal_token_ids_and_text():
    """Chapter 05 links an output to chapter 03 only when chapter 03 holds the same probe fed the same prompt token
    ids that gave the same output token ids and text: a different output, prompt, id or missing ids is not the same."""
    mine = {"id": "zh1", "prompt_token_ids": [1, 2, 3], "token_ids": [7, 8], "text": "你好"}
    assert C.same_as_inference(mine, [{"id": "en1"}, dict(mine)])
    assert not C.same_as_inference(mine, [dict(mine, token_ids=[7, 9])])  # 03 generated something else
    assert not C.same_as_inference(mine, [dict(mine, prompt_token_ids=[1, 2])])  # another prompt (the chat form)
    assert not C.same_as_inference(mine, [dict(mine, id="zh1_chat")])
    assert not C.same_as_inference(mine, [dict(mine, text="你")])
    assert not C.same_as_inference(mine, [{"id": "zh1", "text": "你好"}])  # 03's results without token ids
    assert not C.same_as_inference(dict(mine, prompt_token_ids=None), [mine]) and not C.same_as_inference(mine, [])


def test_text_verdict_is_the_rows_verdict():
    good = "北京有很多好玩的景点，比如故宫、颐和园、长城和天坛。"
    loop = "北京有很多好玩的景点，比如故宫、颐和园、" + "故宫、颐和园、" * 12
    assert C.text_verdict(good, CP, G).status == C.judge_chinese(Q, good, CP, G).status == "pass"
    v = C.text_verdict(loop, CP, G)
    assert (v.status, v.label_en) == ("warn", "repetition severe") and C.judge_chinese(Q, loop, CP, G).status == "warn"
