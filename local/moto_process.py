"""moto's server in its own process, so that storage work runs beside the handlers.

In one process, moto, the handlers and the learner share one interpreter lock; in its own
process moto gets the second core of a small machine, which roughly halves a round trip.

The server ends with this process however it ends (``local.moto_lifeline``), runs in its own
session (a Ctrl-C in the terminal reaches ``serendip serve``, which stops it last, after the
workers that write to it) and, given a data directory, keeps its state there across restarts
(``local.moto_snapshot``).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import IO

from local.moto_lifeline import DEATHSIG_ENV, PARENT_ENV
from local.moto_snapshot import DATA_ENV

READY_TIMEOUT_SECONDS = 30.0
# Restoring a snapshot comes first: about 10 s for 20,000 decisions on a small machine.
RESTORE_TIMEOUT_SECONDS = 600.0
# A stop writes the last snapshot first: give a big state time to be written.
STOP_TIMEOUT_SECONDS = 60.0


class MotoStartError(RuntimeError):
    """The moto server exited at start or never answered."""


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


class MotoProcess:
    """``python -m moto.server`` on loopback, started and stopped with the stack."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        data_dir: Path | None = None,
        lock_fd: int | None = None,
    ) -> None:
        self.host = host
        self.port = port or free_port(host)
        self.data_dir = data_dir
        # The data directory's lock, held by the server too: a server still writing its last
        # snapshot after its parent died keeps the next stack off the directory until it is done.
        self.lock_fd = lock_fd
        self._process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    def _tail(self) -> str:
        if self._log is None:
            return ""
        self._log.seek(0)
        return self._log.read().decode(errors="replace").strip()[-500:]

    def start(self) -> None:
        """Start the server and wait until it answers; raise ``MotoStartError`` otherwise."""
        # Its request log goes to a file: an unread pipe would fill up and block the server.
        self._log = tempfile.TemporaryFile()  # noqa: SIM115 (lives as long as the server)
        env = {**os.environ, PARENT_ENV: str(os.getpid())}
        env[DEATHSIG_ENV] = "1" if threading.current_thread() is threading.main_thread() else "0"
        env.pop(DATA_ENV, None)
        if self.data_dir is not None:
            env[DATA_ENV] = str(self.data_dir)
        self._process = subprocess.Popen(
            [sys.executable, "-m", "local.moto_main", "-H", self.host, "-p", str(self.port)],
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
            pass_fds=() if self.lock_fd is None else (self.lock_fd,),
        )
        waited = READY_TIMEOUT_SECONDS + (RESTORE_TIMEOUT_SECONDS if self.data_dir else 0)
        deadline = time.monotonic() + waited
        url = f"http://{self.host}:{self.port}/moto-api/data.json"
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                error = self._tail()
                self.stop()
                raise MotoStartError(f"moto server exited at start: {error}")
            try:
                with urllib.request.urlopen(url, timeout=1):
                    return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                time.sleep(0.1)
        self.stop()
        raise MotoStartError(f"moto server did not answer on port {self.port} in {waited:.0f} s")

    @property
    def pid(self) -> int | None:
        """The server's process id while it runs."""
        return self._process.pid if self._process is not None else None

    def get_host_and_port(self) -> tuple[str, int]:
        """Where the server listens."""
        return self.host, self.port

    def stop(self) -> None:
        """Terminate the server, which saves its state first (killed if that takes over 60 s)."""
        process, self._process = self._process, None
        if process is None:
            return
        if process.poll() is None:
            process.terminate()
        try:
            process.wait(timeout=STOP_TIMEOUT_SECONDS if self.data_dir else 5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)
        if self._log is not None:
            self._log.close()
            self._log = None
