"""Issue 7 point 3, every bad input that is not server-side: each gives a clear one-line error and loses
nothing already computed. Tiny model dirs and throwaway notebooks in tmp; no vLLM engine is started.

(Server-side cases: port taken, server dying mid-chapter, no orphan server: tests of bitcpm_validation.engine.server.)
"""
from __future__ import annotations

import io
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from bitcpm_validation.engine import base
from bitcpm_validation.engine import modelcheck
from bitcpm_validation.report import runner
from bitcpm_validation.report import results as R
from bitcpm_validation.params import ParamsError, load_params
from fake_model import fake_model_dir
from fake_run import notebook

ROOT = Path(__file__).resolve().parents[1]


def one_line(msg: str) -> str:
    assert msg and "\n" not in msg and "Traceback" not in msg, msg
    return msg


def engine_error(path: Path, **kw) -> str:
    with pytest.raises(modelcheck.ModelCheckError) as ei:
        modelcheck.check_model_dir(path, **kw)
    return one_line(str(ei.value))


def write_params(tmp_path: Path, model: Path, name: str = "p.yaml", **changes) -> Path:
    d = yaml.safe_load((ROOT / "params" / "default.yaml").read_text(encoding="utf-8"))
    d["model"]["path"] = str(model)
    d["model"]["dummy_config"] = None
    d["prompts"] = str(ROOT / "params" / "prompts.yaml")
    for dotted, v in changes.items():
        cur = d
        *head, last = dotted.split(".")
        for k in head:
            cur = cur.setdefault(k, {})
        cur[last] = v
    p = tmp_path / name
    p.write_text(yaml.safe_dump(d, allow_unicode=True), encoding="utf-8")
    return p


# -- the model directory -------------------------------------------------------------------------------------
def test_model_path_missing(tmp_path):
    missing = tmp_path / "BitCPM4-0.5B"
    msg = engine_error(missing)
    assert msg.startswith(f"model path {missing} does not exist: set model.path in the params file")
    # and at run start, before any notebook runs
    with pytest.raises(runner.RunError) as ei:
        runner.run(write_params(tmp_path, missing), runs_dir=tmp_path / "runs", out=io.StringIO())
    assert "key 'model.path'" in one_line(str(ei.value)) and not (tmp_path / "runs").exists()


def test_model_path_is_a_file(tmp_path):
    f = tmp_path / "model.safetensors"
    f.write_bytes(b"x")
    assert engine_error(f) == f"model path {f} is not a directory: point model.path at the model's folder"


def test_not_a_model_dir(tmp_path):
    d = tmp_path / "photos"
    d.mkdir()
    (d / "cat.jpg").write_bytes(b"\xff\xd8")
    assert engine_error(d) == f"{d} has no config.json: this is not a Hugging Face model directory"


def test_not_a_minicpm_model(tmp_path):
    d = fake_model_dir(tmp_path / "llama", architectures=["LlamaForCausalLM"])
    msg = engine_error(d)
    assert msg == f"{d / 'config.json'}: architectures is ['LlamaForCausalLM'], not MiniCPMForCausalLM: this is not a MiniCPM model"


def test_config_not_json(tmp_path):
    d = fake_model_dir(tmp_path / "m")
    (d / "config.json").write_text('{"architectures": [')
    assert "config.json is not valid JSON" in engine_error(d) and "re-download the model" in engine_error(d)


def test_truncated_safetensors(tmp_path):
    d = fake_model_dir(tmp_path / "m")
    w = d / "model.safetensors"
    w.write_bytes(w.read_bytes()[: w.stat().st_size // 2])
    msg = engine_error(d)
    assert msg.startswith(f"{w}: truncated safetensors file (tensor ") and msg.endswith(
        "re-download it (git lfs pull / huggingface-cli download)")


def test_corrupt_safetensors(tmp_path):
    d = fake_model_dir(tmp_path / "m")
    w = d / "model.safetensors"
    raw = bytearray(w.read_bytes())
    raw[8:20] = b"garbage!!!!!"  # the JSON header
    w.write_bytes(bytes(raw))
    assert engine_error(d).startswith(f"{w}: corrupt safetensors header (not JSON")


def test_no_weights(tmp_path):
    d = fake_model_dir(tmp_path / "m", weights=False)
    assert engine_error(d).startswith(f"{d} has no weight files (*.safetensors): finish the download")
    modelcheck.check_model_dir(d, need_weights=False)  # the dummy-weights profile needs none


def test_missing_tokenizer(tmp_path):
    d = fake_model_dir(tmp_path / "m", tokenizer=False)
    assert engine_error(d) == (f"{d} has no tokenizer (tokenizer.json / tokenizer.model): copy the tokenizer files "
                               f"from the model repository")


def test_config_missing_field(tmp_path):
    d = fake_model_dir(tmp_path / "m", num_attention_heads=None)
    assert engine_error(d) == (f"{d / 'config.json'}: missing field 'num_attention_heads': fix config.json or "
                               f"re-download it from the model repository")


@pytest.mark.parametrize("change, expected", [
    ({"hidden_size": 66}, "hidden_size 66 is not divisible by num_attention_heads 4"),
    ({"num_key_value_heads": 3}, "num_attention_heads 4 is not divisible by num_key_value_heads 3"),
    ({"vocab_size": 30, "eos_token_id": 2}, "vocab_size 30 is smaller than the tokenizer (40 ids)"),
])
def test_config_contradictory(tmp_path, change, expected):
    d = fake_model_dir(tmp_path / "m", weights=False, **change)
    msg = engine_error(d, need_weights=False)
    assert msg.startswith(f"{d / 'config.json'}: ") and expected in msg


# -- params ----------------------------------------------------------------------------------------------------
def params_error(p: Path) -> str:
    with pytest.raises(ParamsError) as ei:
        load_params(p)
    return one_line(str(ei.value))


def test_params_unknown_key(tmp_path):
    p = write_params(tmp_path, tmp_path, **{"engine.max_model_lenght": 4096})
    assert params_error(p) == (f"{p}: unknown key 'engine.max_model_lenght': remove it or fix its spelling "
                               f"(see params/default.yaml for every key)")


def test_params_wrong_type(tmp_path):
    p = write_params(tmp_path, tmp_path, **{"engine.max_num_seqs": "eight"})
    msg = params_error(p)
    assert msg.startswith(f"{p}: key 'engine.max_num_seqs': Input should be a valid integer") and "'eight'" in msg
    p = write_params(tmp_path, tmp_path, trust_remote_code="maybe")
    assert "key 'trust_remote_code': Input should be a valid boolean" in params_error(p)


def test_params_impossible_values(tmp_path):
    p = write_params(tmp_path, tmp_path, **{"engine.max_model_len": 4})
    assert "key 'engine.max_model_len': Input should be greater than or equal to 16, got 4" in params_error(p)
    p = write_params(tmp_path, tmp_path, **{"engine.max_model_len": 32})
    assert "inference.max_tokens (64) must be below engine.max_model_len (32)" in params_error(p)


def test_params_max_model_len_beyond_model(tmp_path):
    d = fake_model_dir(tmp_path / "m")  # max_position_embeddings 4096
    p = write_params(tmp_path, d, **{"engine.max_model_len": 32768})
    params = load_params(p)  # valid on its own: only the model can say it is too long
    expected = (f"{p}: key 'engine.max_model_len': 32768 is beyond the model's max_position_embeddings 4096 "
                f"({d / 'config.json'}): set it to 4096 or less")
    with pytest.raises(modelcheck.ModelCheckError) as ei:
        modelcheck.check_params(params)
    assert one_line(str(ei.value)) == expected
    with pytest.raises(base.EngineError) as ei:  # what a chapter gets before vllm.LLM is created
        base.model_facts(params)
    assert str(ei.value) == expected


# -- a chapter raising; re-running only the failed chapter ----------------------------------------------------------
HEAD = ('from bitcpm_validation.report.recorder import Chapter\nch = Chapter.open("{cid}", params_path, run_dir)\n'
        + 'from bitcpm_validation.report.checks import define\ndef spec(check_id, name_en, name_zh):  # a throwaway check: the runner tests judge nothing\n    return define(check_id, "{cid}", "engine", name_en, name_zh, criterion_en="the notebook reached this line",\n                  criterion_zh="notebook 运行到此行")\n')
OK = HEAD + 'ch.record(spec("c1", "Works", "可用").row("pass", "fine", "正常"))\nch.metric("m", 1.5, "s", "M", "M")\nch.finish()'
ENGINE_INPUT = HEAD + (
    'ch.record(spec("before", "Recorded before the engine", "引擎之前记录").row("pass"))\n'
    "from bitcpm_validation.engine import base\n"
    "kw = base.engine_kwargs(ch.params, base.model_facts(ch.params))  # the chapter's first step before vllm.LLM(**kw)\n"
    'ch.record(spec("inputs", "Model inputs valid", "模型输入有效").row("pass"))\n'
    "ch.finish()"
)



def test_chapter_exception_keeps_checks_and_reruns_only_failed(tmp_path):
    """A chapter fails on a corrupt weight file: marked failed with the one-line reason, its earlier check
    kept, the next chapter still runs; after the file is fixed, --resume re-runs that chapter only."""
    model = fake_model_dir(tmp_path / "m")
    good = (model / "model.safetensors").read_bytes()
    (model / "model.safetensors").write_bytes(good[:-64])
    nbs = tmp_path / "notebooks"
    nbs.mkdir()
    notebook(nbs, "02_loading", ENGINE_INPUT)
    notebook(nbs, "03_inference", OK)
    params = write_params(tmp_path, model)
    out = io.StringIO()
    oc = runner.run(params, notebooks_dir=nbs, runs_dir=tmp_path / "runs", out=out, kernel="python3")
    assert {c.chapter: c.status for c in oc.chapters} == {"02_loading": "failed", "03_inference": "ok"}
    assert oc.exit_code == 1
    rd = oc.run_dir
    failed = R.load(rd / "results" / "02_loading.json")
    assert failed.status == "failed"
    assert one_line(failed.error).startswith(f"EngineError: {model / 'model.safetensors'}: truncated safetensors file")
    assert [c.id for c in failed.checks] == ["before"]  # recorded before the failure: kept
    progress = [ln for ln in out.getvalue().splitlines() if ln.startswith("[01/")][0]
    assert "failed" in progress and "truncated safetensors file" in progress
    ok_before = (rd / "results" / "03_inference.json").read_bytes()
    ok_nb_before = (rd / "notebooks" / "03_inference.ipynb").stat().st_mtime_ns

    (model / "model.safetensors").write_bytes(good)  # the user fixes the input
    oc2 = runner.run(params, run_dir=rd, resume=True, notebooks_dir=nbs, runs_dir=tmp_path / "runs",
                     out=io.StringIO(), kernel="python3")
    assert [c.chapter for c in oc2.chapters] == ["02_loading"] and oc2.exit_code == 0
    assert [c.id for c in R.load(rd / "results" / "02_loading.json").checks] == ["before", "inputs"]
    assert (rd / "results" / "03_inference.json").read_bytes() == ok_before  # nothing recomputed, nothing lost
    assert (rd / "notebooks" / "03_inference.ipynb").stat().st_mtime_ns == ok_nb_before
    info = json.loads((rd / "run.json").read_text())
    assert {k: v["status"] for k, v in info["chapters"].items()} == {"02_loading": "ok", "03_inference": "ok"}


# -- Ctrl-C --------------------------------------------------------------------------------------------------------
SLEEPER = HEAD + (
    "import subprocess, pathlib, sys, time\n"
    "# an engine-like tree: a worker in its own session that itself has a child\n"
    "w = subprocess.Popen([sys.executable, '-c', 'import subprocess,time; subprocess.Popen([\"sleep\",\"300\"]); time.sleep(300)'],\n"
    "                     start_new_session=True)\n"
    "time.sleep(1.0)\n"
    "pathlib.Path(run_dir, 'started').write_text(str(w.pid))\n"
    "time.sleep(300)\nch.finish()"
)


def test_ctrl_c_leaves_no_process(tmp_path):
    psutil = pytest.importorskip("psutil")
    nbs = tmp_path / "notebooks"
    nbs.mkdir()
    notebook(nbs, "02_loading", SLEEPER)
    notebook(nbs, "03_inference", OK)
    model = tmp_path / "m"
    model.mkdir()
    params = write_params(tmp_path, model)
    rd = tmp_path / "run"
    code = (f"import sys; from pathlib import Path; from bitcpm_validation.report import runner; "
            f"oc = runner.run({str(params)!r}, run_dir={str(rd)!r}, notebooks_dir=Path({str(nbs)!r}), kernel='python3'); "
            f"sys.exit(oc.exit_code)")
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    try:
        deadline = time.time() + 120
        while not (rd / "started").exists() and time.time() < deadline and proc.poll() is None:
            time.sleep(0.3)
        assert (rd / "started").exists(), "the chapter never started its worker"
        me = psutil.Process(proc.pid)
        tree = me.children(recursive=True)
        names = " ".join(" ".join(p.cmdline()) for p in tree)
        assert len(tree) >= 3 and "sleep 300" in names, names  # kernel, worker, worker's child
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=90)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, out
    gone, alive = psutil.wait_procs(tree, timeout=10)
    alive = [p for p in alive if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    for p in alive:  # clean up before failing, so a bug does not leave sleepers on the machine
        p.kill()
    assert not alive, f"left behind after Ctrl-C: {[p.pid for p in alive]}"
    lines = out.strip().splitlines()
    assert "interrupted" in lines and any(ln.startswith("stopped ") and "--resume" in ln for ln in lines), out
    res = R.load(rd / "results" / "02_loading.json")
    assert res.status == "failed" and res.error == "interrupted (Ctrl-C / SIGTERM)"
    assert not (rd / "results" / "03_inference.json").exists()  # the run stopped; resume runs it
    assert json.loads((rd / "run.json").read_text())["interrupted"] is True
