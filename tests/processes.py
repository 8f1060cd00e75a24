"""Process trees as Linux shows them in /proc, for tests that kill processes;
which process holds RQ's scheduler lock.

A process is named by its pid and its start time (field 22 of
``/proc/<pid>/stat``): a pid reused by a new process is not taken for the
old one. A zombie counts as gone: it runs nothing and holds nothing, and
whether it is reaped depends on which process adopted it.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path

from redis import Redis
from rq.exceptions import SchedulerNotFound
from rq.scheduler import RQScheduler

from jobs.queues import ALL_QUEUES

PROC = Path("/proc")


@dataclass(frozen=True)
class Process:
    pid: int
    started: int
    parent: int
    state: str
    command: str

    def alive(self) -> bool:
        now = read(self.pid)
        return now is not None and now.started == self.started and now.state != "Z"


def read(pid: int) -> Process | None:
    try:
        stat = (PROC / str(pid) / "stat").read_text()
        command = (PROC / str(pid) / "cmdline").read_bytes().replace(b"\0", b" ").decode()
    except (FileNotFoundError, ProcessLookupError):
        return None
    # the name in parentheses may hold spaces and parentheses: split after the last one
    fields = stat[stat.rindex(")") + 2 :].split()
    return Process(
        pid=pid, started=int(fields[19]), parent=int(fields[1]), state=fields[0], command=command
    )


def everything() -> list[Process]:
    found = (read(int(entry.name)) for entry in PROC.iterdir() if entry.name.isdigit())
    return [process for process in found if process is not None]


def descendants(pid: int) -> list[Process]:
    """Every living process below ``pid``: children, their children, ..."""
    children: dict[int, list[Process]] = {}
    for process in everything():
        if process.state != "Z":
            children.setdefault(process.parent, []).append(process)
    found: list[Process] = []
    below = [pid]
    while below:
        for child in children.get(below.pop(), []):
            found.append(child)
            below.append(child.pid)
    return found


def wait_until_gone(processes: list[Process], seconds: float) -> list[Process]:
    """Polls until none of ``processes`` is alive or ``seconds`` passed; returns the living."""
    deadline = time.monotonic() + seconds
    living = [p for p in processes if p.alive()]
    while living and time.monotonic() < deadline:
        time.sleep(0.1)
        living = [p for p in living if p.alive()]
    return living


def kill_all(processes: list[Process]) -> None:
    """SIGKILL to those still alive (a test's clean-up after it failed)."""
    for process in processes:
        if process.alive():
            with contextlib.suppress(ProcessLookupError):
                os.kill(process.pid, signal.SIGKILL)


def scheduler_holding_the_locks(redis: Redis) -> int | None:
    """The pid of the RQ scheduler that holds the scheduler lock of every queue."""
    holders = {redis.get(RQScheduler.get_locking_key(name)) for name in ALL_QUEUES}
    if len(holders) != 1 or None in holders:
        return None
    try:
        return RQScheduler.fetch(holders.pop().decode(), redis).pid  # type: ignore[union-attr]
    except SchedulerNotFound:
        return None
