"""files.py: strict base64, magic-byte sniffing, and invoice files in S3 (moto, bucket from template.yaml).

One moto account is provisioned per module (provisioning the whole template takes most of a second);
every test uses its own invoice numbers, so the tests do not see each other's objects.
"""

from __future__ import annotations

import base64
import hashlib
import io
import itertools
import zipfile
from collections.abc import Iterator
from datetime import date
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qs, urlsplit

import boto3
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from moto import mock_aws

from fapiao_hub.domain.results import InvoiceFile
from fapiao_hub.infra.files import (
    FileRecord,
    FileStore,
    InvalidFile,
    StoredFile,
    decode_base64_strict,
    sniff_format,
)
from local.provision import provision
from tests.conftest import REGION
from tests.unit.conftest import TEMPLATE

SELLER = "91220101MA0Y5K3N4H"
ISSUED = date(2025, 3, 7)
_numbers = itertools.count(1)


def invoice_number() -> str:
    """A fresh 20-digit (全电) invoice number per call."""
    return f"2544{next(_numbers):016d}"


# --- sample files -------------------------------------------------------------------------------


def minimal_pdf(text: str = "fapiao") -> bytes:
    """A small but valid PDF 1.4: one page, correct xref offsets."""
    stream = f"BT /F1 12 Tf 72 712 Td ({text}) Tj ET".encode("ascii")
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
        b"/Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    out = bytearray(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    return bytes(out)


def minimal_ofd() -> bytes:
    """A zip shaped like an OFD package: OFD.xml at the root pointing at Doc_0/Document.xml."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(
            "OFD.xml",
            '<?xml version="1.0" encoding="UTF-8"?>\n'
            '<ofd:OFD xmlns:ofd="http://www.ofdspec.org/2016" Version="1.1" DocType="OFD">'
            "<ofd:DocBody><ofd:DocInfo><ofd:DocID>0a1b2c</ofd:DocID></ofd:DocInfo>"
            "<ofd:DocRoot>Doc_0/Document.xml</ofd:DocRoot></ofd:DocBody></ofd:OFD>",
        )
        archive.writestr("Doc_0/Document.xml", '<?xml version="1.0" encoding="UTF-8"?><ofd:Document/>')
    return buffer.getvalue()


def plain_zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("readme.txt", "not an invoice")
    return buffer.getvalue()


XML = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n<EInvoice><Header><EIid>25440000000000000001</EIid></Header>'
    b"<TaxSupervisionInfo><InvoiceNumber>25440000000000000001</InvoiceNumber></TaxSupervisionInfo></EInvoice>"
)
PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01"


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


# --- the moto account ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def account() -> Iterator[tuple[Any, str]]:
    with pytest.MonkeyPatch.context() as patch:
        for name in ("AWS_ENDPOINT_URL", "AWS_PROFILE"):
            patch.delenv(name, raising=False)
        patch.setenv("AWS_ACCESS_KEY_ID", "testing")
        patch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
        patch.setenv("AWS_DEFAULT_REGION", REGION)
        with mock_aws():
            resources = provision(TEMPLATE, region=REGION)
            bucket = resources.function_environment("IntakeFunction", {})["FILES_BUCKET"]
            yield boto3.client("s3", region_name=REGION), bucket


@pytest.fixture(scope="module")
def s3(account) -> Any:
    return account[0]


@pytest.fixture(scope="module")
def bucket(account) -> str:
    return account[1]


@pytest.fixture(scope="module")
def files(account) -> FileStore:
    return FileStore(*account)


def versions(s3: Any, bucket: str, prefix: str) -> list[dict[str, Any]]:
    return s3.list_object_versions(Bucket=bucket, Prefix=prefix).get("Versions", [])


def keys(s3: Any, bucket: str, prefix: str) -> list[str]:
    return [o["Key"] for o in s3.list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", [])]


def body(s3: Any, bucket: str, key: str) -> bytes:
    return s3.get_object(Bucket=bucket, Key=key)["Body"].read()


def stem(number: str, issued: date | None = ISSUED) -> str:
    period = f"{issued:%Y/%m}" if issued else "undated"
    return f"invoices/{SELLER}/{period}/{number}"


def store(files: FileStore, file: InvoiceFile, number: str, *, issued: date | None = ISSUED, fetch=None) -> FileRecord:
    return files.store_invoice_file(
        seller_tax_number=SELLER, issued_on=issued, invoice_number=number, file=file, fetch=fetch
    )


# --- decode_base64_strict -----------------------------------------------------------------------


def test_decodes_standard_base64():
    pdf = minimal_pdf()
    assert decode_base64_strict(b64(pdf)) == pdf


def test_accepts_mime_line_wrapped_base64():
    pdf = minimal_pdf("a longer text so the encoding spans several seventy-six character lines" * 3)
    encoded = b64(pdf)
    wrapped = "\r\n".join(encoded[i : i + 76] for i in range(0, len(encoded), 76)) + "\r\n"
    assert "\r\n" in wrapped.strip()
    assert decode_base64_strict(wrapped) == pdf
    assert decode_base64_strict(" \t" + base64.encodebytes(pdf).decode("ascii")) == pdf


def test_accepts_the_url_safe_alphabet_alone():
    data = b"\xfb\xff\xbf%PDF-"
    assert base64.urlsafe_b64encode(data).decode() == "-_-_JVBERi0="
    assert decode_base64_strict("-_-_JVBERi0=") == data
    assert decode_base64_strict("-_-_\r\nJVBERi0=") == data


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("not base64!!", "not valid base64"),
        ("QUJDRA=", "padding"),  # one '=' short
        ("QUJDRA", "padding"),
        ("QUJD====", "padding"),
        ("QU=JDRA=", "padding"),
        ("QUJDRA==QUJD", "padding"),  # data after the padding
        ("QUJDRA€=", "non-ASCII"),
        ("ＱＵＪＤ", "non-ASCII"),  # full-width letters
        ("QUJ+-A==", "mixes"),
        ("", "empty"),
        (" \r\n\t", "empty"),
    ],
)
def test_rejects_garbage_base64(text, says):
    with pytest.raises(InvalidFile) as raised:
        decode_base64_strict(text)
    assert says in raised.value.reason


# --- sniff_format -------------------------------------------------------------------------------


def test_sniffs_pdf_ofd_xml():
    assert sniff_format(minimal_pdf()) == "pdf"
    assert sniff_format(minimal_ofd()) == "ofd"
    assert sniff_format(XML) == "xml"
    assert sniff_format(b"\xef\xbb\xbf \r\n\t" + XML) == "xml"
    assert sniff_format(b"<Invoice/>") == "xml"


@pytest.mark.parametrize(
    ("data", "says"),
    [
        (PNG, "89504e470d0a1a0a"),  # the first 8 bytes, no more
        (b"\x00\x01", "0001"),
        (b"PDF-1.7", "5044462d312e37"),
        (b"", "empty"),
        (plain_zip(), "a zip that is not an OFD"),
        (b"PK\x03\x04 definitely not the rest of a zip", "not a readable zip"),
        (b"<!DOCTYPE html><html><body>502 Bad Gateway</body></html>", "HTML"),
        (b"  <HTML><body>login</body></HTML>", "HTML"),
    ],
)
def test_sniff_rejects_what_is_not_an_invoice_file(data, says):
    with pytest.raises(InvalidFile) as raised:
        sniff_format(data)
    assert says in raised.value.reason
    if data == PNG:
        assert PNG[:9].hex() not in raised.value.reason


# --- put_invoice_file ---------------------------------------------------------------------------


def test_stores_the_bytes_with_their_sha256_encrypted(files, s3, bucket):
    pdf, number = minimal_pdf(), invoice_number()
    stored = files.put_invoice_file(seller_tax_number=SELLER, issued_on=ISSUED, invoice_number=number, data=pdf)

    digest = hashlib.sha256(pdf)
    assert stored == StoredFile(
        key=f"{stem(number)}.pdf",
        format="pdf",
        size=len(pdf),
        sha256=digest.hexdigest(),
        content_type="application/pdf",
    )
    assert stored.key == f"invoices/{SELLER}/2025/03/{number}.pdf"
    assert body(s3, bucket, stored.key) == pdf
    head = s3.head_object(Bucket=bucket, Key=stored.key, ChecksumMode="ENABLED")
    assert head["ServerSideEncryption"] == "AES256"
    assert head["Metadata"] == {"sha256": digest.hexdigest()}
    assert head["ContentType"] == "application/pdf"
    assert head["ContentLength"] == len(pdf)
    assert head["ChecksumSHA256"] == base64.b64encode(digest.digest()).decode()


def test_the_same_file_twice_is_one_object_and_one_version(files, s3, bucket):
    pdf, number = minimal_pdf(), invoice_number()
    first = files.put_invoice_file(seller_tax_number=SELLER, issued_on=ISSUED, invoice_number=number, data=pdf)
    second = files.put_invoice_file(seller_tax_number=SELLER, issued_on=ISSUED, invoice_number=number, data=pdf)

    assert first == second
    assert keys(s3, bucket, stem(number)) == [first.key]
    assert len(versions(s3, bucket, stem(number))) == 1


def test_a_different_rendering_of_the_same_invoice_is_kept_beside_the_first(files, s3, bucket):
    number = invoice_number()
    original, rerendered = minimal_pdf("first"), minimal_pdf("second")
    first = files.put_invoice_file(seller_tax_number=SELLER, issued_on=ISSUED, invoice_number=number, data=original)
    second = files.put_invoice_file(seller_tax_number=SELLER, issued_on=ISSUED, invoice_number=number, data=rerendered)
    again = files.put_invoice_file(seller_tax_number=SELLER, issued_on=ISSUED, invoice_number=number, data=rerendered)

    sha = hashlib.sha256(rerendered).hexdigest()
    assert first.key == f"{stem(number)}.pdf"
    assert second.key == f"{stem(number)}.{sha[:12]}.pdf"
    assert again == second
    assert body(s3, bucket, first.key) == original  # not overwritten
    assert body(s3, bucket, second.key) == rerendered
    assert sorted(keys(s3, bucket, stem(number))) == sorted([first.key, second.key])
    assert len(versions(s3, bucket, stem(number))) == 2


def test_a_concurrent_writer_that_got_there_first_is_not_overwritten(files, s3, bucket):
    """Another writer puts other bytes just before ours: the conditional put refuses, ours moves aside."""
    number = invoice_number()
    key = f"{stem(number)}.pdf"
    theirs, ours = minimal_pdf("theirs"), minimal_pdf("ours")

    class Racing:
        def __init__(self):
            self.raced = False

        def __getattr__(self, name):
            return getattr(s3, name)

        def put_object(self, **kwargs):
            if not self.raced and kwargs["Key"] == key:
                self.raced = True
                FileStore(s3, bucket).put_invoice_file(
                    seller_tax_number=SELLER, issued_on=ISSUED, invoice_number=number, data=theirs
                )
            return s3.put_object(**kwargs)

    stored = FileStore(Racing(), bucket).put_invoice_file(
        seller_tax_number=SELLER, issued_on=ISSUED, invoice_number=number, data=ours
    )

    assert stored.key == f"{stem(number)}.{hashlib.sha256(ours).hexdigest()[:12]}.pdf"
    assert body(s3, bucket, key) == theirs
    assert len(versions(s3, bucket, key)) == 1


def test_a_new_file_costs_one_put_and_a_repeat_one_put_and_one_head(files, s3, bucket):
    """The conditional PUT detects an object already there: no HEAD before it (benchmarks, section 1)."""
    number = invoice_number()
    calls: list[str] = []

    class Counting:
        def __getattr__(self, name):
            attribute = getattr(s3, name)
            if name in ("put_object", "head_object", "get_object"):
                calls.append(name)
            return attribute

    counted = FileStore(Counting(), bucket)
    first = counted.put_invoice_file(
        seller_tax_number=SELLER, issued_on=ISSUED, invoice_number=number, data=minimal_pdf()
    )
    assert calls == ["put_object"]
    calls.clear()
    again = counted.put_invoice_file(
        seller_tax_number=SELLER, issued_on=ISSUED, invoice_number=number, data=minimal_pdf()
    )
    assert again == first
    assert calls == ["put_object", "head_object"]
    assert len(versions(s3, bucket, first.key)) == 1


def test_the_bytes_decide_the_format_not_the_hint(files, s3, bucket):
    number = invoice_number()
    stored = files.put_invoice_file(
        seller_tax_number=SELLER, issued_on=ISSUED, invoice_number=number, data=minimal_pdf(), format_hint="ofd"
    )
    assert stored.format == "pdf"
    assert stored.key.endswith(".pdf")


# --- store_invoice_file -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "file_format", "content_type"),
    [
        (minimal_pdf(), "pdf", "application/pdf"),
        (minimal_ofd(), "ofd", "application/ofd"),
        (XML, "xml", "application/xml"),
    ],
)
def test_stores_pdf_ofd_and_xml_from_base64(files, s3, bucket, data, file_format, content_type):
    number = invoice_number()
    record = store(files, InvoiceFile(content_base64=b64(data), format_hint=file_format), number)

    assert record.ok, record.error
    assert record.source == "base64"
    assert record.error is None
    assert record.stored.key == f"{stem(number)}.{file_format}"
    assert record.stored.sha256 == hashlib.sha256(data).hexdigest()
    assert body(s3, bucket, record.stored.key) == data
    assert s3.head_object(Bucket=bucket, Key=record.stored.key)["ContentType"] == content_type


def test_an_undated_invoice_goes_under_undated(files, s3, bucket):
    number = invoice_number()
    record = store(files, InvoiceFile(content_base64=b64(XML)), number, issued=None)
    assert record.stored.key == f"invoices/{SELLER}/undated/{number}.xml"


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("not base64!!", "not valid base64"),
        ("JVBERi0xLjQK=", "padding"),
        ("JVBERi0xLjQK€", "non-ASCII"),
        ("", "empty"),
    ],
)
def test_garbage_base64_is_a_failed_file_and_nothing_is_stored(files, s3, bucket, text, says):
    number = invoice_number()
    record = store(files, InvoiceFile(content_base64=text, format_hint="pdf"), number)

    assert record == FileRecord(ok=False, stored=None, error=record.error, source="base64")
    assert says in record.error
    assert keys(s3, bucket, stem(number)) == []


def test_valid_base64_of_something_else_names_its_first_bytes(files, s3, bucket):
    number = invoice_number()
    record = store(files, InvoiceFile(content_base64=b64(PNG), format_hint="pdf"), number)

    assert not record.ok
    assert "89504e470d0a1a0a" in record.error
    assert keys(s3, bucket, stem(number)) == []


def test_a_zip_that_is_not_an_ofd_is_a_failed_file(files, s3, bucket):
    number = invoice_number()
    record = store(files, InvoiceFile(content_base64=b64(plain_zip()), format_hint="ofd"), number)
    assert not record.ok
    assert "not an OFD" in record.error
    assert keys(s3, bucket, stem(number)) == []


def test_a_url_is_fetched_through_the_given_callable(files, s3, bucket):
    number, pdf, asked = invoice_number(), minimal_pdf(), []
    url = "https://channel.example/files/1.pdf?token=abc"

    def fetch(address: str) -> bytes:
        asked.append(address)
        return pdf

    record = store(files, InvoiceFile(url=url), number, fetch=fetch)

    assert asked == [url]
    assert record.ok
    assert record.source == "url"
    assert record.url == url
    assert body(s3, bucket, record.stored.key) == pdf


def test_a_url_without_a_fetcher_is_recorded_as_not_fetched(files, s3, bucket):
    number, url = invoice_number(), "https://channel.example/files/2.ofd"
    record = store(files, InvoiceFile(url=url, format_hint="ofd"), number, fetch=None)
    assert record == FileRecord(ok=False, stored=None, error="not fetched", source="url", url=url)
    assert keys(s3, bucket, stem(number)) == []


def test_a_failed_fetch_or_fetched_garbage_is_a_failed_file(files, s3, bucket):
    number, url = invoice_number(), "https://channel.example/files/3.pdf"

    def broken(_: str) -> bytes:
        raise ConnectionError("connection reset by peer")

    failed = store(files, InvoiceFile(url=url), number, fetch=broken)
    assert not failed.ok
    assert "ConnectionError" in failed.error
    assert "connection reset" in failed.error

    html = store(files, InvoiceFile(url=url), number, fetch=lambda _: b"<!doctype html><title>Login</title>")
    assert not html.ok
    assert "HTML" in html.error
    assert keys(s3, bucket, stem(number)) == []


def test_inline_content_wins_over_a_url(files):
    number, pdf = invoice_number(), minimal_pdf()

    def never(_: str) -> bytes:
        raise AssertionError("fetched although the content was inline")

    record = store(
        files, InvoiceFile(content_base64=b64(pdf), url="https://channel.example/4.pdf"), number, fetch=never
    )
    assert record.ok
    assert record.source == "base64"


def test_neither_content_nor_url_is_a_failed_file(files):
    record = store(files, InvoiceFile(), invoice_number())
    assert not record.ok
    assert "neither" in record.error


@pytest.mark.parametrize("number", ["../../etc/passwd", "2544/0001", "", "a b", "发票"])
def test_an_invoice_number_that_could_form_a_path_is_a_failed_file(files, s3, bucket, number):
    before = keys(s3, bucket, "")
    record = store(files, InvoiceFile(content_base64=b64(minimal_pdf())), number)
    assert not record.ok
    assert "cannot be part of a file key" in record.error
    assert keys(s3, bucket, "") == before


# --- FileRecord items, presigned URLs, the older methods ----------------------------------------


def test_file_record_items_round_trip_without_none_values():
    stored = StoredFile(key="invoices/x/2025/03/1.pdf", format="pdf", size=10, sha256="ab" * 32, content_type="a/b")
    good = FileRecord(ok=True, stored=stored, error=None, source="base64")
    bad = FileRecord(ok=False, stored=None, error="not fetched", source="url", url="https://x.example/1")

    assert good.to_item() == {
        "ok": True,
        "source": "base64",
        "key": stored.key,
        "format": "pdf",
        "size": 10,
        "sha256": "ab" * 32,
        "content_type": "a/b",
    }
    assert bad.to_item() == {"ok": False, "source": "url", "error": "not fetched", "url": "https://x.example/1"}
    assert FileRecord.from_item(good.to_item()) == good
    assert FileRecord.from_item(bad.to_item()) == bad
    assert FileRecord.from_item({**good.to_item(), "size": Decimal(10)}).stored.size == 10  # as DynamoDB returns it


def test_presigned_url_shape(files, bucket):
    key = f"{stem(invoice_number())}.pdf"
    url = files.presigned_url(key)
    parts = urlsplit(url)
    query = parse_qs(parts.query)

    assert parts.scheme == "https"
    assert bucket in parts.netloc + parts.path
    assert parts.path.endswith(key)
    assert query["X-Amz-Expires"] == ["300"]
    assert "X-Amz-Signature" in query
    assert parse_qs(urlsplit(files.presigned_url(key, expires_in=60)).query)["X-Amz-Expires"] == ["60"]
    for bad in (0, 7 * 24 * 3600 + 1):
        with pytest.raises(ValueError, match="expires_in"):
            files.presigned_url(key, expires_in=bad)


def test_documents_and_raw_answers_still_work(files, s3, bucket):
    ref = files.put_document("applications/test-files.json.gz", b"\x1f\x8b compressed")
    assert ref == f"s3://{bucket}/applications/test-files.json.gz"
    assert files.get_document(ref) == b"\x1f\x8b compressed"
    raw = files.put_raw_answer("xunlian", "REQ-1", "20250307T000000Z", b"<<garbage>>")
    assert files.get_document(raw) == b"<<garbage>>"
    assert s3.head_object(Bucket=bucket, Key="raw/xunlian/REQ-1/20250307T000000Z.bin")["ServerSideEncryption"] == (
        "AES256"
    )


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rest=st.binary(max_size=2048))
def test_any_pdf_bytes_round_trip_through_base64_and_s3(files, s3, bucket, rest):
    data = b"%PDF-" + rest
    record = store(files, InvoiceFile(content_base64=b64(data)), invoice_number())
    assert record.ok, record.error
    assert record.stored.sha256 == hashlib.sha256(data).hexdigest()
    assert body(s3, bucket, record.stored.key) == data
