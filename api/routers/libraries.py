from fastapi import APIRouter, Response, status

from api.auth import Reader, Writer
from api.deps import ChunkStoreDep, SessionDep, SettingsDep
from api.schemas import Chunking, LibraryCreate, LibraryList, LibraryOut, LibraryUpdate
from gristmill.usecases import libraries as library_cases
from gristmill.usecases.libraries import LibraryCounts
from storage import repository
from storage.blobs import remove_blob
from storage.tables import Library

router = APIRouter(prefix="/v1/libraries", tags=["libraries"])


def library_out(library: Library, counts: LibraryCounts) -> LibraryOut:
    return LibraryOut(
        id=library.id,
        name=library.name,
        description=library.description,
        metadata=library.metadata_,
        embedding_model=library.embedding_model,
        embedding_dim=library.embedding_dim,
        chunking=Chunking(max_tokens=library.chunk_max_tokens, overlap_tokens=library.chunk_overlap_tokens),
        source_count=counts.sources,
        chunk_count=counts.chunks,
        created_at=library.created_at,
        updated_at=library.updated_at,
    )


@router.post("", status_code=status.HTTP_201_CREATED, response_model=LibraryOut)
def create_library(body: LibraryCreate, principal: Writer, session: SessionDep, settings: SettingsDep) -> LibraryOut:
    library = library_cases.create_library(
        session,
        settings,
        principal.workspace_id,
        body.name,
        description=body.description,
        metadata=body.metadata,
        chunk_max_tokens=body.chunking.max_tokens if body.chunking else None,
        chunk_overlap_tokens=body.chunking.overlap_tokens if body.chunking else None,
    )
    return library_out(library, LibraryCounts(sources=0, chunks=0))


@router.get("", response_model=LibraryList)
def list_libraries(principal: Reader, session: SessionDep) -> LibraryList:
    libraries = repository.list_libraries(session, principal.workspace_id)
    counts = library_cases.counts_of(session, libraries)
    return LibraryList(data=[library_out(lib, counts[lib.id]) for lib in libraries])


@router.get("/{library_id}", response_model=LibraryOut)
def get_library(library_id: str, principal: Reader, session: SessionDep) -> LibraryOut:
    library = repository.get_library(session, principal.workspace_id, library_id)
    return library_out(library, library_cases.counts_of(session, [library])[library.id])


@router.patch("/{library_id}", response_model=LibraryOut)
def update_library(library_id: str, body: LibraryUpdate, principal: Writer, session: SessionDep) -> LibraryOut:
    library = repository.get_library(session, principal.workspace_id, library_id)
    repository.update_library(
        session,
        library,
        name=body.name,
        description=body.description,
        metadata_=body.metadata,
        chunk_max_tokens=body.chunking.max_tokens if body.chunking else None,
        chunk_overlap_tokens=body.chunking.overlap_tokens if body.chunking else None,
    )
    return library_out(library, library_cases.counts_of(session, [library])[library.id])


@router.delete("/{library_id}", status_code=status.HTTP_204_NO_CONTENT)
def delete_library(library_id: str, principal: Writer, session: SessionDep, store: ChunkStoreDep) -> Response:
    library = repository.get_library(session, principal.workspace_id, library_id)
    # Chunks first: a failure here leaves the library listed and retryable, never rows without chunks' owner.
    store.delete_library(library.id)
    for blob in repository.delete_library(session, library):
        remove_blob(blob)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
