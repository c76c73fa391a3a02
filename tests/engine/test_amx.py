"""engine.amx: Linux's AMX permission asked before vLLM's AMX kernels run (they never ask: SIGILL otherwise)."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from bitcpm_validation.engine import amx, hostcpu

ASK = ("import sys; sys.path.insert(0, {src!r}); from bitcpm_validation.engine import amx; "
       "print('permitted', amx.permitted())")


def test_applies_only_to_linux_x86_64_with_amx_tiles():
    assert amx.applies({"amx_tile", "amx_bf16"}, "linux", "x86_64")
    assert not amx.applies({"avx512f", "avx512_bf16"}, "linux", "x86_64")  # AVX-512 BF16 without AMX
    assert not amx.applies({"amx_tile"}, "linux", "aarch64")
    assert not amx.applies({"amx_tile"}, "darwin", "x86_64")


def test_prepare_puts_the_site_dir_first_once_and_keeps_the_path():
    env = {"PYTHONPATH": os.pathsep.join(["/a", str(amx.SITE_DIR), "/b"])}
    note = amx.prepare(env, {"amx_tile"}) if amx.applies({"amx_tile"}) else None
    if note is None:
        pytest.skip("not Linux x86_64: nothing to prepare")
    assert env["PYTHONPATH"].split(os.pathsep) == [str(amx.SITE_DIR), "/a", "/b"]
    assert "AMX tile permission requested" in note
    assert amx.prepare({}, {"avx2"}) is None


@pytest.mark.skipif(not amx.applies(hostcpu.cpu_flags()), reason="this CPU has no AMX tiles")
def test_spawned_interpreters_ask_through_the_site_dir(tmp_path):
    """A fresh interpreter (as vLLM spawns its engine core and worker) does not inherit the permission; with the
    site dir on PYTHONPATH it has it, and the environment's own sitecustomize still runs."""
    src = str(amx.SITE_DIR.parents[2])
    own = tmp_path / "own_site"
    own.mkdir()
    (own / "sitecustomize.py").write_text("import os\nos.environ['OWN_SITECUSTOMIZE_RAN'] = '1'\n")
    code = ASK.format(src=src) + "; import os; print('own', os.environ.get('OWN_SITECUSTOMIZE_RAN'))"
    plain = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    without = subprocess.run([sys.executable, "-c", code], env={**plain, "PYTHONPATH": str(own)},
                             capture_output=True, text=True, check=True).stdout
    env = {**plain, "PYTHONPATH": str(own)}
    amx.prepare(env, hostcpu.cpu_flags())
    with_site = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert "permitted False" in without and "own 1" in without
    assert "permitted True" in with_site.stdout and "own 1" in with_site.stdout, with_site
    assert with_site.stderr == ""


BF16_FIRST_REQUEST = """
import sys
from pathlib import Path
from bitcpm_validation.engine import offline
from bitcpm_validation.params import load_params
from bitcpm_validation.paths import PROJECT_ROOT
params = load_params(PROJECT_ROOT / "params" / "default.yaml")
eng = offline.start(params, Path(sys.argv[1]), fresh=True, why="restart", dtype="bfloat16")
try:
    print("tokens", eng.generate([[1, 5, 6]], max_tokens=4, ignore_eos=True)[0].token_ids, flush=True)
finally:
    eng.close()
"""


@pytest.mark.engine
@pytest.mark.parametrize("mode_flag", ["0", "1"], ids=["in-process", "multiprocess"])
@pytest.mark.skipif(not amx.applies(hostcpu.cpu_flags()), reason="this CPU has no AMX tiles")
def test_a_bf16_engine_answers_its_first_short_request_on_an_amx_host(tmp_path, mode_flag):
    """The stand-in in BF16 picks vLLM's AMX attention kernel; without the permission its first 3-token request died
    with SIGILL (rc -4) on this project's AMX host, in the kernel (in-process) or in vLLM's worker (multiprocess)."""
    from bitcpm_validation.engine import startup

    (tmp_path / "evidence").mkdir()
    log = tmp_path / "evidence" / "04_determinism.log"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env[startup.MODE_ENV] = mode_flag
    p = subprocess.run([sys.executable, "-c", BF16_FIRST_REQUEST, str(log)], env=env, capture_output=True, text=True,
                       timeout=600)
    assert p.returncode == 0, (p.returncode, p.stderr[-2000:])
    assert "tokens [" in p.stdout and len(p.stdout.split("tokens [")[1].split(",")) == 4
    assert "[amx] Linux AMX tile permission requested" in log.read_text()
