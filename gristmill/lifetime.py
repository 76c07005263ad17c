"""Processes that die with the process that started them.

Gristmill's children run in sessions of their own (so a Ctrl-C reaches the supervisor alone, which
stops them in order), which also means nothing takes them down when the supervisor is killed
outright. Linux's parent-death signal does: each process that starts another asks the kernel, in
the child, to SIGKILL the child when its parent dies. A chain of them (supervisor → runner →
forkserver → flow run) goes down link by link.
"""

import ctypes
import os
import signal
import sys
from collections.abc import Callable

PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>
# What a flow-run process's name (/proc/<pid>/comm) begins with: how the supervisor tells, among the
# runner's descendants, the flow runs it gives a grace period to on a graceful stop.
FLOW_RUN_PROCESS_PREFIX = "gm-"


def die_with_parent(parent_pid: int | None = None) -> None:
    """Have the kernel SIGKILL this process when its parent dies (Linux; a no-op elsewhere).

    With `parent_pid`, a parent that died before the request was made (the child is then already
    re-parented) ends this process at once instead of leaving it an orphan for good.
    """
    if not sys.platform.startswith("linux"):
        return
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
        return  # refused (it never is on Linux): the supervisor's own stop still ends its children
    if parent_pid is not None and os.getppid() != parent_pid:
        os._exit(1)


def dies_with_this_process() -> Callable[[], None]:
    """A `preexec_fn` for `subprocess.Popen`: the child dies with the process that starts it."""
    parent_pid = os.getpid()
    return lambda: die_with_parent(parent_pid)
