"""Ask Linux for AMX tile state at interpreter start (see bitcpm_validation/engine/amx.py: vLLM's AMX attention
kernel never asks), then run the environment's own sitecustomize, if any. Standalone: no package import."""
import ctypes
import importlib.machinery
import importlib.util
import os
import sys

try:
    ctypes.CDLL(None, use_errno=True).syscall(158, 0x1023, 18)  # arch_prctl(ARCH_REQ_XCOMP_PERM, XTILEDATA)
except Exception:  # noqa: BLE001  never stop an interpreter from starting
    pass

_here = os.path.dirname(os.path.abspath(__file__))
_spec = importlib.machinery.PathFinder.find_spec(
    "sitecustomize", [p for p in sys.path if os.path.abspath(p or ".") != _here])
if _spec is not None and _spec.loader is not None:  # the environment's own sitecustomize still runs
    _env_site = importlib.util.module_from_spec(_spec)
    sys.modules["_environment_sitecustomize"] = _env_site
    _spec.loader.exec_module(_env_site)
