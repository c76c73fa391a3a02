"""The layout shows the architecture (issue 13): imports run one way, no private names cross modules, package data ships."""
from __future__ import annotations

import ast
from pathlib import Path

PKG = Path(__file__).resolve().parents[1] / "src" / "bitcpm_validation"


def _imports(path: Path) -> list[tuple[str, list[str]]]:
    """(module imported, names imported from it) for every import in a file, relative imports made absolute."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    here = ".".join(("bitcpm_validation",) + path.relative_to(PKG).with_suffix("").parts)
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            mod = node.module or ""
            if node.level:
                base = here.split(".")[: -node.level]
                mod = ".".join(base + ([mod] if mod else []))
            out.append((mod, [a.name for a in node.names]))
        elif isinstance(node, ast.Import):
            out += [(a.name, []) for a in node.names]
    return out


def _modules(sub: str) -> list[Path]:
    return sorted(p for p in (PKG / sub).rglob("*.py") if "remote_code" not in p.parts)


def test_engine_and_report_never_import_a_chapter():
    bad = [(str(p.relative_to(PKG)), m) for sub in ("engine", "report") for p in _modules(sub)
           for m, _ in _imports(p) if m.startswith("bitcpm_validation.chapters")]
    assert not bad, f"report/engine must not import chapter modules: {bad}"


def test_engine_never_imports_the_report_layer_internals():
    bad = [(str(p.relative_to(PKG)), m) for p in _modules("engine") for m, _ in _imports(p)
           if m.startswith("bitcpm_validation.report") and m not in ("bitcpm_validation.report.textsafe",)]
    assert not bad, f"engine modules reach into the report layer: {bad}"


def test_no_private_name_crosses_modules():
    bad = []
    for p in sorted(PKG.rglob("*.py")):
        if "remote_code" in p.parts:
            continue
        for mod, names in _imports(p):
            if mod.startswith("bitcpm_validation"):
                bad += [f"{p.relative_to(PKG)}: from {mod} import {n}" for n in names
                        if n.startswith("_") and not n.startswith("__")]
    assert not bad, "\n".join(bad)


def test_three_layers_and_the_model():
    for sub in ("chapters", "engine", "report", "model"):
        assert (PKG / sub / "__init__.py").is_file(), sub
    top = sorted(p.name for p in PKG.glob("*.py"))
    assert top == ["__init__.py", "__main__.py", "cli.py", "params.py", "paths.py"], top
