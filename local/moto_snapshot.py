"""Local state that survives a restart: snapshots of the moto server's backends, in its process.

moto keeps everything in memory and has no persistence of its own. With
``SERENDIP_MOTO_DATA=DIR`` in its environment, the local stack's moto server (``local.moto_main``)
restores ``DIR/moto.pickle`` before it serves its first request, then pickles the backends the
stack uses (SQS, KMS, DynamoDB, S3) to that file:

- every ``SERENDIP_SNAPSHOT_SECONDS`` (5 s by default; longer when a snapshot takes over a tenth
  of that), when a request that may write came in since the last one: a background thread
  forks, between two DynamoDB calls (they are serialised anyway), and the child pickles the
  copy-on-write image and exits. The server pauses only for the fork (milliseconds); the
  child's memory grows towards the server's as pickling touches the objects (reference counts),
  for the seconds the write takes. Where ``os.fork`` does not exist, the thread pickles in
  process, DynamoDB calls waiting meanwhile;
- at exit: SIGTERM (how ``serendip serve`` stops it, and what the kernel sends when ``serve``
  dies; see ``local.moto_lifeline``) runs moto's own handler, ``sys.exit``, then this.

The file is written to a temporary file, flushed to disk and renamed over the old one, so a
crash mid-write leaves the previous snapshot. A clean stop loses nothing; a SIGKILL of the moto
process itself (or of the machine) loses at most the last interval.

The order is SQS, KMS, DynamoDB, S3, so that a periodic snapshot taken while the stack works
errs towards redelivery, never loss: a message deleted in the snapshot was deleted after the
handler's writes it depended on, so those writes are in the later DynamoDB part; an S3 object
a stored item points at was written before the item, so it is in the later S3 part. Rewards
are applied once, so a redelivered message is harmless.
"""

from __future__ import annotations

import _thread
import atexit
import io
import logging
import os
import pickle
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext, suppress
from pathlib import Path
from typing import IO, Any

import moto
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

log = logging.getLogger("serendip.moto_snapshot")

DATA_ENV = "SERENDIP_MOTO_DATA"
INTERVAL_ENV = "SERENDIP_SNAPSHOT_SECONDS"
DEFAULT_INTERVAL_SECONDS = 5.0
SNAPSHOT_FILE = "moto.pickle"
# In this order (see the module's docstring).
SERVICES = ("sqs", "kms", "dynamodb", "s3")
FORMAT = 1
_RETRIES = 5  # a service that is not locked may change while it is pickled
CHILD_TIMEOUT_SECONDS = 600.0  # a snapshot process taking longer is stuck: killed


class SnapshotError(RuntimeError):
    """A snapshot cannot be restored (another moto version, a damaged file)."""


def _private_key(pem: bytes) -> Any:
    return serialization.load_pem_private_key(pem, password=None)


class _BackendPickler(pickle.Pickler):
    """Pickles moto's backends: locks come back new, KMS private keys travel as PEM."""

    def reducer_override(self, obj: Any) -> Any:
        if isinstance(obj, threading.Condition):
            return threading.Condition, ()
        if isinstance(obj, _thread.LockType):
            return threading.Lock, ()
        if isinstance(obj, _thread.RLock):
            return threading.RLock, ()
        if isinstance(obj, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
            pem = obj.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
            return _private_key, (pem,)
        return NotImplemented


def _backends(service: str) -> Any:
    from moto.backends import get_backend

    return get_backend(service)  # type: ignore[call-overload]


def _dump_service(handle: IO[bytes], service: str, lock: AbstractContextManager[Any]) -> None:
    """Pickle one service's backends straight into the file (no copy of the state in memory)."""
    start = handle.tell()
    for attempt in range(_RETRIES):
        try:
            with lock:
                _BackendPickler(handle, protocol=pickle.HIGHEST_PROTOCOL).dump(
                    dict(_backends(service))
                )
            return
        except RuntimeError:  # "dictionary changed size during iteration": write it again
            if attempt == _RETRIES - 1:
                raise
            handle.seek(start)
            handle.truncate()


class Snapshots:
    """Writes and restores the snapshot file of one data directory."""

    def __init__(self, directory: Path, dynamodb_lock: AbstractContextManager[Any]) -> None:
        self.path = directory / SNAPSHOT_FILE
        self._dynamodb_lock = dynamodb_lock
        self._writing = threading.Lock()
        self._requests = 0
        self._saved_requests = -1
        self.last_seconds = 0.0  # how long the last snapshot took
        self._child = 0  # the snapshot process writing now, if any

    def restore(self) -> bool:
        """Load the snapshot into moto's (empty) backends; False when there is none."""
        for leftover in self.path.parent.glob(".moto-*.tmp"):  # a writer killed mid-way
            leftover.unlink(missing_ok=True)
        try:
            handle = self.path.open("rb")
        except FileNotFoundError:
            return False
        with handle:
            try:
                # Unpickling runs code: the file is this user's own, in a directory only they
                # can write (``local.state`` makes it 0700), like their shell history.
                header = pickle.load(handle)
                if header.get("format") != FORMAT or header.get("moto") != moto.__version__:
                    raise SnapshotError(
                        f"{self.path} was written by moto {header.get('moto')} (format "
                        f"{header.get('format')}); this is moto {moto.__version__}"
                    )
                saved = {service: pickle.load(handle) for service in header["services"]}
            except SnapshotError:
                raise
            except Exception as error:
                raise SnapshotError(f"{self.path} is damaged ({error!r})") from error
        for service, backends_by_account in saved.items():
            backends = _backends(service)
            backends.clear()
            backends.update(backends_by_account)
        return True

    def request_seen(self) -> None:
        """Note that a request that may write came in (the next interval writes a snapshot)."""
        self._requests += 1

    def save(self, *, only_if_changed: bool = False, in_background: bool = False) -> bool:
        """Write the snapshot atomically; with ``only_if_changed``, skip it if nothing came in.

        ``in_background`` (where ``os.fork`` exists): a forked child writes the copy-on-write
        image of this process, so the server waits only for the fork, not for the pickling
        (seconds for tens of thousands of items). Returns whether a snapshot was written.
        """
        with self._writing:
            seen = self._requests
            if only_if_changed and seen == self._saved_requests:
                return False
            started = time.monotonic()
            if in_background and hasattr(os, "fork"):
                written = self._write_in_child()
            else:
                self._write({"dynamodb": self._dynamodb_lock})
                written = True
            if written:
                self._saved_requests = seen
            self.last_seconds = time.monotonic() - started
            return written

    def _write(
        self, locks: dict[str, AbstractContextManager[Any]], ready: dict[str, bytes] | None = None
    ) -> None:
        with _atomic_file(self.path) as handle:
            header = {"format": FORMAT, "moto": moto.__version__, "services": SERVICES}
            pickle.dump(header, handle, protocol=pickle.HIGHEST_PROTOCOL)
            for service in SERVICES:
                if ready and service in ready:
                    handle.write(ready[service])
                else:
                    _dump_service(handle, service, locks.get(service, nullcontext()))

    def _write_in_child(self) -> bool:
        # KMS keys are pickled here: that calls into OpenSSL, whose locks another thread may
        # hold at the instant of the fork (the child would wait for them forever). They are few.
        kms = io.BytesIO()
        _dump_service(kms, "kms", nullcontext())
        # Forked between DynamoDB calls, so that its tables are whole in the image. The child
        # has one thread (this one) and the lock is held in it: it must not take it again.
        with self._dynamodb_lock:
            pid = os.fork()
            if pid == 0:
                code = 1
                try:
                    self._write({}, ready={"kms": kms.getvalue()})
                    code = 0
                finally:
                    os._exit(code)
        self._child = pid
        try:
            status = _wait(pid, CHILD_TIMEOUT_SECONDS)
        finally:
            self._child = 0
        if status != 0:
            log.error("the snapshot process for %s exited with %s", self.path, status)
        return status == 0

    def stop_child(self) -> None:
        """End a snapshot process still writing (the final snapshot replaces its work)."""
        if self._child:
            with suppress(ProcessLookupError):
                os.kill(self._child, signal.SIGKILL)

    def run_every(self, interval: float) -> threading.Thread:
        """Save every ``interval`` seconds (when something changed) in a daemon thread.

        A big state takes longer to write: the pause then grows to ten times the last write,
        so that the snapshot process never takes more than a tenth of a core.
        """

        def loop() -> None:
            while not _stopping.wait(max(interval, 10 * self.last_seconds)):
                try:
                    self.save(only_if_changed=True, in_background=True)
                except Exception:
                    log.exception("snapshot of the local stack's state to %s failed", self.path)

        thread = threading.Thread(target=loop, name="moto-snapshots", daemon=True)
        thread.start()
        return thread


_stopping = threading.Event()


@contextmanager
def _atomic_file(path: Path) -> Iterator[IO[bytes]]:
    """A temporary file beside ``path``, flushed to disk and renamed over it on success."""
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(prefix=".moto-", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(descriptor, "w+b") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temporary, 0o600)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


# Calls that change nothing worth a snapshot. A receive does change a message's visibility and
# receive count, but losing those only means a redelivery; counting it would rewrite an idle
# stack's whole state every interval, as its pollers keep receiving nothing.
_READS = frozenset(
    {
        "GetItem",
        "BatchGetItem",
        "Query",
        "Scan",
        "TransactGetItems",
        "DescribeTable",
        "ListTables",
        "ReceiveMessage",
        "GetQueueUrl",
        "GetQueueAttributes",
        "ListQueues",
        "Decrypt",
        "DescribeKey",
    }
)


def may_write(environ: dict[str, Any]) -> bool:
    """Whether a request may change state (JSON protocols name their action in a header)."""
    target = str(environ.get("HTTP_X_AMZ_TARGET") or "")
    if target:
        return target.rsplit(".", 1)[-1] not in _READS
    return environ.get("REQUEST_METHOD") not in ("GET", "HEAD")


def _count_requests(snapshots: Snapshots) -> None:
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication

    dispatch = DomainDispatcherApplication.__call__

    def counted(self: Any, environ: Any, start_response: Any) -> Any:
        if may_write(environ):
            snapshots.request_seen()
        return dispatch(self, environ, start_response)

    DomainDispatcherApplication.__call__ = counted  # type: ignore[method-assign]


def install(dynamodb_lock: AbstractContextManager[Any]) -> Snapshots | None:
    """With ``$SERENDIP_MOTO_DATA``: restore its snapshot, then keep it up to date.

    Call before moto's server starts. Exits (status 1, saying why) when the snapshot cannot be
    restored: starting empty would overwrite it.
    """
    directory = os.environ.get(DATA_ENV)
    if not directory:
        return None
    snapshots = Snapshots(Path(directory), dynamodb_lock)
    try:
        snapshots.restore()
    except SnapshotError as error:
        sys.exit(
            f"cannot restore the local stack's state: {error}; move {directory} away, "
            "or start from a clean slate with `serendip serve --fresh`"
        )
    _count_requests(snapshots)
    atexit.register(_final_save, snapshots)
    snapshots.run_every(float(os.environ.get(INTERVAL_ENV) or DEFAULT_INTERVAL_SECONDS))
    return snapshots


def _wait(pid: int, timeout: float) -> int:
    """The exit code of child ``pid``; killed (-9) if it runs past ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        if time.monotonic() > deadline:
            with suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
        time.sleep(0.05)


def _final_save(snapshots: Snapshots) -> None:
    _stopping.set()
    snapshots.stop_child()
    snapshots.save()
