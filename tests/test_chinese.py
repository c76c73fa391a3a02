"""Chinese metrics and the documented-threshold verdict."""
from bitcpm_validation.chapters import chinese as C
from bitcpm_validation.params import ChineseParams, Expectation, Prompt, PromptSet

CP = ChineseParams()


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
    assert C.verdict(C.metrics(""), CP).status == "warn"
    assert [t["metric"] for t in C.thresholds(CP)] == ["cjk_share", "distinct_2", "repeat_share"]


def test_short_repeats_are_not_counted():
    m = C.metrics("我是学生，我是老师。")  # "我是" repeats: ordinary language
    assert m.repeat_share == 0.0


def test_select_prompts_adds_chat_variants():
    ps = PromptSet(prompts=[
        Prompt(id="en1", lang="en", kind="k", prompt="Hi"),
        Prompt(id="tr", lang="en", kind="translation", prompt="Translate", expect=Expectation(min_cjk_share=0.2)),
        Prompt(id="zh1", lang="zh", kind="chat", prompt="你好", from_original=True),
        Prompt(id="zh2", lang="zh", kind="chat", prompt="再见"),
    ])
    sel = C.select_prompts(ps)
    assert [q.id for q in sel] == ["tr", "zh1", "zh2", "zh1_chat"]
    assert sel[-1].chat and not sel[1].chat
