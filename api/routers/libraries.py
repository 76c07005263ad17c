from fastapi import APIRouter, Response, status

from api.auth import Reader, Writer
from api.deps import ChunkStoreDep, SessionDep, SettingsDep
from api.schemas import Chunking, LibraryCreate, LibraryList, LibraryOut, LibraryUpdate
from gristmill.errors import Conflict
from storage import repository
from storage.blobs import remove_blob
from storage.tables import Library, utcnow

router = APIRouter(prefix="/v1/libraries", tags=["libraries"])


def library_out(library: Library, counts: tuple[int, int]) -> LibraryOut:
    return LibraryOut(
        id=library.id,
        name=library.name,
        description=library.description,
        metadata=library.metadata_,
        embedding_model=library.embedding_model,
        embedding_dim=library.embedding_dim,
        chunking=Chunking(max_tokens=library.chunk_max_tokens, overlap_tokens=library.chunk_overlap_tokens),
        source_count=counts[0],
        chunk_count=counts[1],
        created_at=library.created_at,
        updated_at=library.updated_at,
    )


@router.post("", status_code=status.HTTP_201_CREATED, response_model=LibraryOut)
def create_library(body: LibraryCreate, principal: Writer, session: SessionDep, settings: SettingsDep) -> LibraryOut:
    chunking = body.chunking or Chunking(
        max_tokens=settings.chunk_max_tokens, overlap_tokens=settings.chunk_overlap_tokens
    )
    library = repository.create_library(
        session,
        principal.workspace_id,
        name=body.name,
        description=body.description,
        metadata=body.metadata,
        embedding_model=settings.embedding_model,
        embedding_dim=settings.embedding_dim,
        chunk_max_tokens=chunking.max_tokens,
        chunk_overlap_tokens=chunking.overlap_tokens,
    )
    return library_out(library, (0, 0))


@router.get("", response_model=LibraryList)
def list_libraries(principal: Reader, session: SessionDep) -> LibraryList:
    libraries = repository.list_libraries(session, principal.workspace_id)
    counts = repository.library_source_counts(session, [lib.id for lib in libraries])
    return LibraryList(data=[library_out(lib, counts[lib.id]) for lib in libraries])


@router.get("/{library_id}", response_model=LibraryOut)
def get_library(library_id: str, principal: Reader, session: SessionDep) -> LibraryOut:
    library = repository.get_library(session, principal.workspace_id, library_id)
    return library_out(library, repository.library_source_counts(session, [library.id])[library.id])


@router.patch("/{library_id}", response_model=LibraryOut)
def update_library(library_id: str, body: LibraryUpdate, principal: Writer, session: SessionDep) -> LibraryOut:
    library = repository.get_library(session, principal.workspace_id, library_id)
    if body.name is not None and body.name != library.name:
        if repository.find_library_by_name(session, principal.workspace_id, body.name):
            raise Conflict(f"a library named {body.name!r} already exists in this workspace", code="library_exists")
        library.name = body.name
    if body.description is not None:
        library.description = body.description
    if body.metadata is not None:
        library.metadata_ = body.metadata
    if body.chunking is not None:
        library.chunk_max_tokens = body.chunking.max_tokens
        library.chunk_overlap_tokens = body.chunking.overlap_tokens
    library.updated_at = utcnow()
    session.add(library)
    session.commit()
    return library_out(library, repository.library_source_counts(session, [library.id])[library.id])


@router.delete("/{library_id}", status_code=status.HTTP_204_NO_CONTENT)
def delete_library(library_id: str, principal: Writer, session: SessionDep, store: ChunkStoreDep) -> Response:
    library = repository.get_library(session, principal.workspace_id, library_id)
    # Chunks first: a failure here leaves the library listed and retryable, never rows without chunks' owner.
    store.delete_library(library.id)
    for blob in repository.delete_library(session, library):
        remove_blob(blob)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
