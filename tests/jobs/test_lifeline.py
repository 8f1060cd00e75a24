"""Children that die with their parent: tied by the kernel where it can, else watched."""

from __future__ import annotations

import signal
import subprocess
import sys

import pytest

from tests.processes import Process, kill_all, read, wait_until_gone


@pytest.mark.parametrize(
    ("mode", "death_signal", "watched"),
    [
        # the kernel ties the child to the main thread, that is to the whole process
        ("main-thread", signal.SIGTERM, False),
        # a kernel tie would end the child with the thread that forked it: watched instead
        ("other-thread", 0, True),
        # where the kernel cannot tie (outside Linux) a thread watches
        ("watch", 0, True),
    ],
)
def test_a_child_ends_when_its_parent_is_killed(
    mode: str, death_signal: int, watched: bool
) -> None:
    parent = subprocess.Popen(
        [sys.executable, "-m", "tests.jobs.forking_parent", mode], stdout=subprocess.PIPE, text=True
    )
    child: Process | None = None
    try:
        assert parent.stdout is not None
        pid, child_signal, child_watched = (int(n) for n in parent.stdout.readline().split())
        child = read(pid)
        assert child is not None
        assert child.parent == parent.pid
        assert (child_signal, bool(child_watched)) == (death_signal, watched)

        parent.kill()
        parent.wait()
        assert not wait_until_gone([child], 10), "the child outlived its parent"
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()
        if parent.stdout is not None:
            parent.stdout.close()
        if child is not None:
            kill_all([child])
