"""What the user named on the command line, as sources to submit."""

from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from gristmill.file_types import SUPPORTED_EXTENSIONS
from gristmill.usecases.shapes import SourceSpec


def collect_specs(
    inputs: list[str], *, external_id: str | None, title: str | None, metadata: dict[str, Any]
) -> tuple[list[SourceSpec], list[str]]:
    """Files, folders (recursively, supported extensions only, hidden entries skipped) and URLs;
    returns the sources and the files of folders that were skipped."""
    specs: list[SourceSpec] = []
    skipped: list[str] = []
    for item in inputs:
        if urlparse(item).scheme in ("http", "https"):
            specs.append(SourceSpec(origin="url", uri=item, title=title, external_id=external_id, metadata=metadata))
            continue
        path = Path(item).expanduser()
        if path.is_dir():
            for file in sorted(p for p in path.rglob("*") if p.is_file()):
                relative = file.relative_to(path)
                if any(part.startswith(".") for part in relative.parts):
                    continue
                if file.suffix.lower() not in SUPPORTED_EXTENSIONS:
                    skipped.append(str(file))
                    continue
                specs.append(SourceSpec(origin="file", uri=str(file.resolve()), metadata=metadata))
        else:
            # A missing or unsupported file is reported as a failed source with its reason.
            specs.append(
                SourceSpec(
                    origin="file",
                    uri=str(path.resolve()),
                    title=title,  # else the document's own title, else its file name
                    external_id=external_id,
                    metadata=metadata,
                )
            )
    return specs, skipped
