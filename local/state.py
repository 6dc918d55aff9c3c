"""What the local run keeps across a restart: tables, files and the bearer token, under ``<state>/saved/``.

moto keeps nothing of its own, so the run exports through boto3 (saved on a clean stop, and every
``FAPIAO_HUB_SAVE_SECONDS``) and imports after provisioning from the template at the next start:

* ``tables/<logical id>.json``: every item, in DynamoDB's typed JSON (binary values as base64);
* ``files/<logical id>/<key>``: every S3 object as it is (invoice files, raw answers), with
  ``files/<logical id>.json`` holding each object's content type;
* ``token``: the local business system's bearer token, so scripts and curl keep working;
* ``operator-token``: the local operator's (the console and ``fapiao-hub ops``);
* ``sandboxes/<channel>.json``: each channel sandbox's records (:class:`sandbox.base.SavedState`:
  invoices issued, numbering, voids, bills, pushes not yet taken), so a restarted sandbox goes on
  numbering where it stopped and answers about what it issued before, as the real vendor would.

Each save writes the tables before the sandboxes: a sandbox's records are never older than the
hub's, so the hub never holds an invoice its sandbox forgot (whose number it would issue again).
The sandboxes' fault switches and settings are not saved: the run sets them at each start.

Queues are not saved: a message in flight at the stop is lost, and the poller re-queues every due
application from the due-work index (a RECEIVED or SUBMITTED one is due again within its claim), so
no application is lost; an outcome notification in flight is not sent again.
A hard kill (SIGKILL) loses what changed since the last save.

``FAPIAO_HUB_FRESH=1`` (``make run FRESH=1``) deletes ``saved/`` first: tables, files, sandboxes and
a new token.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import shutil
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from local.pumps import Pump

log = logging.getLogger("local.state")

SAVED = "saved"
SAVE_SECONDS = float(os.environ.get("FAPIAO_HUB_SAVE_SECONDS", "30"))
_BINARY = "$base64"


def saved_dir(state: Path) -> Path:
    return state / SAVED


def fresh_requested() -> bool:
    return os.environ.get("FAPIAO_HUB_FRESH", "").strip().lower() not in ("", "0", "false", "no")


def forget(state: Path) -> None:
    """Start empty: the saved tables, files and token are deleted."""
    shutil.rmtree(saved_dir(state), ignore_errors=True)


def saved_token(state: Path, name: str = "token") -> str | None:
    """A token the last run saved (``token``: the business system's, ``operator-token``: the operator's)."""
    path = saved_dir(state) / name
    token = path.read_text(encoding="utf-8").strip() if path.is_file() else ""
    return token or None


def _encode(value: Any) -> Any:
    if isinstance(value, bytes | bytearray):
        return {_BINARY: base64.b64encode(bytes(value)).decode("ascii")}
    raise TypeError(f"not JSON: {type(value).__name__}")


def _decode(obj: dict[str, Any]) -> Any:
    return base64.b64decode(obj[_BINARY]) if obj.keys() == {_BINARY} else obj


@dataclass
class Counts:
    applications: int = 0
    invoices: int = 0
    files: int = 0

    def __str__(self) -> str:
        return f"{self.applications} applications, {self.invoices} invoices, {self.files} files"


class LocalState:
    """Exports and imports the run's tables and buckets (``resources``: local.provision.Resources)."""

    def __init__(
        self,
        state: Path,
        resources: Any,
        session: Any,
        endpoint: str,
        region: str,
        token: str,
        operator_token: str | None = None,
    ) -> None:
        self.dir = saved_dir(state)
        self._tables: dict[str, str] = resources.tables
        self._buckets: dict[str, str] = resources.buckets
        self._dynamodb = session.client("dynamodb", endpoint_url=endpoint, region_name=region)
        self._s3 = session.client("s3", endpoint_url=endpoint, region_name=region)
        self._token = token
        self._operator_token = operator_token
        self._sandboxes: dict[str, tuple[Any, Any]] = {}  # channel -> (server, its SavedState): restore_sandboxes
        self._lock = threading.Lock()  # the periodic save and the stop's

    # -------------------------------------------------------------- restore
    def restore(self) -> Counts | None:
        """Load what the last run saved into the freshly provisioned tables and buckets; None if nothing."""
        previous = self.dir.with_name(SAVED + ".old")
        if not self.dir.is_dir() and previous.is_dir():  # stopped between the two renames of a save
            previous.rename(self.dir)
        if not self.dir.is_dir():
            return None
        counts = Counts()
        for logical, table in self._tables.items():
            path = self.dir / "tables" / f"{logical}.json"
            if not path.is_file():
                continue
            items = json.loads(path.read_text(encoding="utf-8"), object_hook=_decode)
            self._write_items(table, items)
            if logical == "ApplicationsTable":
                counts.applications = sum(1 for item in items if "open_apply_code" in item)
            elif logical == "InvoicesTable":
                counts.invoices = len(items)
        for logical, bucket in self._buckets.items():
            root = self.dir / "files" / logical
            manifest_path = self.dir / "files" / f"{logical}.json"
            manifest = json.loads(manifest_path.read_text(encoding="utf-8")) if manifest_path.is_file() else {}
            for key, meta in manifest.items():
                path = _inside(root, key)
                if path is None or not path.is_file():
                    continue
                extra = {"ContentType": meta["content_type"]} if meta.get("content_type") else {}
                self._s3.put_object(Bucket=bucket, Key=key, Body=path.read_bytes(), **extra)
                counts.files += 1
        return counts

    def restore_sandboxes(self, sandboxes: dict[str, Any]) -> int:
        """Give each channel sandbox (``sandbox.base.SandboxServer``) what the last run saved of it, and
        save it from now on; how many were restored. A snapshot that cannot be read is logged and
        skipped (that sandbox starts empty), never a reason not to start."""
        restored = 0
        for name, server in sandboxes.items():
            saved = server.saved() if hasattr(server, "saved") else None
            if saved is None:
                continue
            self._sandboxes[name] = (server, saved)
            path = self.dir / "sandboxes" / f"{name}.json"
            if not path.is_file():
                continue
            try:  # on another port now: the file URLs it handed out move with it
                saved.restore(json.loads(path.read_text(encoding="utf-8")), base_url=server.base_url)
            except (OSError, ValueError, TypeError, KeyError) as error:
                log.error("sandbox %s: could not restore %s (%s); it starts empty", name, path, error)
                continue
            restored += 1
        return restored

    def _write_items(self, table: str, items: list[dict[str, Any]]) -> None:
        for start in range(0, len(items), 25):  # BatchWriteItem takes at most 25
            request = {table: [{"PutRequest": {"Item": item}} for item in items[start : start + 25]]}
            while request:
                request = self._dynamodb.batch_write_item(RequestItems=request).get("UnprocessedItems") or {}

    # -------------------------------------------------------------- save
    def save(self) -> Counts:
        """Write everything to a new folder, then swap it in: a save cut short leaves the last one whole."""
        with self._lock:
            work = self.dir.with_name(SAVED + ".new")
            shutil.rmtree(work, ignore_errors=True)
            (work / "tables").mkdir(parents=True)
            counts = Counts()
            for logical, table in self._tables.items():
                items = [
                    item
                    for page in self._dynamodb.get_paginator("scan").paginate(TableName=table)
                    for item in page["Items"]
                ]
                text = json.dumps(items, ensure_ascii=False, default=_encode)
                (work / "tables" / f"{logical}.json").write_text(text, encoding="utf-8")
                if logical == "ApplicationsTable":
                    counts.applications = sum(1 for item in items if "open_apply_code" in item)
                elif logical == "InvoicesTable":
                    counts.invoices = len(items)
            for logical, bucket in self._buckets.items():
                root = work / "files" / logical
                manifest: dict[str, dict[str, str]] = {}
                for page in self._s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
                    for entry in page.get("Contents", []):
                        path = _inside(root, entry["Key"])
                        if path is None:
                            log.warning("not saved: object key %r does not make a file name", entry["Key"])
                            continue
                        answer = self._s3.get_object(Bucket=bucket, Key=entry["Key"])
                        path.parent.mkdir(parents=True, exist_ok=True)
                        path.write_bytes(answer["Body"].read())
                        manifest[entry["Key"]] = {"content_type": answer.get("ContentType", "")}
                        counts.files += 1
                (work / "files").mkdir(exist_ok=True)
                (work / "files" / f"{logical}.json").write_text(json.dumps(manifest, indent=1), encoding="utf-8")
            if self._sandboxes:  # after the tables: a sandbox knows at least what the hub knows
                (work / "sandboxes").mkdir()
                for name, (server, saved) in self._sandboxes.items():
                    text = json.dumps(saved.snapshot(base_url=server.base_url), ensure_ascii=False)
                    (work / "sandboxes" / f"{name}.json").write_text(text, encoding="utf-8")
            for name, value in (("token", self._token), ("operator-token", self._operator_token)):
                if value:
                    fd = os.open(work / name, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # bearer tokens: owner only
                    with os.fdopen(fd, "w", encoding="utf-8") as fh:
                        fh.write(value + "\n")
            old = self.dir.with_name(SAVED + ".old")
            shutil.rmtree(old, ignore_errors=True)
            if self.dir.exists():
                self.dir.rename(old)
            work.rename(self.dir)
            shutil.rmtree(old, ignore_errors=True)
            return counts


def _inside(root: Path, key: str) -> Path | None:
    """The file for object ``key`` under ``root``; None for a key that would leave it or name a folder."""
    if not key or key.endswith("/") or key.startswith("/"):
        return None
    parts = key.split("/")
    if any(part in ("", ".", "..") for part in parts):
        return None
    return root.joinpath(*parts)


class PeriodicSave(Pump):
    """Saves every ``interval`` seconds, so a hard kill loses at most that much (stopped with the pumps)."""

    def __init__(self, state: LocalState, interval: float) -> None:
        super().__init__("state save")
        self._state = state
        self._interval = interval

    def poll_once(self) -> int:
        if self._stop_event.wait(self._interval):
            return 0  # stopping: the stop saves
        self._state.save()  # a failure is logged by Pump.run; the last save stands
        return 1
