"""Every chapter notebook follows docs/architecture.md's conventions (the notebooks are the source)."""
from __future__ import annotations

from pathlib import Path

import nbformat
import pytest

from bitcpm_validation.report.contents import all_chapters

ROOT = Path(__file__).resolve().parents[1]
CHAPTERS = [c for c in all_chapters() if c.notebook.is_file()]
# engine starts per chapter: loading 2 (the full shape's synthetic checkpoint + real), determinism 2 (restart), the others 1
ENGINE_STARTS = {"02_loading": 2, "03_inference": 1, "04_determinism": 2, "05_chinese": 1}


def test_every_registered_chapter_has_a_notebook():
    assert len(CHAPTERS) == len(all_chapters()) >= 12


@pytest.mark.parametrize("info", CHAPTERS, ids=lambda c: c.id)
def test_notebook_conventions(info):
    nb = nbformat.read(info.notebook, as_version=4)
    cells = nb.cells
    assert cells[0].cell_type == "markdown" and cells[0].source.strip() == f"# {info.heading()}"
    params = [c for c in cells if "parameters" in c.metadata.get("tags", [])]
    assert len(params) == 1
    assert 'params_path = "params/default.yaml"' in params[0].source and 'run_dir = "runs/lab"' in params[0].source
    code = [c for c in cells if c.cell_type == "code"]
    src = "\n".join(c.source for c in code)
    assert f'Chapter.open("{info.id}", params_path, run_dir)' in src
    assert "ch.finish()" in code[-1].source
    assert all(not c.get("outputs") and c.get("execution_count") is None for c in code), "commit without outputs"
    tags = {t for c in cells for t in c.metadata.get("tags", [])}
    assert {"lang-zh", "lang-en"} <= tags, "bilingual narrative: cells tagged lang-zh and lang-en"
    if info.id in ENGINE_STARTS:
        assert "eng.settings_rows()" in src and "prompting." in src
        assert src.count("engine.start(") + src.count("offline.start(") == ENGINE_STARTS[info.id]


@pytest.mark.parametrize("info", CHAPTERS + [c for c in [ROOT / "notebooks" / "00_summary.ipynb"] if c.is_file()],
                         ids=lambda c: getattr(c, "id", "00_summary"))
def test_no_name_is_used_before_a_cell_defines_it(info):
    """The cells read top to bottom as papermill runs them: a name used before any earlier cell binds it is a
    NameError on some host — often only there (a short-circuited `and` hides it where the left side is False)."""
    from pyflakes.api import check
    from pyflakes.reporter import Reporter
    import io

    path = getattr(info, "notebook", info)
    nb = nbformat.read(path, as_version=4)
    code = "\n".join("\n".join(ln for ln in c.source.splitlines() if not ln.lstrip().startswith(("%", "!")))
                     for c in nb.cells if c.cell_type == "code")
    out = io.StringIO()
    check(code, path.name, Reporter(out, io.StringIO()))
    undefined = [ln for ln in out.getvalue().splitlines() if "undefined name" in ln]
    assert not undefined, "\n".join(undefined)
