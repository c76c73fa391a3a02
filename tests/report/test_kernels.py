"""report.kernels: the next chapter's kernel started ahead, with its own import statements run silently."""
from __future__ import annotations

import nbformat

from bitcpm_validation.report import kernels
from bitcpm_validation.report.runner import kernel_name
from bitcpm_validation.paths import PROJECT_ROOT


def _notebook(path, *sources, params="params_path = None"):
    nb = nbformat.v4.new_notebook()
    p = nbformat.v4.new_code_cell(params)
    p.metadata["tags"] = ["parameters"]
    nb.cells = [p, nbformat.v4.new_markdown_cell("import not_code"), *map(nbformat.v4.new_code_cell, sources)]
    nbformat.write(nb, path)
    return path


def test_import_statements_are_the_top_level_imports_without_vllm(tmp_path):
    nb = _notebook(tmp_path / "c.ipynb",
                   "import json, os\nfrom pathlib import Path\nch = open_chapter()\nimport vllm\nfrom vllm import LLM",
                   "if full:\n    from bitcpm_validation.model import synthetic\nfrom . import sibling\nimport json, os",
                   "%matplotlib inline\nimport never_seen",
                   params="import params_only")
    assert kernels.import_statements(nb).splitlines() == ["import json, os", "from pathlib import Path"]


def test_every_chapter_notebook_has_imports_to_run_ahead():
    for nb in sorted((PROJECT_ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        code = kernels.import_statements(nb)
        assert "bitcpm_validation" in code and "vllm" not in code.replace("bitcpm_validation", ""), nb.name
        compile(code, nb.name, "exec")


def test_a_warm_kernel_has_run_the_imports_and_a_failing_one_is_not_used(tmp_path):
    ok = kernels.WarmKernel(_notebook(tmp_path / "ok.ipynb", "import colorsys"), kernel_name(), tmp_path)
    bad = kernels.WarmKernel(_notebook(tmp_path / "bad.ipynb", "import no_such_module_xyz"), kernel_name(), tmp_path)
    km = ok.take()
    try:
        assert km is not None and kernels.alive(km) and ok.pid
        from jupyter_client.manager import KernelManager

        kc = KernelManager(connection_file=km.connection_file)  # a blocking client of the same kernel
        kc.load_connection_file()
        kc = kc.client()
        kc.start_channels()
        try:
            kc.wait_for_ready(timeout=60)
            seen = []
            reply = kc.execute_interactive("import sys, os; print('colorsys' in sys.modules, os.getcwd())", timeout=60,
                                           output_hook=lambda m: seen.append(m["content"].get("text", "")))
            assert reply["content"]["status"] == "ok" and "".join(seen).split() == ["True", str(tmp_path)]
            assert reply["content"]["execution_count"] == 1  # the imports ran silently: no count taken
        finally:
            kc.stop_channels()
    finally:
        ok.shutdown()
    assert not kernels.alive(km)
    assert bad.take() is None and "no_such_module_xyz" in bad.error and not kernels.alive(bad.km)
