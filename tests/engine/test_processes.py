"""Process controls: stopping a server's tree leaves none of its processes and none of its shared memory."""
from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import psutil
import pytest

from bitcpm_validation.engine import processes

# creates a POSIX shared-memory segment (as vLLM's message queues do), ignores SIGTERM, and keeps running
HOLDS_SHARED_MEMORY = textwrap.dedent("""
    import signal, time
    from multiprocessing import shared_memory
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    seg = shared_memory.SharedMemory(create=True, size=1 << 16)
    seg.buf[:4] = b"ring"
    print(seg.name, flush=True)
    time.sleep(600)
""")


@pytest.mark.skipif(not Path("/proc/self/maps").exists() or not Path("/dev/shm").is_dir(),
                    reason="Linux /proc and /dev/shm only")
def test_a_killed_tree_leaves_no_shared_memory():
    """SIGKILL also kills the resource tracker that would unlink the segment: stop_tree removes it."""
    proc = subprocess.Popen([sys.executable, "-c", HOLDS_SHARED_MEMORY], stdout=subprocess.PIPE, text=True,
                            start_new_session=True)
    segment = Path("/dev/shm") / proc.stdout.readline().strip()
    assert segment.exists() and str(segment) in processes.shm_files([proc.pid])
    processes.stop_tree(proc, timeout=0.5)
    assert proc.returncode == -9
    assert not segment.exists(), f"{segment} left behind"
    assert not processes.shm_files([proc.pid])  # gone: nothing mapped


def test_shm_files_of_no_process_is_empty():
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    assert processes.shm_files([dead.pid]) == set()
    assert processes.shm_files([]) == set()
    assert all(p.startswith("/dev/shm/") for p in processes.shm_files([psutil.Process().pid]))
