"""A parent process for the lifeline tests: forks one child as ``argv[1]`` says,
prints what the child reports, then waits to be killed.

- ``main-thread``: children are tied, the child is forked by the main thread;
- ``other-thread``: children are tied, the child is forked by a thread that ends;
- ``watch``: a plain fork whose child watches its parent by itself, without the kernel.

The line printed: ``<child pid> <the child's parent-death signal> <1 if a thread watches>``.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
import threading

from jobs.workers import lifeline

PR_GET_PDEATHSIG = 2


def report(pipe: int) -> None:
    """In the child: what ties it to its parent, then wait for the end."""
    death_signal = ctypes.c_int(0)
    ctypes.CDLL(None).prctl(PR_GET_PDEATHSIG, ctypes.byref(death_signal))
    watching = any(t.name == "triggerpost-parent-watch" for t in threading.enumerate())
    os.write(pipe, f"{os.getpid()} {death_signal.value} {int(watching)}\n".encode())
    while True:
        signal.pause()


def fork(pipe: int, *, watch_alone: bool) -> None:
    parent = os.getpid()
    if os.fork() == 0:
        if watch_alone:
            lifeline.die_with(parent, kernel=False)
        report(pipe)


if __name__ == "__main__":
    mode = sys.argv[1]
    read_end, write_end = os.pipe()
    if mode == "watch":
        fork(write_end, watch_alone=True)
    else:
        lifeline.tie_forked_children()
        if mode == "main-thread":
            fork(write_end, watch_alone=False)
        else:
            forker = threading.Thread(target=fork, args=(write_end,), kwargs={"watch_alone": False})
            forker.start()
            forker.join()
    with os.fdopen(read_end) as lines:
        print(lines.readline().strip(), flush=True)
    while True:
        signal.pause()
