"""A random-weight MiniCPM directory (model.writer) yields ❌ on the model scope from the probe and Chinese graders.

Its real generated text (greedy, 64 tokens, the project's fp32 reference model: the same text vLLM produces
for these weights, see models/README.md) is graded with the default prompts.yaml criteria."""
import pytest

from bitcpm_validation.chapters import chinese as C
from bitcpm_validation.chapters import inference as I
from bitcpm_validation.engine.prompting import with_chat
from bitcpm_validation.params import ChineseParams, load_prompts

PROMPTS = load_prompts("params/prompts.yaml")


@pytest.fixture(scope="module", params=[0.05, 0.5], ids=["std0.05", "std0.5"])
def outputs(request, tmp_path_factory):
    torch = pytest.importorskip("torch")
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
