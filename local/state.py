"""Where local stacks record themselves and keep their data, one of each per stack name.

``serendip serve --stack NAME`` (``default`` unless told) writes ``stacks/NAME.json`` under
``~/.serendip`` (or ``$SERENDIP_STATE_DIR``) once it is up and removes it when it stops; other
commands read it (``--stack NAME``, or ``--url`` matched against every recorded stack) to talk to
that stack's moto server. The file holds the demo key and its webhook secret, so it is written
readable by its owner only. Its data (the moto snapshot, the demo key) lives in
``stacks/NAME/data`` unless ``serve --data DIR`` says otherwise.

A stack killed without its clean stop leaves its file behind: ``liveness`` tells such a stale
file (its process is gone) from a live stack that does not answer.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

STATE_DIR_ENV = "SERENDIP_STATE_DIR"
STACKS_DIR = "stacks"
DEFAULT_STACK = "default"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")


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
    name: str = DEFAULT_STACK
    data_dir: str = ""  # "" when its state is not kept
    moto_pid: int = 0

    def as_dict(self) -> dict[str, Any]:
        """The JSON form of the state file."""
        return asdict(self)


def check_stack_name(name: str) -> str:
    """``name`` if it can name a stack (1-63 of letters, digits, '_', '.', '-'), else ValueError."""
    if not _NAME.match(name):
        raise ValueError(f"a stack name is 1-63 letters, digits, '_', '.' or '-', not {name!r}")
    return name


def state_dir() -> Path:
    """``$SERENDIP_STATE_DIR`` if set, else ``~/.serendip``."""
    configured = os.environ.get(STATE_DIR_ENV)
    return Path(configured).expanduser() if configured else Path.home() / ".serendip"


def state_path(name: str = DEFAULT_STACK) -> Path:
    """The state file of the local stack ``name``."""
    return state_dir() / STACKS_DIR / f"{check_stack_name(name)}.json"


def default_data_dir(name: str = DEFAULT_STACK) -> Path:
    """Where the stack ``name`` keeps its data unless told otherwise."""
    return state_dir() / STACKS_DIR / check_stack_name(name) / "data"


def private_directory(path: Path) -> Path:
    """Create ``path`` (and its parents) readable by its owner only; returns it."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    return path


def write_state(state: LocalState) -> Path:
    """Write the stack's state file atomically (owner-only permissions); returns its path."""
    path = state_path(state.name)
    private_directory(path.parent)
    descriptor, temporary = tempfile.mkstemp(prefix=".stack-", suffix=".json", dir=path.parent)
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


def _parse(data: dict[str, Any]) -> LocalState:
    return LocalState(
        url=str(data["url"]),
        moto_endpoint=str(data["moto_endpoint"]),
        api_key=str(data["api_key"]),
        webhook_secret=str(data["webhook_secret"]),
        pid=int(data["pid"]),
        region=str(data["region"]),
        resources={str(k): str(v) for k, v in dict(data.get("resources") or {}).items()},
        name=str(data.get("name") or DEFAULT_STACK),
        data_dir=str(data.get("data_dir") or ""),
        moto_pid=int(data.get("moto_pid") or 0),
    )


def read_state(name: str = DEFAULT_STACK) -> LocalState | None:
    """The recorded local stack ``name``, or None when there is none (or it is unreadable)."""
    try:
        return _parse(json.loads(state_path(name).read_text(encoding="utf-8")))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def recorded_states() -> list[LocalState]:
    """Every recorded local stack (live or stale), by name."""
    found = (read_state(path.stem) for path in sorted((state_dir() / STACKS_DIR).glob("*.json")))
    return [state for state in found if state is not None]


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url if "//" in url else f"http://{url}")
    host = (parts.hostname or "").lower()
    host = "127.0.0.1" if host in ("localhost", "::1", "0.0.0.0") else host
    return parts.scheme or "http", host, parts.port or (443 if parts.scheme == "https" else 80)


def find_by_url(url: str) -> LocalState | None:
    """The recorded stack whose API is at ``url`` (``localhost`` and ``127.0.0.1`` alike)."""
    wanted = _origin(url)
    matching = [s for s in recorded_states() if _origin(s.url) == wanted]
    matching.sort(key=lambda state: not pid_alive(state.pid))  # a live one before stale ones
    return matching[0] if matching else None


def clear_state(name: str = DEFAULT_STACK, pid: int | None = None) -> None:
    """Remove the stack's state file; with ``pid``, only if that process wrote it."""
    if pid is not None:
        current = read_state(name)
        if current is not None and current.pid != pid:
            return
    state_path(name).unlink(missing_ok=True)


def pid_alive(pid: int) -> bool:
    """Whether a process with this id exists (on this machine)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


def answers(url: str, timeout: float = 2.0) -> bool:
    """Whether the API at ``url`` answers ``GET /v1/health`` with 200."""
    try:
        with urllib.request.urlopen(f"{url.rstrip('/')}/v1/health", timeout=timeout) as reply:
            return bool(reply.status == 200)
    except (urllib.error.URLError, OSError, ValueError):
        return False


def liveness(state: LocalState) -> str:
    """``"up"``, ``"stale"`` (its process is gone) or ``"silent"`` (alive, its API mute)."""
    if not pid_alive(state.pid):
        return "stale"
    return "up" if answers(state.url) else "silent"


def clear_stale(state: LocalState) -> bool:
    """Remove a stale state file (its process is gone); whether it was stale."""
    if pid_alive(state.pid):
        return False
    clear_state(state.name, pid=state.pid)
    return True
