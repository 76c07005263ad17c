"""Content pushed through the API: text in the request, or uploaded bytes parked in the blob store for a flow run."""

from connectors.file import guess_content_type
from gristmill.documents import FetchedContent
from gristmill.errors import FetchError, PayloadTooLarge


def read_inline(
    text: str | bytes,
    content_type: str | None,
    filename: str | None = None,
    *,
    max_bytes: int | None = None,
) -> FetchedContent:
    """Wrap inline content; a str is encoded as UTF-8, and the declared type wins over the filename's."""
    data = text.encode("utf-8") if isinstance(text, str) else bytes(text)
    if max_bytes is not None and len(data) > max_bytes:
        raise PayloadTooLarge(
            f"Inline content is {len(data):,} bytes; the limit is {max_bytes:,}. Upload it as a file instead.",
            code="content_too_large",
            details={"size_bytes": len(data), "max_bytes": max_bytes},
        )
    metadata = {"size_bytes": len(data)}
    if isinstance(text, str):
        metadata["charset"] = "utf-8"
    return FetchedContent(
        data=data,
        content_type=content_type or guess_content_type(filename),
        uri=None,
        filename=filename,
        metadata=metadata,
    )


def read_blob(
    data: bytes | None,
    ref: str,
    content_type: str | None,
    filename: str | None = None,
    *,
    max_bytes: int | None = None,
) -> FetchedContent:
    """Wrap bytes the API saved for a flow run (`data`, read from `ref`; None when none are stored);
    their name and type are the ones the user gave."""
    if data is None:
        # The blob store is ours, not the user's: a missing blob means it was cleaned up or never written.
        raise FetchError(
            "The uploaded content of this source is no longer stored; submit it again.",
            code="blob_missing",
            details={"blob_path": ref},
        )
    if max_bytes is not None and len(data) > max_bytes:
        raise PayloadTooLarge(
            f"{filename or 'The uploaded content'} is too large: the limit is {max_bytes:,} bytes.",
            code="file_too_large",
            details={"size_bytes": len(data), "max_bytes": max_bytes, "path": None, "filename": filename},
        )
    return FetchedContent(
        data=data,
        content_type=content_type or guess_content_type(filename),
        uri=None,
        filename=filename,
        metadata={"size_bytes": len(data)},
    )
