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
    assert top == ["__init__.py", "__main__.py", "cli.py", "files.py", "params.py", "paths.py"], top


# -- the import graph ----------------------------------------------------------------------------------------
def _module_name(path: Path) -> str:
    parts = ("bitcpm_validation",) + path.relative_to(PKG).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _all_modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(PKG.rglob("*.py")) if "remote_code" not in p.parts}


def _edges(path: Path, known: dict[str, Path]) -> list[tuple[str, bool, int]]:
    """(package module imported, whether the import sits inside a function, line) for every import of a
    package module in a file; `from pkg import mod` imports the submodule mod. Relative imports made absolute."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    out: list[tuple[str, bool, int]] = []

    def visit(node: ast.AST, local: bool) -> None:
        for child in ast.iter_child_nodes(node):
            inside = local or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            if isinstance(child, ast.ImportFrom):
                mod = child.module or ""
                if child.level:
                    base = package.split(".")
                    base = base[: len(base) - (child.level - 1)]
                    mod = ".".join(base + ([mod] if mod else []))
                for a in child.names:
                    target = f"{mod}.{a.name}" if f"{mod}.{a.name}" in known else mod
                    if target in known:
                        out.append((target, inside, child.lineno))
            elif isinstance(child, ast.Import):
                out.extend((a.name, inside, child.lineno) for a in child.names if a.name in known)
            visit(child, inside)

    visit(ast.parse(path.read_text(encoding="utf-8")), False)
    return [e for e in out if e[0] != name]


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def connect(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            connect(v)
    return found


def test_cycle_finder_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycle():
    """No cycle among the package's modules, counting function-local imports too: a function-local import that
    only dodges a cycle (hoisted to the top of its file it would close one) is an edge of a cycle here."""
    known = _all_modules()
    graph = {m: {t for t, _, _ in _edges(p, known)} for m, p in known.items()}
    cycles = _cycles(graph)
    assert not cycles, f"import cycles (modules that import each other, directly or round about): {cycles}"


# Libraries that take 0.3 s or more to import here (measured with `python -c "import X"` against a bare interpreter):
# a function-local import that keeps one of them out of a module's import is a reason, the only one.
HEAVY = frozenset({"vllm", "torch", "transformers", "tokenizers", "sentencepiece", "safetensors", "scipy", "numpy",
                   "matplotlib", "lm_eval", "datasets", "pandas", "papermill", "nbformat", "nbconvert", "openai",
                   "requests", "jieba", "wordfreq", "lingua", "playwright", "huggingface_hub", "modelscope"})
# The engine, the model and the base (params, paths, files): every function-local import here must defer something
# heavy. (chapters/, report/ and the CLI still hold function-local imports kept for brevity; not yet checked.)
DEFER_ONLY = ("bitcpm_validation.engine", "bitcpm_validation.model", "bitcpm_validation.params",
              "bitcpm_validation.paths", "bitcpm_validation.files")


def _module_level_libraries(path: Path) -> set[str]:
    """Top-level names of the non-package libraries a file imports outside functions."""
    out: set[str] = set()

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
                continue
            if isinstance(child, ast.ImportFrom) and not child.level and child.module:
                out.add(child.module.split(".")[0])
            elif isinstance(child, ast.Import):
                out.update(a.name.split(".")[0] for a in child.names)
            visit(child)

    visit(ast.parse(path.read_text(encoding="utf-8")))
    return out - {"bitcpm_validation"}


def test_function_local_imports_in_the_engine_and_model_layers_defer_a_heavy_library():
    """A function-local import of a package module in engine/, model/ or the base (DEFER_ONLY) is allowed only where importing it at module
    level would load a library in HEAVY that the importing module does not load already (its module-level imports,
    followed through the package's modules and their parent packages). Any other one goes to the top of the file."""
    known = _all_modules()
    edges = {m: _edges(p, known) for m, p in known.items()}
    libs = {m: _module_level_libraries(p) for m, p in known.items()}

    def loads(module: str) -> set[str]:
        seen, todo = set(), [module]
        while todo:
            m = todo.pop()
            if m in seen:
                continue
            seen.add(m)
            parts = m.split(".")
            todo += [".".join(parts[:i]) for i in range(1, len(parts)) if ".".join(parts[:i]) in known]
            todo += [t for t, local, _ in edges[m] if not local]
        return set().union(*(libs[m] for m in seen))

    bad = [f"{known[m].relative_to(PKG)}:{line}: {t} (defers nothing in HEAVY)"
           for m in sorted(known) if m.startswith(DEFER_ONLY)
           for t, local, line in edges[m] if local and not ((loads(t) - loads(m)) & HEAVY)]
    assert not bad, "function-local imports that defer no heavy library:\n" + "\n".join(bad)


# The layers of docs/architecture.md, top to bottom; a module imports its own layer or those below it.
LAYERS = ("cli", "chapters", "report", "engine", "model", "base")
BASE = ("bitcpm_validation.params", "bitcpm_validation.paths", "bitcpm_validation.files", "bitcpm_validation.tasks",
        "bitcpm_validation")
# the one import downwards-looking but upwards in the picture: params reads what a model directory declares
ALLOWED_UP = {("bitcpm_validation.params", "bitcpm_validation.model.weights_kind")}


def _layer(module: str) -> str:
    if module in ("bitcpm_validation.cli", "bitcpm_validation.__main__"):
        return "cli"
    if module in BASE or module.startswith("bitcpm_validation.tasks."):
        return "base"
    return module.split(".")[1]


def test_each_layer_imports_only_itself_and_the_layers_below():
    known = _all_modules()
    rank = {name: i for i, name in enumerate(LAYERS)}
    bad = [f"{known[m].relative_to(PKG)}:{line}: {t} ({_layer(m)} imports {_layer(t)})"
           for m in sorted(known) for t, _, line in _edges(known[m], known)
           if rank[_layer(t)] < rank[_layer(m)] and (m, t) not in ALLOWED_UP]
    assert not bad, "imports upwards:\n" + "\n".join(bad)
