"""provenance: input hashes, remote-code files with SHA-256, git commit + dirty flag, versions, seeds,
engine settings; and the provenance chapter notebook run on a tiny fake model (no engine)."""
from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from bitcpm_validation.chapters import provenance as P
from bitcpm_validation.report.runner import git_info
from bitcpm_validation.report import results as R
from bitcpm_validation.params import load_params
from fake_model import fake_model_dir

ROOT = Path(__file__).resolve().parents[2]


def _params(tmp_path: Path, model: Path, trust: bool | None = True, **extra) -> Path:
    doc = {"profile": "t", "prompts": str(ROOT / "params" / "prompts.yaml"),
           "model": {"path": str(model), "dummy_config": None}, "engine": {"max_model_len": 1024}}
    if trust is not None:
        doc["trust_remote_code"] = trust
    doc.update(extra)
    p = tmp_path / "p.yaml"
    p.write_text(yaml.safe_dump(doc))
    return p


def _sha(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


def test_hash_model_dir_roles_and_hashes(tmp_path):
    d = fake_model_dir(tmp_path / "m")
    (d / ".git").mkdir()
    (d / ".git" / "HEAD").write_text("x")
    rows = {r["path"]: r for r in P.hash_model_dir(d)}
    assert ".git/HEAD" not in rows
    assert rows["model.safetensors"]["role"] == "weights"
    assert rows["config.json"]["role"] == "config"
    assert rows["tokenizer.json"]["role"] == "tokenizer"
    assert rows["modeling_minicpm.py"]["role"] == "code"
    for name, r in rows.items():
        assert r["sha256"] == _sha(d / name) and r["bytes"] == (d / name).stat().st_size


def test_remote_code_listed_with_hashes(tmp_path):
    d = fake_model_dir(tmp_path / "m")
    (d / "helpers.py").write_text("X = 1\n")
    tc = json.loads((d / "tokenizer_config.json").read_text())
    tc["auto_map"] = {"AutoTokenizer": ["tokenization_minicpm.MiniCPMTokenizer", None]}
    (d / "tokenizer_config.json").write_text(json.dumps(tc))
    rc = P.remote_code_files(d, trust_remote_code=True)
    files = {f["file"]: f for f in rc["files"]}
    assert rc["auto_map"] is True
    assert files["modeling_minicpm.py"]["executed"] and files["modeling_minicpm.py"]["auto_map_target"]
    assert files["modeling_minicpm.py"]["sha256"] == _sha(d / "modeling_minicpm.py")
    assert files["modeling_minicpm.py"]["referenced_by"] == ["config.json:AutoModelForCausalLM"]
    assert files["helpers.py"]["executed"] and not files["helpers.py"]["auto_map_target"]  # importable by targets
    assert rc["missing_targets"] == ["tokenization_minicpm.py"]  # referenced but absent: flagged


def test_remote_code_not_executed_without_trust(tmp_path):
    d = fake_model_dir(tmp_path / "m")
    rc = P.remote_code_files(d, trust_remote_code=False)
    assert rc["files"] and not any(f["executed"] for f in rc["files"])
    assert all(f["sha256"] for f in rc["files"])  # still listed with hashes


def test_external_auto_map_reference(tmp_path):
    d = fake_model_dir(tmp_path / "m", auto_map={"AutoModelForCausalLM": "someone/repo--modeling_x.X"})
    rc = P.remote_code_files(d, True)
    assert rc["external"] == [{"source": "config.json", "auto_class": "AutoModelForCausalLM",
                               "reference": "someone/repo--modeling_x.X"}]


def test_collect(tmp_path):
    d = fake_model_dir(tmp_path / "m")
    params = load_params(_params(tmp_path, d))
    prov = P.collect(params, run_dir=None)
    json.dumps(prov)  # JSON-ready
    roles = {(e["set"], e["role"]) for e in prov["inputs"]}
    assert {("model", "weights"), ("model", "config"), ("model", "tokenizer"), ("params", "params"),
            ("params", "prompts")} <= roles
    assert prov["remote_code"]["explicit"] is True
    assert prov["git"]["commit"] and len(prov["git"]["commit"]) == 40 and isinstance(prov["git"]["dirty"], bool)
    assert prov["versions"]["python"] and "torch" in prov["versions"]
    assert prov["seeds"]["engine.seed"] == 0
    real = prov["engine"]["real"]
    assert real["model"] == str(d) and real["max_model_len"] == 1024 and real["trust_remote_code"] is True
    assert "error" in prov["engine"]["full_shape"]  # dummy_config unset: recorded, not raised


def test_input_sets_one_row_per_set_and_a_manifest_of_every_file(tmp_path, monkeypatch):
    """Issue 20.2: the page shows one row per set (files, bytes, a digest over the set); every file's full
    SHA-256 goes to a sha256sum manifest that `sha256sum -c` accepts in the set's directory."""
    monkeypatch.setenv("BITCPM_VALIDATION_CACHE", str(tmp_path / "cache"))  # no synthetic checkpoint written here
    d = fake_model_dir(tmp_path / "m")
    inputs = P.collect(load_params(_params(tmp_path, d)))["inputs"]
    sets = P.input_sets(inputs)
    assert [s["set"] for s in sets] == ["model", "params"]
    model = sets[0]
    files = [e for e in inputs if e["set"] == "model"]
    assert model["files"] == len(files) and model["bytes"] == sum(e["bytes"] for e in files) and model["missing"] == 0
    text = P.manifest(inputs)
    assert f"{_sha(d / 'model.safetensors')}  model.safetensors" in text and f"# set model: {d}" in text
    model_lines = "".join(f"{e['sha256']}  {e['path']}\n" for e in sorted(files, key=lambda e: e["path"]))
    assert model["digest"] == hashlib.sha256(model_lines.encode()).hexdigest()  # the digest is of the set's lines
    (d / "config.json").write_text("{}")  # one file of the set changes: its digest changes, the other set's does not
    again = P.input_sets(P.collect(load_params(_params(tmp_path, d)))["inputs"])
    assert again[0]["digest"] != model["digest"] and again[1]["digest"] == sets[1]["digest"]
    ok = subprocess.run(["sha256sum", "-c", "-"], cwd=d, capture_output=True, text=True,
                        input="".join(line + "\n" for line in text.splitlines()
                                      if line.endswith("model.safetensors")))
    assert ok.returncode == 0, ok.stdout + ok.stderr
    gone = [dict(e, sha256=None, bytes=None, missing=True) if e["path"] == "config.json" else e for e in inputs]
    assert P.input_sets(gone)[0]["missing"] == 1 and "missing  config.json" in P.manifest(gone)


def test_trust_remote_code_default_is_not_explicit(tmp_path):
    d = fake_model_dir(tmp_path / "m")
    params = load_params(_params(tmp_path, d, trust=None))
    assert P.collect(params)["remote_code"]["explicit"] is False


def test_collect_missing_model_dir(tmp_path):
    params = load_params(_params(tmp_path, tmp_path / "nope"))
    prov = P.collect(params)
    assert prov["model_dir_exists"] is False
    assert "does not exist" in prov["engine"]["real"]["error"]


def test_git_info_dirty_flag(tmp_path):
    repo = tmp_path / "r"
    repo.mkdir()
    git = lambda *a: subprocess.run(["git", *a], cwd=repo, check=True, capture_output=True)  # noqa: E731
    git("init", "-q")
    (repo / "f").write_text("1")
    git("add", "f")
    git("-c", "user.email=a@b", "-c", "user.name=t", "commit", "-qm", "x")
    g = git_info(repo)
    assert g["dirty"] is False and len(g["commit"]) == 40 and g["branch"]
    (repo / "f").write_text("2")
    dirty = git_info(repo)
    assert dirty["dirty"] is True and dirty["changed_files"] == ["f"]
    outside = tmp_path / "not-a-repo"
    outside.mkdir()
    env_ceiling = {"GIT_CEILING_DIRECTORIES": str(tmp_path)}
    import os
    old = {k: os.environ.get(k) for k in env_ceiling}
    os.environ.update(env_ceiling)  # git must not find an enclosing repository above tmp_path
    try:
        assert git_info(outside) == {"commit": None, "dirty": None, "branch": None,
                                     "note": "not a git checkout (or git missing)"}
    finally:
        for k, v in old.items():
            os.environ.pop(k) if v is None else os.environ.__setitem__(k, v)


def test_provenance_chapter_notebook(tmp_path):
    """notebooks/11_provenance.ipynb executed by papermill on a fake model: results, checks and card."""
    pytest.importorskip("papermill")
    import papermill as pm

    d = fake_model_dir(tmp_path / "m")
    pp = _params(tmp_path, d)
    run = tmp_path / "run"
    pm.execute_notebook(str(ROOT / "notebooks" / "11_provenance.ipynb"), str(tmp_path / "out.ipynb"),
                        parameters={"params_path": str(pp), "run_dir": str(run)}, kernel_name="python3",
                        cwd=str(ROOT), progress_bar=False)
    res = R.load(run / "results" / "11_provenance.json")
    assert res.status == "ok"
    checks = {c.id: c.status for c in res.checks}
    assert checks == {"inputs_hashed": "pass", "remote_code_listed": "pass"}  # facts (commit, flags) are not checks
    assert all(c.scope == "repository" for c in res.checks)  # the model directory's own files (issue 23.1)
    assert res.metric("remote_code_files") == 2 and res.metric("git_commit")
    md = res.card[0]["markdown"]
    assert _sha(d / "modeling_minicpm.py") in md and _sha(d / "model.safetensors") in md
    html = (tmp_path / "out.ipynb").read_text()
    assert _sha(d / "configuration_minicpm.py")[:16] in html and "yes" in html  # shown short; full in the results
    assert _sha(d / "configuration_minicpm.py") in json.dumps(res.data)


def test_remote_code_check_statuses(tmp_path):
    d = fake_model_dir(tmp_path / "m")
    dummy = fake_model_dir(tmp_path / "dummy", weights=False)
    (dummy / "extra_ops.py").write_text("Y = 2\n")
    p = _params(tmp_path, d)
    doc = yaml.safe_load(p.read_text())
    doc["model"]["dummy_config"] = str(dummy)
    p.write_text(yaml.safe_dump(doc))
    prov = P.collect(load_params(p))
    rows = P.remote_code_rows(prov)
    assert {(r["set"], r["file"]) for r in rows} == {
        ("model", "configuration_minicpm.py"), ("model", "modeling_minicpm.py"),
        ("dummy_config", "configuration_minicpm.py"), ("dummy_config", "modeling_minicpm.py"),
        ("dummy_config", "extra_ops.py")}
    # the Chinese file says how each runs in Chinese (auto_map is a config key)
    assert {r["how_zh"] for r in rows} == {"auto_map 目标", "在模型目录中（可被目标导入）"}
    # the report's table: the same file with the same hash in both sets is one row naming both sets
    table = {(r["file"], tuple(r["sets"])) for r in P.remote_code_table_rows(rows)}
    assert table == {("configuration_minicpm.py", ("model", "dummy_config")), ("modeling_minicpm.py", ("model", "dummy_config")),
                     ("extra_ops.py", ("dummy_config",))}
    (dummy / "modeling_minicpm.py").write_text("X = 'changed'\n")  # another hash: its own row again
    changed = P.remote_code_table_rows(P.remote_code_rows(P.collect(load_params(p))))
    assert sorted(tuple(r["sets"]) for r in changed if r["file"] == "modeling_minicpm.py") == [("dummy_config",), ("model",)]
    row = P.judge_remote_code(prov)
    assert row.status == "pass" and row.detail_en.startswith("5 file(s) executed") and "dummy_config/extra_ops.py" in row.detail_en
    prov_off = P.collect(load_params(_params(tmp_path, d, trust=False)))
    off = P.judge_remote_code(prov_off)
    assert (off.status, off.detail_en) == ("pass", "no remote code executed (trust_remote_code is false)")
    (d / "modeling_minicpm.py").unlink()
    gone = P.judge_remote_code(P.collect(load_params(_params(tmp_path, d))))
    assert gone.status == "fail" and "modeling_minicpm.py" in gone.detail_en
    missing = P.collect(load_params(_params(tmp_path, tmp_path / "nope")))
    assert P.judge_remote_code(missing).status == "not_run"
    assert P.judge_inputs(missing).status == "fail"


def test_provenance_notebook_shows_the_datasets_the_run_read(tmp_path):
    """A run that resolved hub datasets (accuracy.resolved in its params.yaml) lists each with the commit read."""
    pytest.importorskip("papermill")
    import papermill as pm

    d = fake_model_dir(tmp_path / "m")
    resolved = {"datasets": {"ceval/ceval-exam": {"path": "ceval/ceval-exam", "configs": 52, "revision": "abc123def",
                                                  "pinned": None, "status": "ok"}},
                "tasks": {"ceval-valid": "ceval/ceval-exam"}}
    pp = _params(tmp_path, d, accuracy={"tasks": ["ceval-valid"], "resolved": resolved})
    run = tmp_path / "run"
    out = tmp_path / "out.ipynb"
    pm.execute_notebook(str(ROOT / "notebooks" / "11_provenance.ipynb"), str(out),
                        parameters={"params_path": str(pp), "run_dir": str(run)}, kernel_name="python3",
                        cwd=str(ROOT), progress_bar=False)
    res = R.load(run / "results" / "11_provenance.json")
    assert res.data["provenance"]["dataset_sources"]["ceval/ceval-exam"]["revision"] == "abc123def"
    shown = out.read_text(encoding="utf-8")
    assert "ceval/ceval-exam" in shown and "abc123def" in shown and "Commit read" in shown


def test_the_synthetic_checkpoint_the_run_loaded_is_hashed(tmp_path, monkeypatch):
    """Issue 19.4: the full shape's seeded checkpoint is an input: its files' SHA-256 once the cache holds it."""
    from bitcpm_validation.engine import identity

    monkeypatch.setenv("BITCPM_VALIDATION_CACHE", str(tmp_path / "cache"))
    arch = tmp_path / "arch"
    import shutil
    shutil.copytree(ROOT / "models" / "stand-in", arch, ignore=shutil.ignore_patterns("*.safetensors"))
    model = fake_model_dir(tmp_path / "m")
    doc = yaml.safe_load(_params(tmp_path, model).read_text())
    doc["model"]["dummy_config"] = str(arch)
    (tmp_path / "p.yaml").write_text(yaml.safe_dump(doc))
    params = load_params(tmp_path / "p.yaml")
    assert P.synthetic_checkpoint(params) is None  # not written yet: nothing to hash
    d = identity.model_source(params, "synthetic").model_dir
    assert P.synthetic_checkpoint(params) == d
    rows = [e for e in P.collect(params)["inputs"] if e["set"] == "synthetic_checkpoint"]
    weights = [e for e in rows if e["role"] == "weights"]
    assert [e["path"] for e in weights] == ["model.safetensors"] and weights[0]["sha256"] == _sha(d / "model.safetensors")
    doc["model"]["full_shape_weights"], doc["performance"] = "dummy", {"model": "dummy"}
    (tmp_path / "p.yaml").write_text(yaml.safe_dump(doc))
    assert P.synthetic_checkpoint(load_params(tmp_path / "p.yaml")) is None  # this run loaded no synthetic weights
