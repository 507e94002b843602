"""Server processes under test: start pinned, wait for /health, sample RSS and CPU, stop.

Both servers run Sanic's worker manager, so the process we start is a manager whose worker is a
spawned child. Memory and CPU figures are therefore summed over the whole process tree, found by
scanning ``/proc/*/stat`` for parent ids (this kernel has no ``/proc/<pid>/task/*/children``).
"""

from __future__ import annotations

import contextlib
import http.client
import itertools
import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

_PAGE = os.sysconf("SC_PAGE_SIZE")
_TICK = os.sysconf("SC_CLK_TCK")


class ServerError(RuntimeError):
    """The server did not start or answer /health in time."""


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def _stat_fields(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name may contain spaces and parentheses; fields resume after the last ')'.
    return raw[raw.rindex(")") + 2 :].split()


def process_tree(root: int) -> list[int]:
    """``root`` and all its live descendants."""
    children: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        fields = _stat_fields(int(entry.name))
        if fields is not None:
            children.setdefault(int(fields[1]), []).append(int(entry.name))
    out: list[int] = []
    todo = [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(children.get(pid, ()))
    return out


def tree_usage(pids: Sequence[int]) -> tuple[int, float]:
    """Summed RSS in bytes and user+system CPU seconds of ``pids``."""
    rss = 0
    cpu_ticks = 0
    for pid in pids:
        fields = _stat_fields(pid)
        if fields is None:
            continue
        # After the name: state=0, ppid=1, ... utime=11, stime=12 (stat(5) fields 14 and 15).
        cpu_ticks += int(fields[11]) + int(fields[12])
        with contextlib.suppress(OSError):
            rss += int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * _PAGE
    return rss, cpu_ticks / _TICK


def core_ticks() -> dict[int, tuple[int, int, int]]:
    """Per CPU: (busy, irq+softirq, total) jiffies from /proc/stat; busy includes irq time.

    Tick-based accounting also charges a tick spent in softirq to the task it interrupted, so
    on an otherwise idle core, busy is about the user+system time of the processes on it.
    """
    out: dict[int, tuple[int, int, int]] = {}
    with open("/proc/stat") as f:
        for line in f:
            if not line.startswith("cpu") or not line[3].isdigit():
                if out:
                    break
                continue
            name, *vals = line.split()
            user, nice, system, idle, iowait, irq, softirq, steal = map(int, vals[:8])
            busy = user + nice + system + irq + softirq + steal
            out[int(name[3:])] = (busy, softirq + irq, busy + idle + iowait)
    return out


def machine_busy(interval_s: float = 1.0) -> float:
    """Busy share of the whole machine (0..1) over ``interval_s``."""
    a = core_ticks()
    time.sleep(interval_s)
    b = core_ticks()
    busy = sum(b[c][0] - a[c][0] for c in a if c in b)
    total = sum(b[c][2] - a[c][2] for c in a if c in b)
    return busy / total if total > 0 else 0.0


@dataclass
class Sample:
    t: float  # time.monotonic()
    rss: int
    cpu_s: float
    cores: dict[int, tuple[int, int, int]]


@dataclass
class Sampler:
    """Polls a process tree's RSS and CPU on a thread; cheap enough to run at 10 Hz."""

    root: int
    interval_s: float = 0.1
    samples: list[Sample] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    # Rescanning /proc for the tree is the expensive part; the tree is stable once up.
    _rescan_every: int = 10

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _run(self) -> None:
        pids: list[int] = []
        i = 0
        while not self._stop.is_set():
            if i % self._rescan_every == 0:
                pids = process_tree(self.root)
            rss, cpu = tree_usage(pids)
            self.samples.append(Sample(time.monotonic(), rss, cpu, core_ticks()))
            i += 1
            self._stop.wait(self.interval_s)

    @property
    def peak_rss(self) -> int:
        return max((s.rss for s in self.samples), default=0)

    def cpu_between(self, t0: float, t1: float) -> float:
        """CPU seconds used between two monotonic instants (linear interpolation)."""
        return self._cpu_at(t1) - self._cpu_at(t0)

    def core_between(self, core: int, t0: float, t1: float) -> tuple[float, float] | None:
        """(busy share, irq+softirq share) of one CPU between the samples nearest to two
        monotonic instants."""
        if not self.samples:
            return None
        a = min(self.samples, key=lambda s: abs(s.t - t0))
        b = min(self.samples, key=lambda s: abs(s.t - t1))
        if core not in a.cores or core not in b.cores:
            return None
        busy, irq, total = (y - x for x, y in zip(a.cores[core], b.cores[core], strict=True))
        return (busy / total, irq / total) if total > 0 else None

    def machine_between(self, t0: float, t1: float) -> float | None:
        """Busy CPUs of the whole machine (0..nproc) between the samples nearest to two
        monotonic instants."""
        if not self.samples:
            return None
        a = min(self.samples, key=lambda s: abs(s.t - t0))
        b = min(self.samples, key=lambda s: abs(s.t - t1))
        busy = sum(b.cores[c][0] - a.cores[c][0] for c in a.cores if c in b.cores)
        total = sum(b.cores[c][2] - a.cores[c][2] for c in a.cores if c in b.cores)
        return busy / total * len(a.cores) if total > 0 else None

    def _cpu_at(self, t: float) -> float:
        s = self.samples
        if not s:
            return 0.0
        if t <= s[0].t:
            return s[0].cpu_s
        for a, b in itertools.pairwise(s):
            if a.t <= t <= b.t:
                span = b.t - a.t
                return a.cpu_s + (b.cpu_s - a.cpu_s) * ((t - a.t) / span if span else 0.0)
        return s[-1].cpu_s


def _pin(cpu: int | None) -> None:
    if cpu is not None:
        os.sched_setaffinity(0, {cpu})


class ServerProc:
    """A server started in its own session, so it and its workers can be stopped as a group."""

    def __init__(
        self,
        cmd: Sequence[str],
        *,
        host: str,
        port: int,
        log_path: Path,
        env: dict[str, str] | None = None,
        cpu: int | None = None,
        cwd: Path | None = None,
    ) -> None:
        self.cmd = list(cmd)
        self.host = host
        self.port = port
        self.log_path = log_path
        self._log = log_path.open("wb")
        self.started = time.monotonic()
        self.proc = subprocess.Popen(
            self.cmd,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
            cwd=cwd,
            start_new_session=True,
            preexec_fn=(lambda: _pin(cpu)) if cpu is not None else None,
        )
        self._known: set[int] = {self.proc.pid}

    @property
    def pid(self) -> int:
        return self.proc.pid

    def log_tail(self, lines: int = 30) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        return ""

    def wait_healthy(self, timeout_s: float = 60.0) -> float:
        """Poll GET /health until 200; return seconds since start."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise ServerError(
                    f"server exited with {self.proc.returncode} before becoming healthy:\n"
                    f"$ {' '.join(self.cmd)}\n{self.log_tail()}"
                )
            conn = http.client.HTTPConnection(self.host, self.port, timeout=1.0)
            try:
                conn.request("GET", "/health")
                if conn.getresponse().status == 200:
                    self._known.update(process_tree(self.pid))
                    return time.monotonic() - self.started
            except OSError:
                pass
            finally:
                conn.close()
            time.sleep(0.1)
        raise ServerError(f"no healthy /health within {timeout_s:.0f} s:\n{self.log_tail()}")

    def stop(self, grace_s: float = 10.0) -> None:
        """SIGINT (Sanic's graceful stop), then SIGKILL for whatever of the tree is left."""
        self._known.update(process_tree(self.pid))
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGINT)
            try:
                self.proc.wait(timeout=grace_s)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.pid, signal.SIGKILL)
                self.proc.wait(timeout=5)
        # Workers we saw earlier that outlived the manager: only those, by pid, and only if
        # still in the session we created (guards against pid reuse).
        for pid in self._known - {self.pid}:
            fields = _stat_fields(pid)
            if fields is not None and fields[0] != "Z" and fields[3] == str(self.pid):
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
        self._log.close()
