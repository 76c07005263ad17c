"""Files on the server's disk: bytes, a content type guessed from the extension, and the absolute path."""

import mimetypes
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import BinaryIO

from gristmill.documents import FetchedContent
from gristmill.errors import FetchError, PayloadTooLarge
from gristmill.file_types import BY_EXTENSION


def guess_content_type(name: str | None) -> str | None:
    """The MIME type a file name's extension suggests, or None when the extension says nothing."""
    if not name:
        return None
    known = BY_EXTENSION.get(PurePosixPath(name).suffix.lower())
    if known is not None:  # before `mimetypes`: see gristmill.file_types
        return known.mime_type
    guessed, _encoding = mimetypes.guess_type(name, strict=False)
    return guessed


def read_file(path: Path, *, max_bytes: int) -> FetchedContent:
    """Read one file whole, refusing it before reading when it is over `max_bytes`."""
    path = Path(path).expanduser().absolute()
    try:
        stat = path.stat()
    except FileNotFoundError:
        raise FetchError(f"No file at {path}.", code="file_not_found", details={"path": str(path)}) from None
    except OSError as exc:
        raise _unreadable(path, exc) from None
    if not path.is_file():
        raise FetchError(
            f"{path} is not a regular file.", code="file_unreadable", details={"path": str(path)}
        )
    if stat.st_size > max_bytes:
        raise _too_large(path, stat.st_size, max_bytes)

    try:
        with path.open("rb") as handle:
            data = _read_at_most(handle, max_bytes + 1)  # one byte past the limit: the file grew after stat()
    except FileNotFoundError:
        raise FetchError(f"No file at {path}.", code="file_not_found", details={"path": str(path)}) from None
    except OSError as exc:
        raise _unreadable(path, exc) from None
    if len(data) > max_bytes:
        raise _too_large(path, None, max_bytes)

    return FetchedContent(
        data=data,
        content_type=guess_content_type(path.name),
        uri=str(path),
        filename=path.name,
        metadata={
            "size_bytes": len(data),
            "modified_at": datetime.fromtimestamp(stat.st_mtime, UTC).isoformat(),
        },
    )


def _read_at_most(handle: BinaryIO, limit: int) -> bytes:
    # read(limit) would allocate `limit` bytes up front whatever the file's size.
    pieces: list[bytes] = []
    remaining = limit
    while remaining > 0 and (piece := handle.read(min(remaining, _READ_SIZE))):
        pieces.append(piece)
        remaining -= len(piece)
    return b"".join(pieces)


_READ_SIZE = 1024 * 1024


def _unreadable(path: Path, exc: OSError) -> FetchError:
    reason = exc.strerror or type(exc).__name__
    return FetchError(
        f"Cannot read {path}: {reason}. Check that the Gristmill process may read it.",
        code="file_unreadable",
        details={"path": str(path), "errno": exc.errno},
    )


def _too_large(path: Path, size: int | None, max_bytes: int) -> PayloadTooLarge:
    measured = f"{size:,} bytes" if size is not None else "over that"
    return PayloadTooLarge(
        f"{path.name} is too large: the limit is {max_bytes:,} bytes and it is {measured}.",
        code="file_too_large",
        details={"path": str(path), "size_bytes": size, "max_bytes": max_bytes},
    )
