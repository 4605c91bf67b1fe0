"""A local stack's data directory: its moto snapshot, its demo key, and who uses it.

``serendip serve`` keeps a stack's state in one directory (``local.state.default_data_dir``
unless ``--data DIR``): ``moto.pickle``, every table, queue, bucket and KMS key (written by the
moto server, ``local.moto_snapshot``), and ``demo-key.json``, the demo tenant's API key and webhook
secret, so that they stay the same across restarts. One stack uses a directory at a time (an
advisory lock on ``.lock``); ``--fresh`` removes those files, and only those (a directory given
with ``--data`` may hold other things).
"""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path
from typing import IO

from local.moto_snapshot import SNAPSHOT_FILE
from local.state import private_directory

DEMO_KEY_FILE = "demo-key.json"
LOCK_FILE = ".lock"


class DataInUseError(RuntimeError):
    """Another local stack uses this data directory."""


class StackData:
    """One stack's data directory, locked while the stack runs."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory.expanduser().resolve()
        self._lock: IO[str] | None = None

    def lock(self) -> None:
        """Take the directory (``DataInUseError`` if another stack holds it)."""
        private_directory(self.directory)
        handle = (self.directory / LOCK_FILE).open("a+", encoding="utf-8")
        try:
            import fcntl

            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except ImportError:  # no fcntl (Windows): no guard
            pass
        except OSError as error:
            handle.close()
            raise DataInUseError(
                f"{self.directory} is in use by another `serendip serve`; stop it, or pass "
                "another --data DIR"
            ) from error
        self._lock = handle

    def lock_fd(self) -> int | None:
        """The descriptor holding the lock (a child given it holds the lock too)."""
        return self._lock.fileno() if self._lock is not None else None

    def unlock(self) -> None:
        """Let the directory go."""
        handle, self._lock = self._lock, None
        if handle is not None:
            handle.close()

    def clear(self) -> None:
        """Forget the stack's state: its snapshot and demo key (nothing else in the directory)."""
        for name in (SNAPSHOT_FILE, DEMO_KEY_FILE):
            (self.directory / name).unlink(missing_ok=True)

    def has_state(self) -> bool:
        """Whether a snapshot is there to restore."""
        return (self.directory / SNAPSHOT_FILE).is_file()

    def demo_key(self, api_key: str | None, webhook_secret: str | None) -> tuple[str, str]:
        """The demo key and secret: those given, else those of the last run, else new ones."""
        path = self.directory / DEMO_KEY_FILE
        try:
            saved = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            saved = {}
        chosen = (
            api_key or str(saved.get("api_key") or "") or "sk_local_" + secrets.token_urlsafe(24),
            webhook_secret
            or str(saved.get("webhook_secret") or "")
            or "whsec_local_" + secrets.token_urlsafe(24),
        )
        if (saved.get("api_key"), saved.get("webhook_secret")) != chosen:
            descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
                json.dump({"api_key": chosen[0], "webhook_secret": chosen[1]}, handle)
        return chosen
