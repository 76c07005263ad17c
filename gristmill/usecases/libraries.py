"""Libraries as a caller sees them: created with the service's defaults, listed with their counts."""

from dataclasses import dataclass
from typing import Any

from sqlmodel import Session

from gristmill.settings import Settings
from storage import repository
from storage.tables import Library


@dataclass(frozen=True)
class LibraryCounts:
    sources: int  # sources that hold chunks
    chunks: int


def create_library(
    session: Session,
    settings: Settings,
    workspace_id: str,
    name: str,
    *,
    description: str | None = None,
    metadata: dict[str, Any] | None = None,
    chunk_max_tokens: int | None = None,
    chunk_overlap_tokens: int | None = None,
) -> Library:
    """A new library embedding with the configured model; chunking as asked, else the defaults."""
    return repository.create_library(
        session,
        workspace_id,
        name=name,
        description=description,
        metadata=metadata,
        embedding_model=settings.embedding_model,
        embedding_dim=settings.embedding_dim,
        chunk_max_tokens=chunk_max_tokens if chunk_max_tokens is not None else settings.chunk_max_tokens,
        chunk_overlap_tokens=chunk_overlap_tokens if chunk_overlap_tokens is not None else settings.chunk_overlap_tokens,
    )


def counts_of(session: Session, libraries: list[Library]) -> dict[str, LibraryCounts]:
    counts = repository.library_source_counts(session, [lib.id for lib in libraries])
    return {library_id: LibraryCounts(*pair) for library_id, pair in counts.items()}
