"""Entry point of the hub-tools image (local/lambda-image/build.sh): moto's server, or the channel
sandboxes and the webhook receiver, as containers on the docker network of ``make sam-invoke``.

    python3 -m hub_tools moto [--port 5000]
    python3 -m hub_tools sandbox SPEC

SPEC is JSON: ``{"advertise_host": "sandbox", "servers": [{"kind": "xunlian", "port": 8001}, ...]}``;
each server is one of ``xunlian``, ``partner`` (``client_id``, ``client_secret``), ``kingdee``
(``access_token``), ``ekuaibao`` (``access_token``, ``hmac_secret``) or ``receiver`` (``secret``).

The repository's simulators bind 127.0.0.1 only, the loopback of whatever network namespace they run
in. Here that namespace is the container's own: they listen on its interfaces (the tier's network),
and the host reaches them only through the ports the tier publishes on the host's 127.0.0.1.
"""

from __future__ import annotations

import argparse
import importlib
import json
import signal
import sys
import threading
from typing import Any

CONTAINER_INTERFACES = "0.0.0.0"  # noqa: S104 (the container's own network namespace, see above)


def _wait_for_signal() -> None:
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    while not stop.wait(1.0):
        pass


def run_moto(port: int) -> None:
    # local/atomic_moto.py from the repository: DynamoDB requests one at a time, as the hub relies on.
    from local.atomic_moto import AtomicMotoServer

    AtomicMotoServer(CONTAINER_INTERFACES, port).start()
    print(f"moto server on port {port}", flush=True)
    _wait_for_signal()


def _module(kind: str) -> Any:
    # The simulators bind (and check) sandbox.base's HOST: in the container, every interface.
    importlib.import_module("sandbox.base").HOST = CONTAINER_INTERFACES
    module = importlib.import_module(f"sandbox.{kind}")
    module.HOST = CONTAINER_INTERFACES
    return module


def start_server(server: dict[str, Any], advertise_host: str) -> Any:
    kind, port = server["kind"], int(server["port"])
    advertised = f"http://{advertise_host}:{port}"
    module = _module(kind)
    if kind == "xunlian":
        started = module.run(CONTAINER_INTERFACES, port)
    elif kind == "partner":
        started = module.run(
            CONTAINER_INTERFACES, port, client_id=server["client_id"], client_secret=server["client_secret"]
        )
    elif kind == "kingdee":
        started = module.run(
            CONTAINER_INTERFACES, port, access_token=server["access_token"], issue_delay_ms=server.get("delay_ms", 0)
        )
    elif kind == "ekuaibao":
        started = module.run(
            CONTAINER_INTERFACES, port, access_token=server["access_token"], hmac_secret=server.get("hmac_secret")
        )
        started.base_url = advertised  # the invoice files' URLs must name the container
    elif kind == "receiver":
        started = module.run(CONTAINER_INTERFACES, port, secret=server.get("secret"))
        started.base_url, started.url = advertised, f"{advertised}/hook"
    else:
        raise SystemExit(f"unknown sandbox kind {kind!r}")
    print(f"{kind} sandbox on port {port} ({advertised})", flush=True)
    return started


def run_sandboxes(spec: dict[str, Any]) -> None:
    advertise_host = spec.get("advertise_host", "sandbox")
    for server in spec["servers"]:
        start_server(server, advertise_host)
    _wait_for_signal()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python3 -m hub_tools", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    moto = commands.add_parser("moto", help="moto's server (DynamoDB serialized)")
    moto.add_argument("--port", type=int, default=5000)
    sandbox = commands.add_parser("sandbox", help="channel sandboxes and the webhook receiver")
    sandbox.add_argument("spec", help="JSON, see the module docstring")
    args = parser.parse_args(argv)
    if args.command == "moto":
        run_moto(args.port)
    else:
        run_sandboxes(json.loads(args.spec))
    return 0


if __name__ == "__main__":
    sys.exit(main())
