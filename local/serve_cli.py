"""``serendip serve``: the whole service on this machine, with a banner showing how to call it."""

from __future__ import annotations

import argparse
import json
import logging
import shlex
import signal
import sys
import threading
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

from functions.common.auth import SCOPES

if TYPE_CHECKING:
    from local.stack import LocalStack


def rank_example(url: str, api_key: str) -> str:
    """A shell command that ranks 3 candidates on policy ``for-you``."""
    body = {
        "context": {"user": {"cohort": "runners", "device": "ios"}},
        "user_id": "user-1",
        "candidates": [
            {"id": "item-1", "category": "shoes"},
            {"id": "item-2", "category": "hats"},
            {"id": "item-3", "category": "socks"},
        ],
    }
    return (
        f"curl -s -X POST {url}/v1/policies/for-you/rank \\\n"
        f"  -H {shlex.quote('x-api-key: ' + api_key)} -H 'content-type: application/json' \\\n"
        f"  -d {shlex.quote(json.dumps(body, separators=(',', ':')))}"
    )


def reward_example(url: str, api_key: str, webhook_secret: str) -> str:
    """Shell commands that sign and post a click on ``item-1`` of event ``$EVENT``."""
    return "\n".join(
        [
            'BODY="{\\"event_id\\":\\"$EVENT\\",\\"item_id\\":\\"item-1\\",\\"type\\":\\"click\\"}"',
            "TS=$(date +%s)",
            'SIG=$(printf \'%s.%s\' "$TS" "$BODY" | openssl dgst -sha256 -hmac '
            f"{shlex.quote(webhook_secret)} | sed 's/^.* //')",
            f"curl -s -X POST {url}/v1/rewards -H {shlex.quote('x-api-key: ' + api_key)} \\",
            "  -H \"x-serendip-signature: t=$TS,v1=$SIG\" -H 'content-type: application/json' "
            '-d "$BODY"',
        ]
    )


def python_signature_example(webhook_secret: str) -> str:
    """A Python one-liner setting ``$SIGNATURE`` to the signature header value for ``$BODY``."""
    code = (
        "import hashlib,hmac,sys,time; t=int(time.time()); "
        "print(f't={t},v1='+hmac.new(sys.argv[1].encode(), f'{t}.'.encode()"
        "+sys.argv[2].encode(), hashlib.sha256).hexdigest())"
    )
    return f'SIGNATURE=$(python3 -c "{code}" {shlex.quote(webhook_secret)} "$BODY")'


def worker_count(text: str) -> int:
    """``--workers``: a whole number of worker processes, at least 1."""
    try:
        count = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if count < 1:
        raise argparse.ArgumentTypeError("at least 1 worker is needed")
    return count


def _indent(text: str, prefix: str = "    ") -> str:
    return "\n".join(prefix + line for line in text.splitlines())


def _kept(stack: LocalStack) -> str:
    if stack.data is None:
        return "not kept: this stack forgets everything when it stops"
    return f"{stack.data.directory}   (kept across restarts; --fresh to start empty)"


def _workers(stack: LocalStack) -> str:
    if stack.pool is None:
        return "1 (the API functions run in this process, one request at a time)"
    learner = "; the learner in a process of its own" if stack.learner_pool is not None else ""
    return f"{stack.pool.size} processes, one request each at a time (--workers N){learner}"


def banner(stack: LocalStack, state_file: Path | None) -> str:
    """What ``serendip serve`` prints once the stack is up."""
    from local.state import state_path

    sweeps = ", ".join(f"every {s.interval_seconds:g} s" for s in stack.schedulers) or "off"
    lines = [
        "Serendip local stack is up.",
        "",
        f"  API             {stack.url}   (OpenAPI: {stack.url}/v1/openapi.json)",
        f"  dashboard       {stack.url}/dashboard   (is it learning? latency, queues, metrics)",
        f"  API key         {stack.api_key}   (tenant {stack.tenant}; scopes {', '.join(SCOPES)})",
        f"  webhook secret  {stack.webhook_secret}   (signs POST /v1/rewards)",
        f"  moto            {stack.moto_endpoint}",
        f"  sweep           {sweeps}",
        f"  learner         {'on' if stack.learn else 'off (--no-learn: rewards stay queued)'}",
        f"  API workers     {_workers(stack)}",
        f"  stack           {stack.name}   (reach it with --stack {stack.name} or --url URL)",
        f"  data            {_kept(stack)}",
        f"  state file      {state_file or state_path(stack.name)}",
        "",
        "  Rank 3 candidates on policy for-you:",
        "",
        _indent(rank_example(stack.url, stack.api_key)),
        "",
        "  Reward a shown item: set EVENT to the answer's event_id, then sign and post:",
        "",
        _indent("EVENT=evt_...   # from the rank answer"),
        _indent(reward_example(stack.url, stack.api_key, stack.webhook_secret)),
        "",
        '  Or the whole header in Python (then -H "x-serendip-signature: $SIGNATURE"):',
        "",
        _indent(python_signature_example(stack.webhook_secret)),
        "",
        f"  More keys: serendip keys create --stack {stack.name} --tenant T "
        "--scopes rank,reward,admin",
        "  Press Ctrl-C to stop.",
    ]
    return "\n".join(lines)


def _wait_for_signal() -> dict[signal.Signals, Any]:
    """Block until SIGINT (Ctrl-C), SIGTERM or SIGHUP; return the handlers it replaced.

    Its handlers stay in place after it returns, so signals that follow (a second Ctrl-C) only
    ask again for the stop already under way; ``_restore_signals`` puts the old ones back.

    SIGHUP (its terminal closed) stops it cleanly too: its state is saved and its state file
    removed, as on Ctrl-C.
    """
    stop = threading.Event()

    def request_stop(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signals = [
        signal.SIGINT,
        signal.SIGTERM,
        *([signal.SIGHUP] if hasattr(signal, "SIGHUP") else []),
    ]
    previous = {sig: signal.signal(sig, request_stop) for sig in signals}
    while not stop.wait(0.5):
        pass
    return previous


def _restore_signals(previous: dict[signal.Signals, Any]) -> None:
    """Put back the handlers ``_wait_for_signal`` replaced (once the stack has stopped)."""
    for sig, handler in previous.items():
        signal.signal(sig, handler)


def serve(args: argparse.Namespace) -> int:
    """Run the local stack until Ctrl-C or SIGTERM; exit 2 if that stack runs already."""
    from local.moto_process import MotoStartError
    from local.moto_snapshot import SNAPSHOT_FILE
    from local.stack import LocalStack
    from local.stack_data import DataInUseError
    from local.state import clear_stale, default_data_dir, liveness, read_state, state_path

    logging.basicConfig(
        level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    recorded = read_state(args.stack)
    if recorded is not None and clear_stale(recorded):
        print(
            f"serendip serve: stack {args.stack!r} was not stopped cleanly (process "
            f"{recorded.pid} is gone); removed its stale state file",
            file=sys.stderr,
        )
    elif recorded is not None:
        running = "runs" if liveness(recorded) == "up" else "runs (not answering)"
        print(
            f"serendip serve: stack {args.stack!r} {running} at {recorded.url} (process "
            f"{recorded.pid}, {state_path(args.stack)}); stop it, or pass --stack OTHER",
            file=sys.stderr,
        )
        return 2
    data_dir = args.data or default_data_dir(args.stack)
    snapshot = data_dir / SNAPSHOT_FILE
    if not args.fresh and snapshot.is_file():
        size = snapshot.stat().st_size / 1e6
        print(f"restoring stack {args.stack!r} from {snapshot} ({size:.1f} MB)...", flush=True)
    stack = LocalStack(
        name=args.stack,
        data_dir=data_dir,
        fresh=args.fresh,
        learn=args.learn,
        host=args.host,
        port=args.port,
        api_key=args.api_key,
        webhook_secret=args.webhook_secret,
        sweep_interval=args.sweep_interval,
        metrics=args.metrics,
        api_workers=args.workers,
    )
    try:
        stack.start()
    except DataInUseError as error:
        print(f"serendip serve: {error}", file=sys.stderr)
        return 2
    except OSError as error:
        print(f"serendip serve: cannot start on {args.host}:{args.port}: {error}", file=sys.stderr)
        return 1
    except MotoStartError as error:  # e.g. a snapshot it cannot restore
        print(f"serendip serve: {error}", file=sys.stderr)
        return 1
    previous: dict[signal.Signals, Any] = {}
    try:
        print(banner(stack, None), flush=True)
        previous = _wait_for_signal()
        print("\nstopping...", flush=True)
    finally:
        # Our handlers stay while the stack stops: a second Ctrl-C (or a SIGTERM beside it)
        # must not interrupt the stop and its last snapshot.
        stack.stop()
        _restore_signals(previous)
    print("stopped", flush=True)
    return 0
