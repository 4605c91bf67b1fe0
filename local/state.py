"""Where a running local stack records its endpoints, so other commands can find it.

``serendip serve`` writes ``~/.serendip/local.json`` (or ``$SERENDIP_STATE_DIR/local.json``)
when it is up and removes it when it stops; ``serendip keys create`` reads it to talk to that
stack's moto server without extra flags. The file holds the demo key and its webhook secret, so
it is written readable by its owner only.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

STATE_DIR_ENV = "SERENDIP_STATE_DIR"
STATE_FILE = "local.json"


@dataclass(frozen=True, slots=True)
class LocalState:
    """What a running local stack tells other processes about itself."""

    url: str
    moto_endpoint: str
    api_key: str
    webhook_secret: str
    pid: int
    region: str
    resources: dict[str, str] = field(default_factory=dict)  # env var -> table/queue/bucket

    def as_dict(self) -> dict[str, Any]:
        """The JSON form of the state file."""
        return asdict(self)


def state_dir() -> Path:
    """``$SERENDIP_STATE_DIR`` if set, else ``~/.serendip``."""
    configured = os.environ.get(STATE_DIR_ENV)
    return Path(configured).expanduser() if configured else Path.home() / ".serendip"


def state_path() -> Path:
    """The state file of the local stack."""
    return state_dir() / STATE_FILE


def write_state(state: LocalState) -> Path:
    """Write the state file atomically (owner-only permissions); returns its path."""
    path = state_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(prefix=".local-", suffix=".json", dir=path.parent)
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            json.dump(state.as_dict(), handle, indent=2, sort_keys=True)
            handle.write("\n")
        os.chmod(temporary, 0o600)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path


def read_state() -> LocalState | None:
    """The recorded local stack, or None when there is none (or the file is unreadable)."""
    try:
        data = json.loads(state_path().read_text(encoding="utf-8"))
        return LocalState(
            url=str(data["url"]),
            moto_endpoint=str(data["moto_endpoint"]),
            api_key=str(data["api_key"]),
            webhook_secret=str(data["webhook_secret"]),
            pid=int(data["pid"]),
            region=str(data["region"]),
            resources={str(k): str(v) for k, v in dict(data.get("resources") or {}).items()},
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None


def clear_state(pid: int | None = None) -> None:
    """Remove the state file; with ``pid``, only if that process wrote it."""
    if pid is not None:
        current = read_state()
        if current is not None and current.pid != pid:
            return
    state_path().unlink(missing_ok=True)
