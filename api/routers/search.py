from fastapi import APIRouter

from api.auth import Searcher
from api.deps import ChunkStoreDep, SessionDep, SettingsDep
from api.schemas import SearchRequest, SearchResponse, errors, rate_limited
from gristmill.usecases.search import search_library
from storage import repository

router = APIRouter(prefix="/v1/libraries/{library_id}", tags=["search"])


@router.post(
    "/search", response_model=SearchResponse, responses=rate_limited(200, errors(400, 401, 403, 404, 413, 422, 429, 502, 503))
)
def search(
    library_id: str, body: SearchRequest, principal: Searcher, session: SessionDep, settings: SettingsDep, store: ChunkStoreDep
) -> SearchResponse:
    library = repository.get_library(session, principal.workspace_id, library_id)
    results = search_library(
        settings, store, library, body.query, mode=body.mode, limit=body.limit, filter=body.filter, min_score=body.min_score
    )
    return SearchResponse(results=results)
