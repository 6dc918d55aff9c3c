"""S3 file store: the only code that touches S3.

Holds invoice files (decoded strictly, sniffed by their magic bytes, hashed, docs/rules.md section 7)
and application documents too large for a DynamoDB item. Objects are encrypted at rest by the
bucket's default (template.yaml) and every write asks for SSE-S3 explicitly as well.

Invoice files, in the order the workflow meets them:

- ``decode_base64_strict``: base64 text from a channel -> bytes, or ``InvalidFile``.
- ``sniff_format``: bytes -> "pdf" | "ofd" | "xml", or ``InvalidFile``. The bytes decide, never the
  channel's claim.
- ``FileStore.put_invoice_file``: bytes -> one S3 object under a stable key, with its SHA-256.
- ``FileStore.store_invoice_file``: the one call the workflow makes per ``InvoiceFile``; never raises
  for bad content (a garbage file is recorded as a failed file and the invoice is still recorded).
  S3 errors do raise: they are the hub's trouble, not the file's, and the workflow retries them.
- ``LinkedFiles.fetch``: a file a channel linked to (a URL), fetched within that channel's policy
  (file_fetch.py); the use cases ask it, they make no HTTP request of their own.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import io
import re
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import date, datetime
from typing import TYPE_CHECKING, Any, Literal

from aws_lambda_powertools import Logger
from botocore.exceptions import ClientError

from fapiao_hub.infra.file_fetch import FetchPolicy, fetch_file
from fapiao_hub.infra.store.base import DocumentOverflow

if TYPE_CHECKING:
    from fapiao_hub.domain.results import InvoiceFile

logger = Logger(child=True)

FileFormat = Literal["pdf", "ofd", "xml"]

CONTENT_TYPES: dict[str, str] = {
    "pdf": "application/pdf",
    "ofd": "application/ofd",
    "xml": "application/xml",
}

# Where the daily reconciliation reports go (template.yaml grants the function this prefix only).
REPORT_PREFIX = "reports/reconciliation/"

# The longest a presigned URL may live with SigV4 (7 days).
MAX_PRESIGN_SECONDS = 7 * 24 * 3600

_ASCII_WHITESPACE = re.compile(r"[ \t\r\n\f\v]+")
_UTF8_BOM = b"\xef\xbb\xbf"
_XML_LEADING_WHITESPACE = b" \t\r\n"
# Key components come from channel answers: keep them to characters that cannot form a path.
_SAFE_KEY_PART = re.compile(r"[A-Za-z0-9_-]{1,64}")


class InvalidFile(ValueError):
    """The content is not an invoice file; ``reason`` says why, for the invoice record."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def decode_base64_strict(text: str) -> bytes:
    """Decode a channel's base64 text, rejecting anything that is not base64.

    ASCII whitespace anywhere is removed first: JDK MIME encoders (and others) wrap lines at 76
    characters with CRLF. Everything else is strict (``base64.b64decode(validate=True)``): only the
    alphabet, correct ``=`` padding, nothing after the padding.

    The URL-safe alphabet (``-`` and ``_`` for ``+`` and ``/``) is accepted only when the text uses
    it exclusively: a text mixing ``-``/``_`` with ``+``/``/`` is no encoding at all. URL-safe text
    must be padded like any other (strict: no guessing missing ``=``).
    """
    if not isinstance(text, str):
        raise InvalidFile(f"base64 content must be text, got {type(text).__name__}")
    compact = _ASCII_WHITESPACE.sub("", text)
    if not compact:
        raise InvalidFile("empty base64 content")
    if not compact.isascii():
        position = next(i for i, c in enumerate(compact) if not c.isascii())
        raise InvalidFile(f"base64 content has a non-ASCII character {compact[position]!r} at position {position}")
    urlsafe = "-" in compact or "_" in compact
    if urlsafe:
        if "+" in compact or "/" in compact:
            raise InvalidFile("base64 content mixes the standard (+/) and URL-safe (-_) alphabets")
        compact = compact.replace("-", "+").replace("_", "/")
    try:
        data = base64.b64decode(compact, validate=True)
    except binascii.Error as error:
        raise InvalidFile(f"not valid base64: {error}") from None
    if not data:
        raise InvalidFile("base64 content decodes to no bytes")
    return data


def sniff_format(data: bytes) -> FileFormat:
    """What the bytes are: "pdf", "ofd" or "xml"; ``InvalidFile`` for anything else.

    - PDF: starts with ``%PDF-``.
    - OFD: a zip (``PK\\x03\\x04``) that opens as one and holds ``OFD.xml`` at its root (GB/T 33190
      entry file). Any other zip is rejected.
    - XML: after an optional UTF-8 BOM and whitespace, ``<?xml`` or ``<``. An HTML page (a portal's
      error or login page fetched instead of the file) is rejected, although it starts with ``<``.
    """
    if not data:
        raise InvalidFile("empty file")
    if data.startswith(b"%PDF-"):
        return "pdf"
    if data.startswith(b"PK\x03\x04"):
        return _sniff_zip(data)
    text = data.removeprefix(_UTF8_BOM).lstrip(_XML_LEADING_WHITESPACE)
    if text.startswith(b"<"):
        head = text[:64].lower()
        if head.startswith((b"<!doctype html", b"<html")):
            raise InvalidFile("an HTML page, not an invoice file")
        return "xml"
    raise InvalidFile(f"not a PDF, OFD or XML file (first bytes: {data[:8].hex()})")


def _sniff_zip(data: bytes) -> FileFormat:
    buffer = io.BytesIO(data)
    if not zipfile.is_zipfile(buffer):
        raise InvalidFile("starts like a zip but is not a readable zip")
    try:
        with zipfile.ZipFile(buffer) as archive:
            names = archive.namelist()
    except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, OSError) as error:
        raise InvalidFile(f"starts like a zip but is not a readable zip: {error}") from None
    if "OFD.xml" in names:
        return "ofd"
    raise InvalidFile("a zip that is not an OFD (no OFD.xml at its root)")


@dataclass(frozen=True)
class StoredFile:
    """An invoice file in S3."""

    key: str
    format: str  # pdf, ofd, xml
    size: int
    sha256: str  # hex
    content_type: str


@dataclass(frozen=True)
class FileRecord:
    """What became of one ``InvoiceFile``: stored, or why not.

    ``ok`` False with ``error`` for content that is not an invoice file (bad base64, unknown
    magic bytes, a failed or skipped fetch). ``url`` keeps the channel's URL, when it gave one, so
    a file that was not fetched can be fetched later.
    """

    ok: bool
    stored: StoredFile | None
    error: str | None
    source: Literal["base64", "url"]
    url: str | None = None

    def to_item(self) -> dict[str, Any]:
        """A DynamoDB map (no None values): key, format, size, sha256, content_type; or error."""
        item: dict[str, Any] = {"ok": self.ok, "source": self.source}
        if self.stored is not None:
            item |= {
                "key": self.stored.key,
                "format": self.stored.format,
                "size": self.stored.size,
                "sha256": self.stored.sha256,
                "content_type": self.stored.content_type,
            }
        if self.error is not None:
            item["error"] = self.error
        if self.url is not None:
            item["url"] = self.url
        return item

    @classmethod
    def from_item(cls, item: dict[str, Any]) -> FileRecord:
        stored = None
        if "key" in item:
            stored = StoredFile(
                key=item["key"],
                format=item["format"],
                size=int(item["size"]),  # DynamoDB hands numbers back as Decimal
                sha256=item["sha256"],
                content_type=item.get("content_type") or CONTENT_TYPES.get(item["format"], "application/octet-stream"),
            )
        return cls(
            ok=bool(item["ok"]),
            stored=stored,
            error=item.get("error"),
            source=item["source"],
            url=item.get("url"),
        )


class FileStore(DocumentOverflow):
    def __init__(self, s3_client: Any, bucket: str):
        self._s3 = s3_client
        self._bucket = bucket

    def _put(self, key: str, data: bytes, content_type: str, **more: str) -> str:
        """One object written (server-side encrypted, as every object of the bucket); its ``s3://`` ref."""
        self._s3.put_object(
            Bucket=self._bucket, Key=key, Body=data, ContentType=content_type, **more, ServerSideEncryption="AES256"
        )
        return f"s3://{self._bucket}/{key}"

    def put_document(self, key: str, data: bytes) -> str:
        return self._put(key, data, "application/json", ContentEncoding="gzip")

    def get_document(self, ref: str) -> bytes:
        bucket, _, key = ref.removeprefix("s3://").partition("/")
        return self._s3.get_object(Bucket=bucket, Key=key)["Body"].read()

    def put_raw_callback(self, channel: str, at: datetime, data: bytes) -> str:
        """Archive a pushed body as it came, before anything reads it (no result may be lost)."""
        digest = hashlib.sha256(data).hexdigest()[:16]
        key = f"raw/callbacks/{channel}/{at:%Y/%m/%d}/{at:%H%M%S%f}-{digest}.body"
        return self._put(key, data, "application/octet-stream")

    def put_raw_answer(self, channel: str, request_number: str, at: str, data: bytes) -> str:
        """Keep a channel's answer the hub could not read, for a person to look at."""
        return self._put(f"raw/{channel}/{request_number}/{at}.bin", data, "application/octet-stream")

    def raw_answer_refs(self, channel: str, request_number: str, limit: int = 100) -> list[str]:
        """Every kept answer of a request number at a channel (put_raw_answer), oldest first: one per attempt."""
        prefix = f"raw/{channel}/{request_number}/"
        answer = self._s3.list_objects_v2(Bucket=self._bucket, Prefix=prefix, MaxKeys=limit)
        keys = sorted((o["Key"] for o in answer.get("Contents", ())), key=lambda k: (len(k), k))
        return [f"s3://{self._bucket}/{key}" for key in keys]

    def put_reconciliation_report(self, day: date, files: dict[str, tuple[bytes, str]]) -> list[str]:
        """The day's reconciliation report: ``reports/reconciliation/{yyyy-mm-dd}{suffix}`` per file.

        A later run the same day replaces it (the bucket's versioning keeps the earlier ones).
        ``files``: name suffix (".json", ".csv", ...) -> (bytes, content type). Returns the keys.
        """
        keys = []
        for suffix, (data, content_type) in files.items():
            key = f"{REPORT_PREFIX}{day.isoformat()}{suffix}"
            self._put(key, data, content_type)
            keys.append(key)
        return keys

    # --- invoice files ---------------------------------------------------------------------

    def put_invoice_file(
        self,
        *,
        seller_tax_number: str,
        issued_on: date | None,
        invoice_number: str,
        data: bytes,
        format_hint: str | None = None,
    ) -> StoredFile:
        """Store an invoice file's bytes under a stable key; the same bytes twice are one object.

        The key is ``invoices/{seller}/{yyyy}/{mm}/{invoice number}.{ext}`` (``undated`` for the
        year/month part when the issue date is unknown); the extension comes from the magic bytes.
        ``format_hint`` (what the channel claims) never overrides the bytes: a mismatch is only
        logged.

        Raises ``InvalidFile`` when the bytes are not an invoice file or a key part (seller tax
        number, invoice number) could form a path; S3 errors propagate.

        When the key already holds an object:

        - with the same SHA-256 (object metadata ``sha256``): nothing is written (the bucket is
          versioned; re-putting would pile up identical versions).
        - with a different SHA-256: a channel re-sent a different rendering of the same invoice
          (re-generated PDF, another signature time stamp). It is not overwritten silently: the new
          bytes go to ``{number}.{sha256[:12]}.{ext}`` and both are kept.

        Writes are conditional (``If-None-Match: *``) and come first: of two concurrent writers of
        different bytes to a fresh key, exactly one wins and the other takes the hash-suffixed key;
        the object's hash is read (HEAD) only when the key was taken.
        """
        for name, part in (("seller tax number", seller_tax_number), ("invoice number", invoice_number)):
            if not isinstance(part, str) or not _SAFE_KEY_PART.fullmatch(part):
                raise InvalidFile(f"{name} {part!r} cannot be part of a file key")
        file_format = sniff_format(data)
        if format_hint and format_hint.strip().lower().lstrip(".") != file_format:
            logger.warning(
                "invoice file hint %r but the bytes are %s (invoice %s)", format_hint, file_format, invoice_number
            )
        digest = hashlib.sha256(data).digest()
        sha256 = digest.hex()
        period = f"{issued_on:%Y}/{issued_on:%m}" if issued_on is not None else "undated"
        stem = f"invoices/{seller_tax_number}/{period}/{invoice_number}"
        candidates = (f"{stem}.{file_format}", f"{stem}.{sha256[:12]}.{file_format}", f"{stem}.{sha256}.{file_format}")
        stored = StoredFile(
            key="", format=file_format, size=len(data), sha256=sha256, content_type=CONTENT_TYPES[file_format]
        )
        for key in candidates:
            # PUT first: the condition detects an object already there, so a fresh key (the usual
            # case) costs one request; only a conflict needs the HEAD to compare the hashes.
            if self._put_new(key, data, stored, digest):
                return replace(stored, key=key)
            existing = self._stored_sha256(key)
            if existing == sha256:
                return replace(stored, key=key)
            if existing is None and self._put_new(key, data, stored, digest):
                return replace(stored, key=key)  # the object vanished between the two requests
        raise RuntimeError(f"no free key for invoice file {stem} ({sha256})")  # pragma: no cover - SHA-256 clash

    def _stored_sha256(self, key: str) -> str | None:
        """The sha256 metadata of the object under key; "" when it has none; None when absent."""
        try:
            head = self._s3.head_object(Bucket=self._bucket, Key=key)
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") in {"404", "NoSuchKey", "NotFound"}:
                return None
            raise
        return head.get("Metadata", {}).get("sha256", "")

    def _put_new(self, key: str, data: bytes, stored: StoredFile, digest: bytes) -> bool:
        """Put the object only if the key is free; False when another object got there first."""
        try:
            self._s3.put_object(
                Bucket=self._bucket,
                Key=key,
                Body=data,
                ContentType=stored.content_type,
                ServerSideEncryption="AES256",
                Metadata={"sha256": stored.sha256},
                # S3 recomputes the digest and refuses the write when the bytes arrived damaged.
                ChecksumAlgorithm="SHA256",
                ChecksumSHA256=base64.b64encode(digest).decode("ascii"),
                IfNoneMatch="*",
            )
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") in {"PreconditionFailed", "ConditionalRequestConflict"}:
                return False
            raise
        return True

    def presigned_url(self, key: str, expires_in: int = 300) -> str:
        """A time-limited GET URL for an object (default five minutes; at most seven days)."""
        if not 1 <= expires_in <= MAX_PRESIGN_SECONDS:
            raise ValueError(f"expires_in must be 1..{MAX_PRESIGN_SECONDS} seconds, got {expires_in}")
        return self._s3.generate_presigned_url(
            "get_object", Params={"Bucket": self._bucket, "Key": key}, ExpiresIn=expires_in
        )

    def store_invoice_file(
        self,
        *,
        seller_tax_number: str,
        issued_on: date | None,
        invoice_number: str,
        file: InvoiceFile,
        fetch: Callable[[str], bytes] | None,
    ) -> FileRecord:
        """Decode (or fetch) and store one invoice file; never raises for bad content.

        Inline base64 wins when the channel gave both base64 and a URL. A URL is fetched through
        ``fetch`` (LinkedFiles.fetch); without one, the file is recorded as not fetched,
        with its URL. Garbage (bad base64, unknown magic bytes, a failed fetch) comes back as a
        FileRecord with ``ok`` False and the reason, so the invoice itself is still recorded.
        S3 errors propagate.
        """
        url = file.url or None
        if file.content_base64 is not None:
            source: Literal["base64", "url"] = "base64"
            try:
                data = decode_base64_strict(file.content_base64)
            except InvalidFile as error:
                return FileRecord(ok=False, stored=None, error=error.reason, source=source, url=url)
        elif url is not None:
            source = "url"
            if fetch is None:
                return FileRecord(ok=False, stored=None, error="not fetched", source=source, url=url)
            try:
                data = fetch(url)
            except Exception as error:  # the URL's trouble (HTTP error, timeout): record it
                reason = f"fetch failed: {type(error).__name__}: {str(error)[:300]}"
                return FileRecord(ok=False, stored=None, error=reason, source=source, url=url)
            if not isinstance(data, bytes | bytearray):
                return FileRecord(ok=False, stored=None, error="fetch returned no bytes", source=source, url=url)
            data = bytes(data)
        else:
            return FileRecord(
                ok=False, stored=None, error="the channel gave neither content nor a URL", source="base64", url=None
            )
        try:
            stored = self.put_invoice_file(
                seller_tax_number=seller_tax_number,
                issued_on=issued_on,
                invoice_number=invoice_number,
                data=data,
                format_hint=file.format_hint,
            )
        except InvalidFile as error:
            return FileRecord(ok=False, stored=None, error=error.reason, source=source, url=url)
        return FileRecord(ok=True, stored=stored, error=None, source=source, url=url)


class LinkedFiles:
    """Invoice files a channel links to, fetched over HTTP within that channel's policy.

    ``policy_for`` names a channel's policy (ChannelRegistry.fetch_policy); without it, or for an
    application with no channel, the policy allows no host, so every URL is refused (FetchRefused).
    """

    def __init__(self, policy_for: Callable[[str], FetchPolicy] | None = None):
        self._policy_for = policy_for

    def fetch(self, url: str, channel: str | None) -> bytes:
        """The file's bytes; raises FetchRefused (recorded on the file entry by the file store, never a crash)."""
        policy = self._policy_for(channel) if self._policy_for is not None and channel else FetchPolicy()
        return fetch_file(url, policy)
