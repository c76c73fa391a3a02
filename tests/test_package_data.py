"""The wheel carries the data the package reads at run time (issue 13): the offline lm-eval task (tasks/*.yaml,
tasks/*.jsonl) and the stand-in's corpus (model/corpus/*). Built with `pip wheel`, installed into a clean
temporary venv (no editable checkout on its path) and used from there."""
from __future__ import annotations

import shutil
import subprocess
import sys
import sysconfig
import textwrap
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "src" / "bitcpm_validation"
DATA = sorted(p.relative_to(PKG.parent).as_posix() for pattern in ("tasks/*.yaml", "tasks/*.jsonl", "model/corpus/*.jsonl",
                                                                    "model/corpus/*.txt", "chapters/checks.yaml",
                                                                    "engine/amx_site/sitecustomize.py") for p in PKG.glob(pattern))


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    # from a clean copy: an editable install's src/*.egg-info (SOURCES.txt) would add files the config misses
    out, tree = tmp_path_factory.mktemp("wheel"), tmp_path_factory.mktemp("tree")
    shutil.copytree(ROOT / "src", tree / "src", ignore=shutil.ignore_patterns("*.egg-info", "__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tree / "pyproject.toml")
    p = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--quiet",
                        "-w", str(out), str(tree)], capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-2000:]
    (whl,) = out.glob("bitcpm_validation-*.whl")
    return whl


def test_wheel_lists_the_data_files(wheel):
    assert DATA and any(d.endswith(".jsonl") for d in DATA) and any("corpus" in d for d in DATA)
    names = set(zipfile.ZipFile(wheel).namelist())
    missing = [d for d in DATA if d not in names]
    assert not missing, f"not in the wheel (pyproject [tool.setuptools.package-data]): {missing}"


def test_installed_wheel_runs_the_offline_task_lookup(wheel, tmp_path):
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    vpy = venv / "bin" / "python"
    site = subprocess.run([str(vpy), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    p = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "--quiet", "--target", site,
                        str(wheel)], capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-2000:]
    code = textwrap.dedent(f"""
        import json, sys
        from pathlib import Path
        import bitcpm_validation
        from bitcpm_validation.chapters import accuracy
        from bitcpm_validation.model import corpus
        from bitcpm_validation.tasks import TASKS_DIR
        assert Path(bitcpm_validation.__file__).is_relative_to({site!r}), bitcpm_validation.__file__
        items = accuracy.local_items("bitcpm_probe_mc")
        inc = accuracy.local_include_dir(Path({str(tmp_path / "inc")!r}))
        import yaml
        cfg = yaml.safe_load((inc / "bitcpm_probe_mc.yaml").read_text(encoding="utf-8"))
        data = [Path(f) for f in cfg["dataset_kwargs"]["data_files"].values()]
        print(json.dumps({{"items": len(items), "tasks_dir": str(TASKS_DIR), "data": [str(d) for d in data],
                          "data_exist": all(d.is_file() for d in data), "corpus": len(corpus.pairs()) + len(corpus.texts())}}))
    """)
    # the main venv's third-party packages (yaml, pydantic, ...) after the clean venv's own site-packages
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": "", "HOME": str(tmp_path),
           "PYTHONNOUSERSITE": "1"}
    main_site = sysconfig.get_paths()["purelib"]
    p = subprocess.run([str(vpy), "-c", f"import sys; sys.path.append({main_site!r}); exec({code!r})"],
                       cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-3000:]
    import json

    got = json.loads(p.stdout.strip().splitlines()[-1])
    assert got["items"] > 0 and got["data_exist"] and got["corpus"] > 0, got
    assert got["tasks_dir"].startswith(site), got
