"""CPU time of processes, read from /proc, so a figure can say who used the cores."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cores() -> int:
    return len(os.sched_getaffinity(0))


def core_speed_ms() -> float:
    """Milliseconds one core takes for a fixed pure-Python loop, best of five: the claim
    and callback rates scale with it, so it tells runs on different machines apart."""
    best = float("inf")
    for _ in range(5):
        start = time.perf_counter()
        total = 0
        for i in range(1_000_000):
            total += i
        best = min(best, time.perf_counter() - start)
    return best * 1000


def _stat_fields(pid: int) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) is in parentheses and may itself contain spaces.
    return text.rsplit(")", 1)[1].split()


def cpu_seconds(pid: int) -> float | None:
    """utime + stime of `pid` (all its threads), or None once it is gone."""
    fields = _stat_fields(pid)
    if fields is None:
        return None
    # After the command name: state is field 3, utime field 14, stime field 15.
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def descendants(pid: int) -> list[int]:
    """`pid` and every process below it (uvicorn's workers are children of its master)."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        fields = _stat_fields(int(entry.name))
        if fields is not None:
            parents.setdefault(int(fields[1]), []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        todo.extend(parents.get(current, []))
    return found


def pids_named(*names: str) -> list[int]:
    """Processes whose command name is one of `names` (e.g. the MariaDB server)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                comm = (entry / "comm").read_text().strip()
            except OSError:
                continue
            if comm in names:
                found.append(int(entry.name))
    return found


def postgres_backends(database: str) -> list[int]:
    """PostgreSQL backends connected to `database`, by their process title.

    A backend titles itself "postgres: [<cluster name>:] <user> <database> <client> <activity>",
    so this finds them without a connection of its own and leaves other databases out.
    """
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                title = (entry / "cmdline").read_bytes().replace(b"\0", b" ").split()
            except OSError:
                continue
            if not title or title[0] != b"postgres:":
                continue
            words = title[2:] if len(title) > 1 and title[1].endswith(b":") else title[1:]
            if len(words) > 1 and words[1] == database.encode():
                found.append(int(entry.name))
    return found


def machine_busy_seconds() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine since boot, from /proc/stat."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    total = sum(values[:8])  # without guest time, which is already counted in user
    return (total - idle) / CLOCK_TICKS, total / CLOCK_TICKS


@dataclass
class CpuMeter:
    """CPU used by a set of processes between `start()` and the last `sample()`.

    A process's counters vanish with it, so `sample()` is called while it runs; the last
    sample before it exits stands for its total.
    """

    pids: list[int]
    _first: dict[int, float] = field(default_factory=dict)
    _last: dict[int, float] = field(default_factory=dict)

    def start(self, *, from_zero: bool = False) -> None:
        for pid in self.pids:
            seconds = cpu_seconds(pid)
            if seconds is not None:
                self._first[pid] = 0.0 if from_zero else seconds
                self._last[pid] = seconds

    def follow(self, pids: list[int]) -> None:
        """Also follow processes started after `start()` (counted from their birth)."""
        for pid in pids:
            if pid not in self._first:
                self.pids.append(pid)
                self._first[pid] = 0.0
                self._last[pid] = cpu_seconds(pid) or 0.0

    def sample(self) -> None:
        for pid in self.pids:
            seconds = cpu_seconds(pid)
            if seconds is not None:
                self._last[pid] = seconds

    def used(self) -> float:
        return sum(self._last[pid] - self._first.get(pid, 0.0) for pid in self._last)

    def share(self, wall_seconds: float) -> float:
        """Fraction of all the machine's cores over `wall_seconds` (1.0 = every core busy)."""
        return self.used() / (wall_seconds * cores()) if wall_seconds > 0 else 0.0
