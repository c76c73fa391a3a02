"""engine.hostload on fake /proc snapshots: a busy host is recognised, an idle one is comparable (no real timing)."""
from __future__ import annotations

import dataclasses
import re
from pathlib import Path

from bitcpm_validation.engine import hostload as H

RUNNER, KERNEL, SERVER, BUSY, SHELL = 100, 101, 102, 200, 50


def _stat(pid: int, comm: str, ppid: int, utime: int, stime: int, cutime: int = 0, cstime: int = 0) -> str:
    # pid (comm) state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime stime cutime cstime ...
    return (f"{pid} ({comm}) R {ppid} {pid} {pid} 0 -1 4194304 0 0 0 0 {utime} {stime} {cutime} {cstime} 20 0 1 0 "
            f"1 0 0\n")


def fake_proc(root: Path, procs: dict[int, tuple[str, int, int]], total: int, steal: int = 0, load: float = 1.0) -> Path:
    """A directory laid out like /proc: {pid: (comm, ppid, ticks)}, /proc/stat's cpu line, /proc/loadavg."""
    root.mkdir(parents=True, exist_ok=True)
    for pid, (comm, ppid, ticks) in procs.items():
        (root / str(pid)).mkdir(exist_ok=True)
        (root / str(pid) / "stat").write_text(_stat(pid, comm, ppid, ticks - ticks // 3, ticks // 3))
    idle = total - steal
    (root / "stat").write_text(f"cpu  0 0 0 {idle} 0 0 0 {steal} 0 0\ncpu0 0 0 0 0 0 0 0 0 0 0\n")
    (root / "loadavg").write_text(f"{load} 1.0 1.0 2/300 {max(procs)}\n")
    return root


def _pair(tmp_path, other_ticks_after: int, steal_after: int = 0, seconds: float = 10.0):
    before = H.snapshot(fake_proc(tmp_path / "a", {
        SHELL: ("bash", 1, 5), RUNNER: ("python", SHELL, 100), KERNEL: ("python", RUNNER, 50),
        SERVER: ("vllm", RUNNER, 1000), BUSY: ("python", SHELL, 0)}, total=0))
    after = H.snapshot(fake_proc(tmp_path / "b", {
        SHELL: ("bash", 1, 5), RUNNER: ("python", SHELL, 150), KERNEL: ("python", RUNNER, 700),
        SERVER: ("vllm", RUNNER, 2900), BUSY: ("python", SHELL, other_ticks_after)},
        total=2 * 100 * int(seconds), steal=steal_after, load=2.5))
    return dataclasses.replace(before, hz=100), dataclasses.replace(after, at=before.at + seconds, hz=100)


def test_parse_stat_keeps_a_command_name_with_spaces_and_parentheses():
    assert H.parse_stat(_stat(7, "a (b) c", 3, 11, 4)) == (7, "a (b) c", 3, 15, False)
    assert H.parse_stat(_stat(7, "x", 3, 11, 4, 100, 20)) == (7, "x", 3, 135, False)  # reaped children's time too
    kthread = _stat(42, "kworker/u8:2", 2, 5, 5).replace(" 4194304 ", f" {H.PF_KTHREAD | 0x40} ")
    assert H.parse_stat(kthread)[4] is True
    assert H.parse_stat("garbage") is None


def test_descendants_follow_ppid():
    ps = {p: H.Proc(p, pp, "x", 0) for p, pp in [(1, 0), (10, 1), (11, 10), (12, 11), (20, 1)]}
    assert H.descendants(ps, [10]) == {10, 11, 12}


def test_a_core_kept_busy_by_another_process_makes_the_host_busy(tmp_path):
    # the other process used 9 of 10 s on one core; the run's own server and kernel used far more: not counted
    before, after = _pair(tmp_path, other_ticks_after=900)
    load = H.between(before, after, roots=[RUNNER], cores=2)
    assert abs(load.other_cores - 0.9) < 1e-9 and load.busiest[0][1] == BUSY
    v = H.judge(load, busy_cores=0.25, max_steal_share=0.05)
    assert not v.comparable
    assert v.reason_en.startswith("host busy: other processes used 0.90 of 2 cores") and "主机繁忙" in v.reason_zh


def test_an_idle_host_is_comparable(tmp_path):
    before, after = _pair(tmp_path, other_ticks_after=10)  # 0.1 s in 10 s: 0.01 cores
    load = H.between(before, after, roots=[RUNNER], cores=2)
    assert load.other_cores < 0.25 and load.steal_share == 0
    v = H.judge(load, busy_cores=0.25, max_steal_share=0.05)
    assert v.comparable and v.reason_en.startswith("quiet host")


def test_stolen_time_makes_a_vm_busy(tmp_path):
    before, after = _pair(tmp_path, other_ticks_after=0, steal_after=400)  # 400 of 2,000 jiffies stolen: 20 %
    load = H.between(before, after, roots=[RUNNER], cores=2)
    v = H.judge(load, busy_cores=0.25, max_steal_share=0.05)
    assert not v.comparable and "hypervisor took 20.0 %" in v.reason_en


def test_a_process_started_during_the_window_counts_all_its_time(tmp_path):
    before, after = _pair(tmp_path, other_ticks_after=0)
    extra = dict(after.procs)
    extra[300] = H.Proc(300, SHELL, "make", 500)  # not in the first snapshot: 5 s
    load = H.between(before, dataclasses.replace(after, procs=extra), roots=[RUNNER], cores=2)
    assert abs(load.other_cpu_s - 5.0) < 1e-9


def test_a_short_lived_process_counts_through_the_parent_that_reaped_it(tmp_path):
    before, after = _pair(tmp_path, other_ticks_after=0)
    procs = dict(after.procs)
    # the shell outside the run reaped a child that ran 6 s between the snapshots (gone from the second one)
    procs[SHELL] = H.Proc(SHELL, 1, "bash", before.procs[SHELL].ticks + 600)
    load = H.between(before, dataclasses.replace(after, procs=procs), roots=[RUNNER], cores=2)
    assert abs(load.other_cpu_s - 6.0) < 1e-9 and not H.judge(load, 0.25, 0.05).comparable


def test_a_process_that_ended_counts_only_its_time_inside_the_window(tmp_path):
    before, after = _pair(tmp_path, other_ticks_after=0)
    # a job outside the run had used 100 s before the window and 2 s inside it when it ended; its parent, the
    # shell, reaped it: the shell's cutime grows by the job's whole life (102 s)
    b = dict(before.procs)
    b[400] = H.Proc(400, SHELL, "make", 10_000)
    a = dict(after.procs)
    a[SHELL] = H.Proc(SHELL, 1, "bash", before.procs[SHELL].ticks + 10_200)
    load = H.between(dataclasses.replace(before, procs=b), dataclasses.replace(after, procs=a), roots=[RUNNER], cores=2)
    assert abs(load.other_cpu_s - 2.0) < 1e-9 and H.judge(load, 0.25, 0.05).comparable  # 0.2 of a core


def test_kernel_threads_are_reported_apart(tmp_path):
    before, after = _pair(tmp_path, other_ticks_after=0)
    procs = dict(after.procs)
    procs[42] = H.Proc(42, 2, "kworker/u8:2-writeback", 300, kernel=True)  # writeback of the files the run wrote
    load = H.between(before, dataclasses.replace(after, procs=procs), roots=[RUNNER], cores=2)
    assert load.other_cpu_s == 0 and abs(load.kernel_cpu_s - 3.0) < 1e-9 and H.judge(load, 0.25, 0.05).comparable


def test_the_run_root_is_the_exported_runner_pid(monkeypatch):
    monkeypatch.setenv(H.RUN_ROOT_ENV, "4242")
    assert H.run_root() == 4242
    monkeypatch.delenv(H.RUN_ROOT_ENV)
    assert H.run_root() > 0


def test_the_real_proc_can_be_read():
    s = H.snapshot()
    assert s.procs and s.cpu_total > 0


def test_busiest_process_names_are_marked_as_data():
    """Process names ("memfd:sealed-91", "process_api") are the host's data: backquoted in both languages, so the
    report shows them as code and the Chinese text carries no English words of its own."""
    load = H.HostLoad(seconds=3.0, cores=2, other_cpu_s=3.0, other_cores=1.0, steal_share=None, load_1min=None,
                      busiest=[("memfd:sealed-91", 1227, 2.5)])
    v = H.judge(load, 0.25, 0.05)
    assert not v.comparable
    assert "`memfd:sealed-91` (pid 1227)" in v.reason_en and "`memfd:sealed-91`（进程号 1227）" in v.reason_zh
    from rendered_text import english_words  # the Chinese reason has no English word outside its code spans

    assert english_words("<p>" + re.sub(r"`[^`]*`", "", v.reason_zh) + "</p>") == {}


def test_a_note_shows_backquoted_spans_as_code_and_escapes_the_rest():
    from bitcpm_validation.report.display import note_html

    assert note_html("busiest: `memfd:sealed-91` <b>") == "busiest: <code>memfd:sealed-91</code> &lt;b&gt;"
