"""Listening and serving: the socket, the HTTP server (uvicorn), and the signals that end it.

The socket is bound here, before the model is loaded, so that a port in use
is said at once in one line, and ``--port 0`` gives the port the system
chose before anything else happens. SIGINT and SIGTERM end the server the
same way: it stops taking connections, lets the requests it holds finish
(GRACE_S at most), and :func:`run` returns the signal, which is a normal
end for a server.
"""

from __future__ import annotations

import errno
import ipaddress
import logging
import signal
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import uvicorn

from cnnkit.errors import InputError

BACKLOG = 128
# Connections served at once; past it, uvicorn answers 503 at once. Each holds at
# most one body within the size limit, so this bounds the memory bodies take.
MAX_CONNECTIONS = 64
# How long the requests in progress may take to finish after SIGINT or SIGTERM.
GRACE_S = 5


def listen(host: str, port: int) -> socket.socket:
    """A TCP socket listening on ``host``:``port`` (0: a free port), or the InputError to say."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise InputError(
            f"--host {host}: {exc.strerror}",
            hint="give an address of this machine: 127.0.0.1 (this machine only), or 0.0.0.0",
        ) from None
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(BACKLOG)
    except OSError as exc:
        sock.close()
        raise _bind_error(exc, host, port) from None
    return sock


def _bind_error(exc: OSError, host: str, port: int) -> InputError:
    if exc.errno == errno.EADDRINUSE:
        return InputError(
            f"port {port} on {host} is in use",
            hint="stop what listens there, or choose another --port (--port 0 picks a free one)",
        )
    if exc.errno == errno.EACCES:
        return InputError(
            f"port {port} on {host} needs more privileges than this user has",
            hint="choose a --port above 1023",
        )
    if exc.errno == errno.EADDRNOTAVAIL:
        return InputError(
            f"--host {host} is not an address of this machine",
            hint="give 127.0.0.1 (this machine only), or 0.0.0.0 (every interface)",
        )
    return InputError(f"cannot listen on {host}:{port}: {exc.strerror or exc}")


def url_of(sock: socket.socket) -> str:
    """``http://HOST:PORT`` of a listening socket (IPv6 hosts in brackets)."""
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def is_loopback(sock: socket.socket) -> bool:
    """Whether only this machine can reach the socket."""
    return ipaddress.ip_address(sock.getsockname()[0]).is_loopback


class _Server(uvicorn.Server):
    """uvicorn's server, whose SIGINT and SIGTERM end it without being raised again.

    uvicorn raises a signal that stopped it once more after shutting down, for
    the handler that was there before; a server that shut down as asked has
    ended normally. ``stopped_by``: the signal that ended it (None: none did).
    A second signal stops at once, without waiting for requests in progress.
    """

    stopped_by: int | None = None

    @contextmanager
    def capture_signals(self) -> Iterator[None]:
        if threading.current_thread() is not threading.main_thread():
            yield
            return

        def on_signal(signum: int, frame: Any) -> None:
            if self.should_exit:
                self.force_exit = True
            self.should_exit = True
            self.stopped_by = self.stopped_by or signum

        wanted = (signal.SIGINT, signal.SIGTERM)
        previous = {sig: signal.signal(sig, on_signal) for sig in wanted}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)


def run(app: Any, sock: socket.socket) -> int | None:
    """Serve ``app`` on the listening ``sock`` until SIGINT or SIGTERM; the signal (or None)."""
    config = uvicorn.Config(
        app,
        http="h11",
        loop="asyncio",
        ws="none",
        lifespan="off",
        log_config=None,
        access_log=False,
        server_header=False,
        proxy_headers=False,  # no proxy's X-Forwarded-For is taken for the client's address
        limit_concurrency=MAX_CONNECTIONS,
        backlog=BACKLOG,
        timeout_keep_alive=5,
        timeout_graceful_shutdown=GRACE_S,
    )
    server = _Server(config)
    with _warnings_to_cnnkit():
        server.run(sockets=[sock])
    return server.stopped_by


class _ToCnnkit(logging.Handler):
    """uvicorn's warnings and errors as the ``cnnkit`` logger's warnings: one line each."""

    def emit(self, record: logging.LogRecord) -> None:
        from cnnkit import console

        console.warn(" ".join(record.getMessage().split()))


@contextmanager
def _warnings_to_cnnkit() -> Iterator[None]:
    log = logging.getLogger("uvicorn")
    handler = _ToCnnkit(logging.WARNING)
    before = (log.level, log.propagate)
    log.addHandler(handler)
    log.setLevel(logging.WARNING)
    log.propagate = False
    try:
        yield
    finally:
        log.removeHandler(handler)
        log.setLevel(before[0])
        log.propagate = before[1]
