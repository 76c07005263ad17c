"""Bytes of sources as submitted or fetched: they wait on disk between the request and the flow run,
and stay as the source's original (GRISTMILL_KEEP_ORIGINALS) once it is stored.

Every blob is reached through these functions, so that they can move to shared storage without
their callers noticing.
"""

from pathlib import Path


def write_blob(blob_dir: Path, source_id: str, data: bytes) -> str:
    blob_dir.mkdir(parents=True, exist_ok=True)
    path = blob_dir / source_id
    tmp = path.with_suffix(".partial")
    tmp.write_bytes(data)
    tmp.replace(path)  # a flow run never reads half a file
    return str(path)


def blob_bytes(blob_path: str | None) -> bytes | None:
    """The bytes stored at `blob_path`, None when there are none (never kept, or removed)."""
    if not blob_path:
        return None
    try:
        return Path(blob_path).read_bytes()
    except FileNotFoundError:
        return None


def remove_blob(blob_path: str | None) -> None:
    if blob_path:
        Path(blob_path).unlink(missing_ok=True)


def blob_released_when(status: str, *, keep_originals: bool) -> bool:
    """Whether a source's bytes go once it reaches `status`.

    A duplicate's bytes are another source's; a stored source keeps its original unless originals
    are not kept (its extracted text is on the source row); a failed source keeps its bytes, so that
    a retry can run without the caller sending them again.
    """
    if status == "duplicate":
        return True
    return status in ("completed", "partial") and not keep_originals
