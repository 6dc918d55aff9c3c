"""moto with DynamoDB's atomicity: one DynamoDB request at a time.

DynamoDB evaluates a conditional write atomically, per item; the hub's exactly-once dispatch rests
on that. moto's backends are plain Python objects without locks, so two threads can both pass the
same condition (seen: two dispatchers both claiming one application). Serializing moto's DynamoDB
request handling restores the guarantee the hub relies on, for the moto server of the local run
and for moto in-process in tests. Other services are left concurrent: an SQS long poll must not
hold up everything else.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from typing import Any

_LOCK = threading.RLock()


def serialized_wsgi(app: Callable[..., Any]) -> Callable[..., Any]:
    """WSGI middleware: the wrapped app handles one DynamoDB request at a time (the rest concurrently)."""

    def application(environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        if not environ.get("HTTP_X_AMZ_TARGET", "").startswith("DynamoDB"):
            return app(environ, start_response)
        with _LOCK:
            # Materialize the body inside the lock: moto builds it while handling.
            return list(app(environ, start_response))

    return application


@contextlib.contextmanager
def serialized_in_process() -> Iterator[None]:
    """Inside ``mock_aws()``: every mocked DynamoDB call runs alone."""
    from moto.core.botocore_stubber import BotocoreStubber

    original = BotocoreStubber.__call__

    def locked(self: Any, event_name: str, *args: Any, **kwargs: Any) -> Any:
        if ".dynamodb." not in event_name:
            return original(self, event_name, *args, **kwargs)
        with _LOCK:
            return original(self, event_name, *args, **kwargs)

    BotocoreStubber.__call__ = locked  # type: ignore[method-assign]
    try:
        yield
    finally:
        BotocoreStubber.__call__ = original  # type: ignore[method-assign]


class AtomicMotoServer:
    """moto's server on 127.0.0.1 (threaded connections, serialized handling).

    moto keeps its state in process-wide backends: a server started after another one in the same
    process (a test, then the benchmark) would inherit the first one's tables, invoices and queues.
    The first server live in a process starts from empty backends.
    """

    _live = 0
    _live_lock = threading.Lock()

    def __init__(self, host: str = "127.0.0.1", port: int = 0):
        from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
        from werkzeug.serving import make_server

        app = serialized_wsgi(DomainDispatcherApplication(create_backend_app))
        self._server = make_server(host, port, app, threaded=True, request_handler=MotoRequestHandler)
        self._thread = threading.Thread(target=self._server.serve_forever, name="moto-server", daemon=True)

    def start(self) -> AtomicMotoServer:
        from moto.moto_api._internal.models import moto_api_backend

        with AtomicMotoServer._live_lock:
            if AtomicMotoServer._live == 0:
                moto_api_backend.reset()
            AtomicMotoServer._live += 1
        self._thread.start()
        return self

    def get_host_and_port(self) -> tuple[str, int]:
        host, port = self._server.server_address[:2]
        return str(host), int(port)

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)
        with AtomicMotoServer._live_lock:
            AtomicMotoServer._live -= 1


class MotoProcess:
    """The same server in a child process of its own (``python -m local.atomic_moto``).

    moto answers in Python: in the process that also runs every function, its O(n) SQS receives and
    index queries hold the interpreter the functions need (the 10,000-order soak did not drain so).
    In a child it has a core of its own. The child exits when it is stopped or when this process
    goes away (its stdin, a pipe from here, reaches end of file).
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0, ready_seconds: float = 60.0):
        import subprocess
        import sys
        from pathlib import Path

        root = Path(__file__).resolve().parent.parent
        self._child = subprocess.Popen(  # noqa: S603 - this interpreter, this module
            [sys.executable, "-m", "local.atomic_moto", "--host", host, "--port", str(port)],
            cwd=root,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self._host = host
        self._port = self._read_port(ready_seconds)

    def _read_port(self, ready_seconds: float) -> int:
        result: list[str] = []
        reader = threading.Thread(target=lambda: result.append(self._child.stdout.readline()), daemon=True)
        reader.start()
        reader.join(ready_seconds)
        line = result[0] if result else ""
        if not line.startswith("port "):
            self.stop()
            raise RuntimeError(f"moto's process did not start (it said {line!r})")
        return int(line.split()[1])

    def start(self) -> MotoProcess:
        return self

    def get_host_and_port(self) -> tuple[str, int]:
        return self._host, self._port

    def stop(self) -> None:
        import subprocess

        if self._child.poll() is None:
            self._child.terminate()
            try:
                self._child.wait(10)
            except subprocess.TimeoutExpired:
                self._child.kill()
                self._child.wait(10)
        for stream in (self._child.stdin, self._child.stdout):
            if stream is not None:
                stream.close()


def main(argv: list[str] | None = None) -> int:
    """The child of :class:`MotoProcess`: serve, say the port on stdout, stop at end of stdin."""
    import argparse
    import logging
    import os
    import sys

    parser = argparse.ArgumentParser(prog="python -m local.atomic_moto", description=main.__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # not a line per request
    server = AtomicMotoServer(args.host, args.port).start()
    print(f"port {server.get_host_and_port()[1]}", flush=True)
    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # nobody reads the pipe any more
    sys.stdin.read()  # until the parent closes the pipe (stop) or dies
    server.stop()
    return 0


if __name__ == "__main__":
    import sys

    sys.exit(main())
