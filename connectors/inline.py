"""Content pushed through the API: text in the request, or uploaded bytes parked on disk for a flow run."""

from pathlib import Path

from connectors.file import guess_content_type, read_file
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
    path: Path,
    content_type: str | None,
    filename: str | None = None,
    *,
    max_bytes: int | None = None,
) -> FetchedContent:
    """Read bytes the API saved for a flow run; their name and type are the ones the user gave."""
    try:
        stored = read_file(path, max_bytes=max_bytes if max_bytes is not None else _NO_LIMIT)
    except FetchError as exc:
        if exc.code != "file_not_found":
            raise
        # The blob store is ours, not the user's: a missing blob means it was cleaned up or never written.
        raise FetchError(
            "The uploaded content of this source is no longer stored; submit it again.",
            code="blob_missing",
            details={"blob_path": str(path)},
        ) from None
    except PayloadTooLarge as exc:
        raise PayloadTooLarge(
            f"{filename or 'The uploaded content'} is too large: the limit is {max_bytes:,} bytes.",
            code=exc.code,
            details={**(exc.details or {}), "path": None, "filename": filename},
        ) from None
    return FetchedContent(
        data=stored.data,
        content_type=content_type or guess_content_type(filename),
        uri=None,
        filename=filename,
        metadata={"size_bytes": len(stored.data)},
    )


_NO_LIMIT = 2**62
