"""moto's WSGI application on waitress: kept-alive connections and a fixed pool of threads.

moto's own server (werkzeug's development server) closes the connection after every response
and starts a thread per connection, so every AWS call of the stack pays a TCP handshake on both
sides and a thread start in the server. waitress keeps HTTP/1.1 connections open (botocore's
pools reuse them) and hands requests to ``threads`` long-lived threads. Measured on one table
(``python -m benchmarks.moto_server``): about 40% less server CPU per call.

moto also lists its package directory (some 200 ``isdir`` calls) on every request to recognise
a host name that is a service's name; the list never changes while the server runs, so it is
read once.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from collections.abc import Iterable
from functools import cache
from typing import Any

# SQS long polls hold a thread each for up to 20 s (the stack's pollers: a few per queue), and
# concurrent API workers and the learner each want one for their calls.
THREADS = 48
# Every botocore client of every worker keeps up to 10 connections open.
CONNECTION_LIMIT = 1000


def _cached_module_list() -> None:
    from moto import backends

    listed: Any = backends.list_of_moto_modules
    if getattr(listed, "cache_info", None) is not None:
        return  # installed already

    @cache
    def modules() -> tuple[str, ...]:
        return tuple(listed())

    def list_of_moto_modules() -> Iterable[str]:
        return modules()

    list_of_moto_modules.cache_info = modules.cache_info  # type: ignore[attr-defined]
    backends.list_of_moto_modules = list_of_moto_modules


def create(host: str, port: int, threads: int = THREADS) -> Any:
    """A waitress server of moto's application on ``host:port`` (call ``run()`` to serve)."""
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
    from waitress.server import create_server

    _cached_module_list()
    os.environ.setdefault("MOTO_PORT", str(port))  # moto builds queue URLs and the like with it
    application = DomainDispatcherApplication(create_backend_app)
    return create_server(
        application,
        host=host,
        port=port,
        threads=threads,
        connection_limit=CONNECTION_LIMIT,
        channel_timeout=300,  # an idle pooled connection is closed after 5 minutes
        asyncore_use_poll=True,  # no select() limit on file descriptors
        ident="moto",
    )


def main(argv: list[str]) -> None:
    """``-H HOST -p PORT``: serve until SIGTERM or SIGINT, which exit through ``sys.exit``.

    Exiting through ``sys.exit`` runs the ``atexit`` hooks (the last snapshot of the state).
    """
    parser = argparse.ArgumentParser(prog="python -m local.moto_main")
    parser.add_argument("-H", "--host", default="127.0.0.1")
    parser.add_argument("-p", "--port", type=int, required=True)
    args = parser.parse_args(argv)
    server = create(args.host, args.port)

    def stop(signum: int, frame: Any) -> None:
        sys.exit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    server.run()
