"""``driftrec serve --workers N``: N API processes on one port, connections spread by the kernel.

uvicorn's own workers share one listening socket, and the process whose event loop wakes
first accepts every connection waiting, so keep-alive clients pile onto one process.
Measured with `driftrec bench serve --workers 2` (8 keep-alive connections, 2 cores):
one process used 2.6 times the CPU time of the other and the pair served 318
requests/s, what one process serves alone. Here every process binds the port itself
with ``SO_REUSEPORT`` and the kernel hashes each new connection to one of their
sockets: 618 requests/s, both processes 16.9 s of CPU time.

A keep-alive connection stays with the process it hashed to, and a few connections hash
unevenly (8 over 2 processes split 4 and 4 only 27 % of the time; a bench run that drew
an uneven split measured p50 19.7 ms instead of 13 ms). So each process publishes how
many connections it holds (``FairShare``), and one holding more than its share closes a
connection after its response (``Connection: close``); the client reconnects and the
kernel hashes the new connection again, until the split is even.

The parent binds and listens on every process's socket before starting them: connections
that arrive while a process loads its model wait in its socket's queue instead of all
going to the process that was ready first (and a restarted process takes over the
socket, and the queue, of the one it replaces).

Before any process starts, the parent binds the port once without ``SO_REUSEPORT``: a
port held by anything else, an older `driftrec serve` with workers included, fails there
with "address in use" instead of being silently shared with the old server.

The parent restarts a process that exits after it was up, stops every process when one
fails while starting (a second start would fail the same way), and on SIGINT or SIGTERM
stops them all and returns.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import socket
import threading
import time
from collections.abc import Callable, MutableSequence
from multiprocessing.process import BaseProcess
from types import FrameType
from typing import Any

from driftrec.core import InfraError
from driftrec.ops.settings import Settings
from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["FairShare", "reuseport_socket", "serve_workers"]

_log = logging.getLogger(__name__)

#: A process that exits sooner than this after its start failed to start.
_STARTUP_S = 30.0
_STOP_TIMEOUT_S = 30.0


def _family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def reuseport_socket(host: str, port: int) -> socket.socket:
    """A TCP socket listening on ``(host, port)`` that other ``SO_REUSEPORT`` sockets share."""
    # IPPROTO_TCP spelled out: asyncio sets TCP_NODELAY only on sockets created with it,
    # and without it every response waits for the client's delayed ACK (~40 ms).
    sock = socket.socket(_family(host), socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.listen(2048)
    return sock


def _check_port_free(host: str, port: int) -> None:
    with socket.socket(_family(host), socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # TIME_WAIT is fine
        try:
            probe.bind((host, port))
        except OSError as error:
            raise InfraError(
                f"cannot serve on {host}:{port}: {error.strerror} (another server holds "
                "the port: stop it, e.g. `make down`, or pass --port)"
            ) from None


class FairShare:
    """ASGI middleware: ask clients to reconnect while this process holds more than its
    share of the connections of all processes (see the module docstring)."""

    def __init__(self, app: ASGIApp, counts: MutableSequence[int], slot: int) -> None:
        self.app = app
        self.counts = counts  # shared memory: connections each process held when last asked
        self.slot = slot
        self.connections: Callable[[], int] = lambda: 0  # set once the server exists

    def over_share(self) -> bool:
        """Publish this process's connections; True when it holds more than its share."""
        mine = self.connections()
        self.counts[self.slot] = mine
        share = -(-sum(self.counts) // len(self.counts))  # ceil: odd totals leave one over
        return mine > share

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def shedding_send(message: Message) -> None:
            if message["type"] == "http.response.start" and self.over_share():
                headers = [*message.get("headers", []), (b"connection", b"close")]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, shedding_send)


def _serve_one(env: dict[str, str], sock: socket.socket, counts: Any, slot: int) -> None:
    """One API process (the target of each child), serving on ``sock``."""
    os.environ.update(env)
    import torch
    import uvicorn
    from driftrec.ops.serving.app import create_app

    torch.set_num_threads(1)  # a core per process: see run_server
    app = FairShare(create_app(Settings()), counts, slot)
    server = uvicorn.Server(uvicorn.Config(app, access_log=False, log_level="info"))
    app.connections = lambda: len(server.server_state.connections)
    server.run(sockets=[sock])


def serve_workers(
    settings: Settings, host: str, port: int, workers: int, *, startup_s: float = _STARTUP_S
) -> None:
    """Run ``workers`` API processes on ``host:port`` until SIGINT/SIGTERM; blocks. A
    process that exits within ``startup_s`` of its start failed to start: all stop."""
    from driftrec.ops.worker_process import settings_env

    _check_port_free(host, port)
    env = settings_env(settings)
    sockets = [reuseport_socket(host, port) for _ in range(workers)]
    context = multiprocessing.get_context("spawn")  # no fork of a process holding threads
    counts = context.Array("i", workers, lock=False)
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}

    def start(slot: int) -> tuple[BaseProcess, float]:
        process = context.Process(
            target=_serve_one,
            args=(env, sockets[slot], counts, slot),
            name=f"driftrec-api-{slot}",
        )
        process.start()
        return process, time.monotonic()

    running = [start(slot) for slot in range(workers)]
    failed: str | None = None
    try:
        while not stop.wait(0.5):
            for slot, (process, started) in enumerate(running):
                if process.is_alive():
                    continue
                if time.monotonic() - started < startup_s:
                    failed = (
                        f"API process {slot} exited with code {process.exitcode} while starting"
                    )
                    stop.set()
                    break
                _log.error(
                    "API process %d exited with code %s: restarting it", slot, process.exitcode
                )
                running[slot] = start(slot)
    finally:
        for process, _ in running:
            if process.is_alive():
                process.terminate()  # SIGTERM: uvicorn finishes the requests in flight
        deadline = time.monotonic() + _STOP_TIMEOUT_S
        for process, _ in running:
            process.join(max(0.0, deadline - time.monotonic()))
            if process.is_alive():
                process.kill()
                process.join()
        for sock in sockets:
            sock.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if failed is not None:
        raise InfraError(f"{failed} (its log lines are above)")
