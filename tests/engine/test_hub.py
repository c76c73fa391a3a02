"""A model given by its hub id and revision (issue 15): resolved offline from a prepared hub cache, recorded in
provenance; every failure is one line."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from bitcpm_validation.engine import hub
from bitcpm_validation.params import load_params
from bitcpm_validation.paths import MODELS_DIR

ROOT = Path(__file__).resolve().parents[2]
COMMIT = "0123456789abcdef0123456789abcdef01234567"
REPO = "openbmb/BitCPM4-0.5B"


def hub_cache(home: Path, repo: str = REPO, commit: str = COMMIT, src: Path = MODELS_DIR / "stand-in") -> Path:
    """The stand-in laid out as huggingface_hub's cache keeps a snapshot: blobs, refs/main, snapshots/<commit>/."""
    repo_dir = home / "hub" / ("models--" + repo.replace("/", "--"))
    snap = repo_dir / "snapshots" / commit
    snap.mkdir(parents=True)
    (repo_dir / "blobs").mkdir()
    for f in src.iterdir():
        if f.is_file():
            blob = repo_dir / "blobs" / f.name
            shutil.copyfile(f, blob)
            (snap / f.name).symlink_to(os.path.relpath(blob, snap))
    (repo_dir / "refs").mkdir()
    (repo_dir / "refs" / "main").write_text(commit)
    return snap


def resolve_in(home: Path, spec: str, hub_name: str = "huggingface") -> subprocess.CompletedProcess:
    code = ("import json, sys; from bitcpm_validation.engine import hub\n"
            "try:\n"
            f"    s = hub.resolve({spec!r}, {hub_name!r})\n"
            "    print(json.dumps({'dir': str(s.local_dir), 'commit': s.commit, 'repo': s.repo_id, 'rev': s.revision}))\n"
            "except hub.ModelSourceError as e:\n"
            "    print(e, file=sys.stderr); sys.exit(2)\n")
    env = {**os.environ, "HF_HOME": str(home), "HF_HUB_OFFLINE": "1"}
    env.pop("HF_HUB_CACHE", None)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=ROOT, timeout=120)


def test_parse_hub_id():
    assert hub.parse_hub_id("openbmb/BitCPM4-0.5B") == ("openbmb/BitCPM4-0.5B", None)
    assert hub.parse_hub_id("openbmb/BitCPM4-0.5B@v1.0") == ("openbmb/BitCPM4-0.5B", "v1.0")
    assert hub.parse_hub_id(f"openbmb/BitCPM4-0.5B@{COMMIT}") == ("openbmb/BitCPM4-0.5B", COMMIT)
    for not_hub in ("/abs/path", "./rel/dir", "~/models/x", "justaname", "a/b/c"):
        assert hub.parse_hub_id(not_hub) is None, not_hub


def test_local_directory_is_used_as_is(tmp_path):
    src = hub.resolve("models/stand-in", base=ROOT)
    assert src.local_dir == (ROOT / "models" / "stand-in").resolve() and src.repo_id is None and src.commit is None
    with pytest.raises(hub.ModelSourceError, match="not found: give an existing local directory or a hub id"):
        hub.resolve(str(tmp_path / "nope"))


def test_default_hub_follows_vllm(monkeypatch):
    monkeypatch.delenv("VLLM_USE_MODELSCOPE", raising=False)
    assert hub.default_hub() == "huggingface"
    monkeypatch.setenv("VLLM_USE_MODELSCOPE", "True")
    assert hub.default_hub() == "modelscope"


def test_offline_cache_resolves_commit_and_default_branch(tmp_path):
    snap = hub_cache(tmp_path)
    pinned = resolve_in(tmp_path, f"{REPO}@{COMMIT}")
    assert pinned.returncode == 0, pinned.stderr
    got = json.loads(pinned.stdout)
    assert Path(got["dir"]) == snap and got["commit"] == COMMIT and got["rev"] == COMMIT
    assert (Path(got["dir"]) / "model.safetensors").is_file()
    main = resolve_in(tmp_path, REPO)
    assert main.returncode == 0, main.stderr
    assert json.loads(main.stdout)["commit"] == COMMIT and json.loads(main.stdout)["rev"] is None


def test_offline_empty_cache_is_one_line_naming_the_cache_and_the_command(tmp_path):
    p = resolve_in(tmp_path, f"{REPO}@{COMMIT}")
    assert p.returncode == 2
    msg = p.stderr.strip()
    assert "\n" not in msg and str(tmp_path / "hub") in msg and f"hf download {REPO} --revision {COMMIT}" in msg


def test_offline_unknown_revision_is_one_line(tmp_path):
    hub_cache(tmp_path)
    p = resolve_in(tmp_path, f"{REPO}@v9.9")
    assert p.returncode == 2 and "\n" not in p.stderr.strip() and "v9.9" in p.stderr


def test_modelscope_without_the_package_says_what_to_install(tmp_path):
    p = resolve_in(tmp_path, REPO, "modelscope")
    if p.returncode == 0:
        pytest.skip("modelscope is installed here")
    assert "pip install modelscope" in p.stderr and "\n" not in p.stderr.strip()


def test_run_uses_the_resolved_snapshot_and_provenance_shows_the_commit(tmp_path):
    """`run --model <id>@<commit>` offline: the run's saved params hold the snapshot and the source; provenance names
    the commit (the provenance chapter needs no engine)."""
    snap = hub_cache(tmp_path / "hf")
    run_dir = tmp_path / "run"
    env = {**os.environ, "HF_HOME": str(tmp_path / "hf"), "HF_HUB_OFFLINE": "1"}
    p = subprocess.run([sys.executable, "-m", "bitcpm_validation", "run", "--params", "params/default.yaml",
                        "--model", f"{REPO}@{COMMIT}", "--only", "provenance", "--no-render", "--run-dir", str(run_dir)],
                       cwd=ROOT, capture_output=True, text=True, env=env, timeout=600)
    assert p.returncode == 0, p.stdout + p.stderr
    saved = yaml.safe_load((run_dir / "params.yaml").read_text())
    assert saved["model"]["path"] == str(snap)
    assert saved["model"]["source"] == {"hub": "huggingface", "repo_id": REPO, "revision": COMMIT, "commit": COMMIT}
    # the snapshot holds the stand-in's files: its config.json declares it, whatever the repo id says
    assert saved["model"]["name"] == REPO and saved["model"]["is_stand_in"] is True
    prov = json.loads((run_dir / "results" / "11_provenance.json").read_text())
    assert prov["data"]["provenance"]["model_source"]["commit"] == COMMIT
    assert {m["id"]: m["value"] for m in prov["metrics"]}["model_commit"] == COMMIT


def test_run_with_an_empty_cache_stops_before_any_chapter(tmp_path):
    env = {**os.environ, "HF_HOME": str(tmp_path / "hf"), "HF_HUB_OFFLINE": "1"}
    p = subprocess.run([sys.executable, "-m", "bitcpm_validation", "run", "--params", "params/default.yaml",
                        "--model", REPO, "--no-render", "--run-dir", str(tmp_path / "run")],
                       cwd=ROOT, capture_output=True, text=True, env=env, timeout=300)
    assert p.returncode == 2
    err = p.stderr.strip().splitlines()
    assert len(err) == 1 and "key 'model.path'" in err[0] and "hf download" in err[0]
    assert not (tmp_path / "run" / "results").exists()


def test_ascend_profile_ships_the_hub_id():
    p = load_params(ROOT / "params" / "ascend-910b3.yaml")
    assert p.model.path == REPO and p.model.name == REPO and p.model.hub == "auto"


def test_with_model_drops_the_stand_in_flag_for_another_model():
    p = load_params(ROOT / "params" / "default.yaml")
    assert p.model.is_stand_in
    other = p.with_model(f"{REPO}@{COMMIT}")
    assert other.model.path == f"{REPO}@{COMMIT}" and other.model.name == REPO and not other.model.is_stand_in
    assert p.with_model("models/stand-in").model.is_stand_in
