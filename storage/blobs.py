"""Bytes of inline content and uploads, kept on disk between the request and the flow run."""

from pathlib import Path


def write_blob(blob_dir: Path, source_id: str, data: bytes) -> str:
    blob_dir.mkdir(parents=True, exist_ok=True)
    path = blob_dir / source_id
    tmp = path.with_suffix(".partial")
    tmp.write_bytes(data)
    tmp.replace(path)  # a flow run never reads half a file
    return str(path)


def remove_blob(blob_path: str | None) -> None:
    """Once a source is stored its bytes are not needed: the extracted text is on the source row.

    Failed sources keep theirs, so that a retry can run without the caller sending them again.
    """
    if blob_path:
        Path(blob_path).unlink(missing_ok=True)
