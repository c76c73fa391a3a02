"""The engine chapters' notebooks (02-05) follow docs/architecture.md and match their generator."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from bitcpm_validation.chapters import chapter

ROOT = Path(__file__).resolve().parents[1]
IDS = ["02_loading", "03_inference", "04_determinism", "05_chinese"]


@pytest.mark.parametrize("cid", IDS)
def test_notebook_conventions(cid):
    nb = nbformat.read(ROOT / "notebooks" / f"{cid}.ipynb", as_version=4)
    cells = nb.cells
    assert cells[0].cell_type == "markdown" and cells[0].source.strip() == f"# {chapter(cid).heading()}"
    params = [c for c in cells if "parameters" in c.metadata.get("tags", [])]
    assert len(params) == 1
    assert 'params_path = "params/default.yaml"' in params[0].source and 'run_dir = "runs/lab"' in params[0].source
    code = [c for c in cells if c.cell_type == "code"]
    assert f'Chapter.open("{cid}", params_path, run_dir)' in code[1].source
    assert "ch.finish()" in code[-1].source
    assert all(not c.get("outputs") and c.get("execution_count") is None for c in code), "commit without outputs"
    tags = {t for c in cells for t in c.metadata.get("tags", [])}
    assert {"lang-zh", "lang-en"} <= tags
    src = "\n".join(c.source for c in code)
    assert "engine.start(" in src and "eng.settings_rows()" in src and "prompting." in src
    assert "print(" not in src, "show untrusted text with textsafe helpers"
    # engine starts per chapter: loading 2 (dummy + real), determinism 2 (restart), the others 1
    assert src.count("engine.start(") == {"02_loading": 2, "04_determinism": 2}.get(cid, 1)


def test_generator_reproduces_notebooks(tmp_path):
    before = {i: (ROOT / "notebooks" / f"{i}.ipynb").read_text(encoding="utf-8") for i in IDS}
    subprocess.run([sys.executable, str(ROOT / "scripts" / "make_engine_notebooks.py"), str(tmp_path)], check=True,
                   capture_output=True)
    after = {i: (tmp_path / f"{i}.ipynb").read_text(encoding="utf-8") for i in IDS}
    assert before == after, "notebooks differ from scripts/make_engine_notebooks.py: regenerate and commit"
