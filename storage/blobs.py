"""Bytes of sources as submitted or fetched: they wait between the request and the flow run, and stay
as the source's original (GRISTMILL_KEEP_ORIGINALS) once it is stored.

One interface, `BlobStore`, with two implementations chosen by `GRISTMILL_BLOB_URI`: a local folder
(the embedded default, `home/blobs`) or an S3-compatible bucket that every machine of a scaled-out
service reaches. A source row keeps the reference `write` returned (a path, or `s3://bucket/key`).
"""

from functools import lru_cache
from pathlib import Path
from typing import Protocol
from urllib.parse import urlparse

from gristmill.errors import ServiceUnavailable
from gristmill.settings import Settings


class BlobStore(Protocol):
    def write(self, source_id: str, data: bytes) -> str:
        """Store `data` as `source_id`'s bytes; the reference to keep on the source row."""
        ...

    def read(self, ref: str | None) -> bytes | None:
        """The bytes stored at `ref`, None when there are none (never kept, or removed)."""
        ...

    def remove(self, ref: str | None) -> None: ...


class FolderBlobs:
    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def write(self, source_id: str, data: bytes) -> str:
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.folder / source_id
        tmp = path.with_suffix(".partial")
        tmp.write_bytes(data)
        tmp.replace(path)  # a flow run never reads half a file
        return str(path)

    def read(self, ref: str | None) -> bytes | None:
        if not ref:
            return None
        path = Path(ref)
        try:
            return (path if path.is_absolute() else self.folder / path).read_bytes()
        except FileNotFoundError:
            return None

    def remove(self, ref: str | None) -> None:
        if ref:
            Path(ref).unlink(missing_ok=True)


class S3Blobs:
    """Objects under `s3://bucket/prefix/`; a PUT is atomic, so a flow run never reads half an object."""

    def __init__(self, uri: str, settings: Settings) -> None:
        parsed = urlparse(uri)
        self.bucket = parsed.netloc
        self.prefix = parsed.path.strip("/")
        self.client = _s3_client(
            settings.s3_endpoint, settings.s3_region, settings.s3_access_key_id, settings.s3_secret_access_key
        )

    def write(self, source_id: str, data: bytes) -> str:
        key = f"{self.prefix}/{source_id}" if self.prefix else source_id
        self._call(lambda: self.client.put_object(Bucket=self.bucket, Key=key, Body=data))
        return f"s3://{self.bucket}/{key}"

    def read(self, ref: str | None) -> bytes | None:
        if not ref:
            return None
        bucket, key = _bucket_and_key(ref)
        try:
            answer = self._call(lambda: self.client.get_object(Bucket=bucket, Key=key))
        except _NoSuchKey:
            return None
        return answer["Body"].read()

    def remove(self, ref: str | None) -> None:
        if ref:
            bucket, key = _bucket_and_key(ref)
            self._call(lambda: self.client.delete_object(Bucket=bucket, Key=key))  # S3 answers 204 for a missing key too

    def _call(self, request):
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return request()
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                raise _NoSuchKey from None
            raise ServiceUnavailable(f"the blob store s3://{self.bucket} answered: {error}", code="blob_store_unavailable") from None
        except BotoCoreError as error:
            raise ServiceUnavailable(f"the blob store s3://{self.bucket} cannot be reached: {error}", code="blob_store_unavailable") from None


class _NoSuchKey(Exception):
    pass


def _bucket_and_key(ref: str) -> tuple[str, str]:
    parsed = urlparse(ref)
    return parsed.netloc, parsed.path.lstrip("/")


@lru_cache
def _s3_client(endpoint: str | None, region: str, key_id: str | None, secret: str | None):
    # boto3 is imported here: a service on a local folder never pays its import (~0.3 s).
    import boto3
    from botocore.config import Config

    # Unset keys leave boto3 its usual chain (environment, ~/.aws, an instance role).
    return boto3.client(
        "s3", endpoint_url=endpoint, region_name=region, aws_access_key_id=key_id, aws_secret_access_key=secret,
        config=Config(retries={"max_attempts": 3, "mode": "standard"}),
    )


def open_blob_store(settings: Settings) -> BlobStore:
    """The blob store the settings name: `s3://bucket/prefix`, else the folder (`home/blobs` by default)."""
    uri = settings.resolved_blob_uri
    if uri.startswith("s3://"):
        return S3Blobs(uri, settings)
    return FolderBlobs(Path(uri))


def blob_released_when(status: str, *, keep_originals: bool) -> bool:
    """Whether a source's bytes go once it reaches `status`.

    A duplicate's bytes are another source's; a stored source keeps its original unless originals
    are not kept (its extracted text is on the source row); a failed source keeps its bytes, so that
    a retry can run without the caller sending them again.
    """
    if status == "duplicate":
        return True
    return status in ("completed", "partial") and not keep_originals
