"""The chapters' Jupyter kernels, each started while the chapter before it runs.

A chapter's kernel takes about a second to start and its imports (torch, transformers, matplotlib, the chapter's
module) a few more. Started ahead, with the chapter's own top-level import statements run silently, that time
overlaps the previous chapter. Nothing else runs ahead: the chapter's parameters, code and engines run when
papermill executes it, in that kernel. The runner starts no kernel ahead while the benchmark chapter runs (the
benchmarks have the host to themselves).

    warm = WarmKernel(next_notebook, kernel_name, cwd)   # while the current chapter runs
    km = warm.take()                                     # the started kernel, or None: papermill starts one
"""
from __future__ import annotations

import ast
import asyncio
import contextlib
import json
import threading
from pathlib import Path
from typing import Any, Optional

# vLLM reads its environment when imported, and the chapters set that environment before they start an engine
NOT_AHEAD = ("vllm",)


def import_statements(notebook: Path) -> str:
    """The top-level import statements of a notebook's code cells (not its parameters cell), in order, once
    each; none of NOT_AHEAD's packages. A cell Python cannot parse (IPython syntax) contributes none."""
    nb = json.loads(Path(notebook).read_text(encoding="utf-8"))
    out: list[str] = []
    for cell in nb.get("cells", []):
        if cell.get("cell_type") != "code" or "parameters" in cell.get("metadata", {}).get("tags", []):
            continue
        source = cell.get("source", "")
        try:
            tree = ast.parse(source if isinstance(source, str) else "".join(source))
        except SyntaxError:
            continue
        for node in tree.body:
            if isinstance(node, ast.Import):
                modules = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and not node.level:
                modules = [node.module or ""]
            else:
                continue
            if not any(m.split(".")[0] in NOT_AHEAD for m in modules):
                out.append(ast.unparse(node))
    return "\n".join(dict.fromkeys(out))


class WarmKernel:
    """A notebook's kernel, started now, its import statements run in a thread (silently: no output, no
    execution count). An asyncio kernel manager, as papermill's own: its client's waits stay interruptible
    (a blocking client's poll would hold the runner's thread through a Ctrl-C)."""

    def __init__(self, notebook: Path, kernel_name: str, cwd: Path, timeout_s: float = 300.0):
        from jupyter_client.manager import AsyncKernelManager

        self.notebook = Path(notebook)
        self.error: Optional[str] = None
        self._timeout = timeout_s
        self.km = AsyncKernelManager(kernel_name=kernel_name)
        asyncio.run(self.km.start_kernel(cwd=str(cwd)))
        self._thread = threading.Thread(target=lambda: asyncio.run(self._warm(import_statements(self.notebook))),
                                        daemon=True, name=f"kernel for {self.notebook.stem}")
        self._thread.start()

    @property
    def pid(self) -> Optional[int]:
        return getattr(getattr(self.km.provisioner, "process", None), "pid", None)

    async def _warm(self, code: str) -> None:
        kc = self.km.client()
        try:
            kc.start_channels()
            await kc.wait_for_ready(timeout=self._timeout)
            if code:
                reply = await kc.execute_interactive(code, silent=True, store_history=False, timeout=self._timeout)
                if reply["content"].get("status") != "ok":
                    self.error = f"{reply['content'].get('ename')}: {reply['content'].get('evalue')}"
        except Exception as err:  # noqa: BLE001  (a kernel that is not ready: the chapter starts its own)
            self.error = f"{type(err).__name__}: {err}"
        finally:
            kc.stop_channels()

    def take(self) -> Optional[Any]:
        """The started kernel's manager once its imports ran, or None where they failed or it died (the chapter
        then gets a fresh kernel from papermill, where the same import fails in the chapter's own output)."""
        self._thread.join(self._timeout)
        if self._thread.is_alive() or self.error or not alive(self.km):
            self.shutdown()
            return None
        return self.km

    def shutdown(self) -> None:
        stop(self.km, now=True)


def alive(km: Any) -> bool:
    try:
        return bool(asyncio.run(km.is_alive()))
    except Exception:  # noqa: BLE001
        return False


def stop(km: Any, now: bool = False) -> None:
    """Shut a kernel down (gracefully unless `now`); one already gone is no error. Not from inside an event loop."""
    with contextlib.suppress(Exception):
        asyncio.run(km.shutdown_kernel(now=now))
