"""The local stack's moto server dies with the process that started it, whatever killed that.

Without this, a ``serendip serve`` killed with SIGKILL leaves its moto server running, holding
its port and memory. On Linux the kernel sends SIGTERM when the parent dies
(``prctl(PR_SET_PDEATHSIG)``); everywhere, a thread also watches ``os.getppid()`` change (the
orphan is adopted by another process) and sends SIGTERM itself. SIGTERM runs moto's handler,
which exits, and the last snapshot of ``local.moto_snapshot`` is written on the way out.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import signal
import sys
import threading
import time

log = logging.getLogger("serendip.moto_lifeline")

PARENT_ENV = "SERENDIP_PARENT_PID"
# "0" when the parent started this from a thread other than its main one: the kernel's signal
# follows the thread, which may end long before the process does.
DEATHSIG_ENV = "SERENDIP_PARENT_DEATHSIG"
POLL_SECONDS = 1.0
_PR_SET_PDEATHSIG = 1


def _ask_kernel() -> None:
    """Linux: SIGTERM to this process when its parent (the thread that started it) dies."""
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        if libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0) != 0:
            log.warning("prctl(PR_SET_PDEATHSIG) failed: errno %d", ctypes.get_errno())
    except OSError as error:
        log.warning("prctl(PR_SET_PDEATHSIG) unavailable (%s); polling the parent only", error)


def _watch(parent: int) -> None:
    while True:
        time.sleep(POLL_SECONDS)
        if os.getppid() != parent:
            os.kill(os.getpid(), signal.SIGTERM)
            return


def install() -> None:
    """With ``$SERENDIP_PARENT_PID``: end this process (SIGTERM) when that parent is gone."""
    recorded = os.environ.get(PARENT_ENV)
    if not recorded:
        return
    parent = int(recorded)
    if os.environ.get(DEATHSIG_ENV, "1") == "1":
        _ask_kernel()
    if os.getppid() != parent:  # it died before the kernel was asked
        os.kill(os.getpid(), signal.SIGTERM)
    threading.Thread(target=_watch, args=(parent,), name="moto-lifeline", daemon=True).start()
