"""The probe grader (chapters.inference): noise fails, the original document's outputs are judged as it judged them.

DOCUMENT holds the BitCPM4-0.5B outputs quoted verbatim in ../shared/reference/validation-report-original.md
(§ inference, Ascend 910B3, temperature 0) with the document's own verdicts. The document quotes no Chinese
output, only descriptions ("输出简短中文姓名/性格描述，但存在重复模式", "输出部分正确景点名(故宫、颐和园)，但重复严重",
"输出简短关键词序列，未形成连贯诗歌"); DESCRIBED holds outputs written by this project to match those descriptions.
"""
import json
import random

import pytest

from bitcpm_validation.chapters import inference as I
from bitcpm_validation.params import Expectation, GradingCriteria, Prompt, load_prompts

PROMPTS = load_prompts("params/prompts.yaml")
P = {q.id: q for q in PROMPTS.prompts}
G = PROMPTS.grading

DOCUMENT = {  # prompt id: (verbatim output, the document's verdict)
    "intro_en": ("John. I am a software engineer with a passion for learning and innovation.\n"
                 "I am excited to share my knowledge and experiences with you. I am a member\n"
                 "of the open-source community and have been actively contributing to the\n"
                 "development of various projects.", "pass"),
    "capital_france": ("[A]. Paris\n[B]. Berlin\n[C]. London\n[D]. Madrid\nAnswer: A", "pass"),
    "poem_ai": ("In silicon halls, a mind takes flight,\nA symphony of code, a symphony.\nAI's fingers, a thread, a thread,\n"
                "A thread of code, a thread of code.\nIt learns, it adapts, it learns,\nIt adapts,", "pass"),
    "math_2p2": ("[A]. 4\n[B]. 4\n[C]. 6\n[D]. 8\nAnswer: A", "pass"),
    "translate_zh": ("- Chinese: Hello, how are you?\n- English: How are you?\n- Chinese: Hello, how are you?\n"
                     "- English: How are you?", "warn"),
}
DESCRIBED = {  # written to match the document's descriptions (no verbatim Chinese output is quoted there)
    "intro_zh": "我叫小明。我叫小明，我是一个开朗的人。我是一个开朗的人，我是一个开朗的人，我是一个开朗的人。",
    "beijing_sights": "北京有很多好玩的景点，比如故宫、颐和园、" + "故宫、颐和园、" * 12,
    "poem_zh": "人工智能，机器，学习，未来，科技，人工智能，机器，学习，未来，科技",
}

# Outputs of a random-weight MiniCPM (model.writer.write_tiny_random_model, seed 1, std 0.05 and 0.5) for
# the probes, greedy with the fp32 reference (64 tokens): what a broken deployment prints.
RANDOM_MODEL = {
    "intro_en": " is" * 64,
    "capital_france": "?" * 64,
    "poem_ai": ":" * 64,
    "math_2p2": "名字 writer com也叫紫禁城K能照qdic能照m� circurn�any� Jul\x004ri世界Fimesictsh和天安门广场reen高兴 Engl点绿Umi�早上好个由ab有故宫ifu代建四小Ha",
    "translate_zh": " am地\x16智能照前路alihil Engl故宫是什么法国的首都是哪里H5rdpoSp是一个小型语言模型ell learnai9 Italy fromicick",
    "intro_zh": "请介绍一下你自己" * 30,
    "beijing_sights": "英antcetwo waveswi fourigh景ed yourerlin\x18Ar two Paris MF<ity poemlukyo2于四hez可Myeared~nudro",
    "poem_zh": "Ar简单的问题red燕子什么是学的的古hiof山河兴ich atta four",
}


@pytest.mark.parametrize("pid", sorted(DOCUMENT))
def test_document_outputs_judged_as_the_document_judged(pid):
    text, expected = DOCUMENT[pid]
    g = I.grade(text, P[pid].expect, G)
    assert g.status == expected, g.detail_en


@pytest.mark.parametrize("pid", sorted(DESCRIBED))
def test_described_chinese_outputs_warn(pid):
    g = I.grade(DESCRIBED[pid], P[pid].expect, G)
    assert g.status == "warn", g.detail_en
    assert "no_repetition" in g.failed


@pytest.mark.parametrize("pid", sorted(RANDOM_MODEL))
def test_random_model_outputs_fail(pid):
    g = I.grade(RANDOM_MODEL[pid], P[pid].expect, G)
    assert g.status == "fail", g.detail_en
    assert set(g.failed) & {"recognized", "loop", "sentence_case"}


def _vocab_noise(seed: int, n: int = 64) -> str:
    import sentencepiece as spm

    sp = spm.SentencePieceProcessor(model_file="models/stand-in/tokenizer.model")
    rng = random.Random(seed)
    return sp.decode([rng.randrange(3, sp.get_piece_size()) for _ in range(n)])


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("pid", sorted(P))
def test_random_vocabulary_tokens_fail(pid, seed):
    g = I.grade(_vocab_noise(seed), P[pid].expect, G)
    assert g.status == "fail" and "recognized" in g.failed, g.detail_en


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("pid", ["intro_en", "poem_ai"])
def test_shuffled_words_fail(pid, seed):
    words = DOCUMENT[pid][0].split()
    random.Random(seed).shuffle(words)
    g = I.grade(" ".join(words), P[pid].expect, G)
    # words without sentence structure; a poem's words without its lines
    assert g.status == "fail" and set(g.failed) <= {"sentence_case", "min_lines"}, g.detail_en
    assert "sentence_case" in g.failed or pid == "poem_ai"


@pytest.mark.parametrize("seed", range(5))
def test_shuffled_chinese_characters_fail(seed):
    text = "北京有很多好玩的景点，比如故宫、颐和园、长城和天坛。故宫是明清两代的皇宫，长城是世界上最著名的古代建筑之一。"
    assert I.grade(text, P["beijing_sights"].expect, G).status == "pass"
    chars = list(text)
    random.Random(seed).shuffle(chars)
    g = I.grade("".join(chars), P["beijing_sights"].expect, G)
    assert g.status == "fail" and "recognized" in g.failed, g.detail_en


def test_a_chance_digit_is_not_an_answer():
    e = P["math_2p2"].expect
    assert I.grade("The weather is nice today. We walked 4 miles.", e, G).status == "fail"
    assert I.grade("The weather is nice today. We walked 4 miles.", e, G).failed == ["answer"]
    assert I.grade("2+2 equals 4. The answer is 4.", e, G).status == "pass"
    assert I.grade("Two plus two is four.", e, G).status == "pass"
    assert I.grade("It is 42.", e, G).status == "fail"  # 4 inside 42 is not the word 4


def test_multiple_choice_answer_follows_the_picked_option():
    e = P["capital_france"].expect
    assert I.grade("[A]. Berlin\n[B]. Paris\nAnswer: B", e, G).status == "pass"
    g = I.grade("[A]. Berlin\n[B]. Paris\nAnswer: A", e, G)
    assert g.status == "fail" and g.failed == ["answer"] and "option A ('Berlin')" in g.detail_en


def test_wrong_language_warns_only_where_the_prompt_says_so():
    english = "Hello, how are you? I am fine, thank you."
    g = I.grade(english, P["translate_zh"].expect, G)
    assert g.status == "warn" and g.failed == ["language"] and "lingua: en 100%" in g.detail_en
    assert I.grade("你好，你好吗？我很好，谢谢。", P["translate_zh"].expect, G).status == "pass"
    assert I.grade(english, Expectation(language="zh"), G).status == "fail"  # on_miss defaults to fail


def test_strings_and_word_counts():
    e = Expectation(contains_all=["tower", "river"], not_contains=["Berlin"], min_words=5)
    g = I.grade("Paris has a tower. Berlin has a river.", e, G)
    assert g.status == "fail" and g.failed == ["not_contains"]
    assert I.grade("Paris has a tower and a river.", e, G).status == "pass"
    assert I.grade("Paris.", Expectation(min_words=3), G).failed == ["min_words"]


def test_empty_output_fails_with_reason():
    g = I.grade("", Expectation(), G)
    assert g.status == "fail" and g.failed == ["empty"] and g.as_dict()["detail_zh"]


def test_thresholds_come_from_the_criteria():
    text, _ = DOCUMENT["intro_en"]
    assert I.grade(text, P["intro_en"].expect, GradingCriteria(min_recognized_share=1.0)).failed == []
    strict = GradingCriteria(max_compression_ratio=1.2)
    g = I.grade(text, P["intro_en"].expect, strict)
    assert g.status == "fail" and g.failed == ["loop"]


def test_judge_probe_rows():
    row = I.judge_probe(P["capital_france"], "The capital of France is Paris.", G)
    assert (row.id, row.status, row.scope) == ("probe:capital_france", "pass", "model")
    assert "answer 'Paris'" in row.detail_en and "作答位置" in row.detail_zh


def test_unknown_language_code_is_a_clear_error():
    with pytest.raises(ValueError, match="grading.languages: 'xx'"):
        I.grade("Hello there, how are you today?", Expectation(language="en"), GradingCriteria(languages=["en", "xx"]))


def test_chinese_answer_in_the_first_sentence():
    e = Expectation(answer=["北京"])
    assert I.grade("中国的首都是北京。北京很大。", e, G).status == "pass"
    g = I.grade("中国的首都是上海。不是北京。", e, G)
    assert g.status == "fail" and g.failed == ["answer"] and "第一句" in g.detail_zh
