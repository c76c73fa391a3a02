"""The host's other load during a measurement, from /proc: is a timing valid, or was the host busy?

A benchmark is comparable only if the machine ran little else meanwhile (MLPerf: a run whose run rules did not
hold is invalid, not slow). Two snapshots of /proc, before and after, give:

- the CPU time of every process outside the run's own process tree, as far as this process's PID namespace
  shows them: utime + stime, plus cutime + cstime (the time of children it reaped), so that a process that
  started and ended between the snapshots still counts, through its parent; processes that exist in the second
  snapshot count their time since the first (all of it when they started in between), and the time a process
  that ended in between had already used at the first snapshot is taken off again (its parent's cutime brings
  its whole life in). The run's tree is every
  process descended from `roots` (the runner, or the notebook kernel's parent outside a run). Kernel threads
  (PF_KTHREAD in /proc/<pid>/stat's flags) are reported apart and not counted: their work (writeback, memory
  scanning) is mostly on behalf of the processes, the run's included;
- the share of CPU time stolen by the hypervisor (/proc/stat `steal`, a VM's neighbours);
- the 1-minute load average at the end (context only: it counts the run's own processes too).

    before = hostload.snapshot()
    ... the benchmark ...
    load = hostload.between(before, hostload.snapshot(), roots=[hostload.run_root()], cores=2)
    verdict = hostload.judge(load, busy_cores=0.25, max_steal_share=0.05)   # .comparable, .reason (T)

`snapshot(proc=...)` reads any directory laid out like /proc, so tests feed it fake snapshots.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Optional

# where a runner exports its pid, a chapter knows the root of the run's tree (else: the kernel's parent, the runner)
RUN_ROOT_ENV = "BITCPM_RUN_PID"
PF_KTHREAD = 0x00200000  # include/linux/sched.h: the task is a kernel thread


@dataclass(frozen=True)
class Proc:
    pid: int
    ppid: int
    comm: str
    ticks: int  # utime + stime + cutime + cstime (its own and its reaped children's CPU time), in clock ticks
    kernel: bool = False  # a kernel thread (PF_KTHREAD)


@dataclass(frozen=True)
class Snapshot:
    at: float  # time.monotonic() of the reading
    procs: dict[int, Proc]
    cpu_total: int  # all jiffies of /proc/stat's "cpu" line
    cpu_steal: int
    load_1min: Optional[float]
    hz: int = 100


def _read(path: Path) -> Optional[str]:
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError:  # a process that exited between listing and reading, or a hidden one
        return None


def parse_stat(text: str) -> Optional[tuple[int, str, int, int, bool]]:
    """(pid, comm, ppid, utime + stime + cutime + cstime, is a kernel thread) of one /proc/<pid>/stat line (comm
    may hold spaces and parentheses)."""
    try:
        head, rest = text.split(" (", 1)
        comm, tail = rest.rsplit(") ", 1)
        f = tail.split()
        # after comm: state ppid pgrp session tty_nr tpgid flags minflt cminflt majflt cmajflt utime stime cutime cstime
        return (int(head), comm, int(f[1]), int(f[11]) + int(f[12]) + int(f[13]) + int(f[14]),
                bool(int(f[6]) & PF_KTHREAD))
    except (ValueError, IndexError):
        return None


def snapshot(proc: str | Path = "/proc") -> Snapshot:
    """Every visible process's CPU ticks and parent, /proc/stat's total and steal jiffies, /proc/loadavg."""
    root = Path(proc)
    procs: dict[int, Proc] = {}
    for d in root.iterdir() if root.is_dir() else ():
        if not d.name.isdigit():
            continue
        text = _read(d / "stat")
        parsed = parse_stat(text) if text else None
        if parsed:
            pid, comm, ppid, ticks, kernel = parsed
            procs[pid] = Proc(pid, ppid, comm, ticks, kernel)
    total = steal = 0
    for line in (_read(root / "stat") or "").splitlines():
        if line.startswith("cpu "):
            nums = [int(x) for x in line.split()[1:]]
            total = sum(nums[:8])  # user nice system idle iowait irq softirq steal (guest is inside user)
            steal = nums[7] if len(nums) > 7 else 0
            break
    load = None
    la = (_read(root / "loadavg") or "").split()
    if la:
        try:
            load = float(la[0])
        except ValueError:
            load = None
    try:
        hz = os.sysconf("SC_CLK_TCK")
    except (ValueError, OSError, AttributeError):
        hz = 100
    return Snapshot(time.monotonic(), procs, total, steal, load, hz)


def descendants(procs: dict[int, Proc], roots: Iterable[int]) -> set[int]:
    """The pids of `roots` and of every process below them (by ppid) in one snapshot."""
    children: dict[int, list[int]] = {}
    for p in procs.values():
        children.setdefault(p.ppid, []).append(p.pid)
    out: set[int] = set()
    todo = [r for r in roots if r]
    while todo:
        pid = todo.pop()
        if pid in out:
            continue
        out.add(pid)
        todo.extend(children.get(pid, ()))
    return out


def run_root() -> int:
    """The root of the run's process tree: the runner's pid (exported to the chapter kernels), else this process's
    parent (a kernel started by JupyterLab or papermill: its siblings are the run), else this process."""
    env = os.environ.get(RUN_ROOT_ENV, "")
    if env.isdigit():
        return int(env)
    return os.getppid() or os.getpid()


@dataclass(frozen=True)
class HostLoad:
    """What else the host did between two snapshots."""

    seconds: float
    cores: int
    other_cpu_s: float  # CPU seconds of processes outside the run's tree
    other_cores: float  # ... per second of wall time: how many cores they kept busy on average
    steal_share: Optional[float]  # share of all CPU time the hypervisor took (None: no /proc/stat)
    load_1min: Optional[float]
    busiest: list[tuple[str, int, float]] = field(default_factory=list)  # (comm, pid, CPU s incl. children it reaped), top 3
    kernel_cpu_s: float = 0.0  # kernel threads (not counted: mostly work on behalf of processes)

    def to_data(self) -> dict:
        return {"seconds": round(self.seconds, 2), "cores": self.cores, "other_cpu_s": round(self.other_cpu_s, 2),
                "other_cores": round(self.other_cores, 3),
                "steal_share": None if self.steal_share is None else round(self.steal_share, 4),
                "load_1min": self.load_1min, "busiest": [list(b) for b in self.busiest],
                "kernel_cpu_s": round(self.kernel_cpu_s, 2)}


def between(before: Snapshot, after: Snapshot, roots: Iterable[int], cores: int) -> HostLoad:
    """The load of processes outside the run's tree (descendants of `roots` in either snapshot) between two snapshots."""
    roots = list(roots)
    mine = descendants(before.procs, roots) | descendants(after.procs, roots)
    seconds = max(after.at - before.at, 1e-9)
    other: list[tuple[str, int, float]] = []
    kernel_s = 0.0
    for pid, p in after.procs.items():
        if pid in mine:
            continue
        old = before.procs.get(pid)
        # a pid reused by another program started in between: count the new one from zero
        start = old.ticks if old is not None and old.comm == p.comm and old.ticks <= p.ticks else 0
        cpu = (p.ticks - start) / after.hz
        if p.kernel:
            kernel_s += max(cpu, 0.0)
        elif cpu > 0:
            other.append((p.comm, pid, cpu))
    # a process seen at the first snapshot and gone at the second came back in full through its reaper's cutime:
    # its time before the window is not the window's
    gone = sum(p.ticks for pid, p in before.procs.items()
               if pid not in after.procs and pid not in mine and not p.kernel) / after.hz
    other_s = max(sum(c for _, _, c in other) - gone, 0.0)
    d_total = after.cpu_total - before.cpu_total
    steal = (after.cpu_steal - before.cpu_steal) / d_total if d_total > 0 else None
    busiest = sorted(other, key=lambda x: -x[2])[:3]
    return HostLoad(seconds, max(int(cores), 1), other_s, other_s / seconds, steal, after.load_1min,
                    [(c, pid, round(s, 2)) for c, pid, s in busiest], kernel_s)


@dataclass(frozen=True)
class Validity:
    comparable: bool
    reason_en: str
    reason_zh: str


def judge(load: HostLoad, busy_cores: float, max_steal_share: float) -> Validity:
    """Comparable unless other processes used more than `busy_cores` cores on average, or the hypervisor stole more
    than `max_steal_share` of the CPU time. The reason names the figures (and the busiest other processes)."""
    # process names are data (code); the pid's word in each language
    who = ", ".join(f"`{c}` (pid {pid}) {s:.1f} s" for c, pid, s in load.busiest)
    who_zh = "，".join(f"`{c}`（进程号 {pid}）{s:.1f} s" for c, pid, s in load.busiest)
    steal = "" if load.steal_share is None else f", steal {100 * load.steal_share:.1f} %"
    facts_en = (f"other processes used {load.other_cores:.2f} of {load.cores} cores over {load.seconds:.0f} s"
                f"{steal}" + (f"; busiest: {who}" if who else ""))
    facts_zh = (f"其他进程在 {load.seconds:.0f} s 内平均占用 {load.cores} 个核心中的 {load.other_cores:.2f} 个"
                + ("" if load.steal_share is None else f"，虚拟机被宿主抢占的 CPU 时间 {100 * load.steal_share:.1f} %")
                + (f"；占用最多：{who_zh}" if who_zh else ""))
    if load.other_cores > busy_cores:
        return Validity(False, f"host busy: {facts_en} (more than {busy_cores:g})",
                        f"主机繁忙：{facts_zh}（超过 {busy_cores:g} 个）")
    if load.steal_share is not None and load.steal_share > max_steal_share:
        return Validity(False, f"host busy: the hypervisor took {100 * load.steal_share:.1f} % of the CPU time "
                               f"(more than {100 * max_steal_share:g} %); {facts_en}",
                        f"主机繁忙：虚拟机监控程序占用了 {100 * load.steal_share:.1f} % 的 CPU 时间"
                        f"（超过 {100 * max_steal_share:g} %）；{facts_zh}")
    return Validity(True, f"quiet host: {facts_en}", f"主机空闲：{facts_zh}")
