"""Child processes that die with their parent, however the parent dies.

A process killed with SIGKILL stops nothing it started: its children run on
as orphans. An orphan RQ scheduler keeps the scheduler lock, so no other
worker's scheduler enqueues due jobs; an orphan sweeper sweeps for a worker
that is gone; the processes ``triggerpost run`` supervises would keep their
port and socket from the next start.

On Linux the kernel ties them: ``prctl(PR_SET_PDEATHSIG)`` sends a child
SIGTERM when its parent dies, so it stops as it does when asked (a
scheduler releases its lock, a sweeper ends its round). A child set up from
Python code of ours (the sweeper, every child a worker forks, RQ's scheduler
and a fork worker's work horses among them) is watched by a thread of its
own where the kernel cannot tie it: outside Linux, and when it was forked
by another thread than the main one (the kernel ties a child to the thread
that forked it, not to the process).
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
import threading
import time

PR_SET_PDEATHSIG = 1
#: how often a watching thread looks for its parent (seconds)
WATCH_INTERVAL = 0.5

_forking = threading.local()
_children_tied = False


def tie_to_parent() -> None:
    """``preexec_fn``: the child gets SIGTERM when its parent dies, even by SIGKILL.

    Linux only (the tie holds across ``exec``, a thread would not); elsewhere
    a no-op. Only for parents without threads, as every ``preexec_fn``.
    """
    parent = os.getppid()
    if _set_parent_death_signal() and os.getppid() != parent:
        os._exit(1)  # the parent died before the tie took hold


def die_with(parent: int, *, kernel: bool = True) -> None:
    """Called in a running child: SIGTERM to itself when ``parent`` is gone.

    The kernel sends it where it can (``kernel``, on Linux), else a daemon
    thread watching the parent's id does. A parent already gone gets the
    signal sent at once.
    """
    if not (kernel and _set_parent_death_signal()):
        threading.Thread(
            target=_watch, args=(parent,), name="triggerpost-parent-watch", daemon=True
        ).start()
    if os.getppid() != parent:
        os.kill(os.getpid(), signal.SIGTERM)


def tie_forked_children() -> None:
    """From now on every child this process forks dies with it (idempotent).

    For children made by libraries that give no hook of their own: RQ forks
    its scheduler (a ``multiprocessing`` fork) and a fork worker's horses
    with ``os.fork``; both run the interpreter's after-fork hooks.
    """
    global _children_tied
    if _children_tied:
        return
    os.register_at_fork(before=_note_forking_thread, after_in_child=_tie_forked_child)
    _children_tied = True


def _note_forking_thread() -> None:
    _forking.parent = os.getpid()
    _forking.from_main_thread = threading.current_thread() is threading.main_thread()


def _tie_forked_child() -> None:
    parent = getattr(_forking, "parent", None)
    if parent is not None:
        die_with(parent, kernel=_forking.from_main_thread)


def _set_parent_death_signal() -> bool:
    if not sys.platform.startswith("linux"):
        return False
    libc = ctypes.CDLL(None, use_errno=True)
    return bool(libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM) == 0)


def _watch(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(WATCH_INTERVAL)
    os.kill(os.getpid(), signal.SIGTERM)
