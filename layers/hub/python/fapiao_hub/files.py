"""S3 file store: the only code that touches S3.

Holds invoice files (later: decoded, sniffed, hashed) and application documents too large for a
DynamoDB item. Objects are encrypted at rest by the bucket's default (template.yaml).
"""

from __future__ import annotations

from typing import Any

from fapiao_hub.store import DocumentOverflow


class FileStore(DocumentOverflow):
    def __init__(self, s3_client: Any, bucket: str):
        self._s3 = s3_client
        self._bucket = bucket

    def put_document(self, key: str, data: bytes) -> str:
        self._s3.put_object(
            Bucket=self._bucket,
            Key=key,
            Body=data,
            ContentType="application/json",
            ContentEncoding="gzip",
            ServerSideEncryption="AES256",
        )
        return f"s3://{self._bucket}/{key}"

    def get_document(self, ref: str) -> bytes:
        bucket, _, key = ref.removeprefix("s3://").partition("/")
        return self._s3.get_object(Bucket=bucket, Key=key)["Body"].read()

    def put_raw_answer(self, channel: str, request_number: str, at: str, data: bytes) -> str:
        """Keep a channel's answer the hub could not read, for a person to look at."""
        key = f"raw/{channel}/{request_number}/{at}.bin"
        self._s3.put_object(
            Bucket=self._bucket,
            Key=key,
            Body=data,
            ContentType="application/octet-stream",
            ServerSideEncryption="AES256",
        )
        return f"s3://{self._bucket}/{key}"
