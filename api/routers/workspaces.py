"""Workspaces, for an admin key: a workspace's keys see only its libraries, sources and jobs."""

from fastapi import APIRouter, status

from api.auth import AdminReader, AdminWriter
from api.deps import SessionDep
from api.schemas import WorkspaceCreate, WorkspaceList, WorkspaceOut, errors, rate_limited
from storage import repository
from storage.tables import Workspace

router = APIRouter(prefix="/v1/workspaces", tags=["workspaces"])


def workspace_out(workspace: Workspace) -> WorkspaceOut:
    return WorkspaceOut(id=workspace.id, name=workspace.name, created_at=workspace.created_at)


@router.get("", response_model=WorkspaceList, responses=errors(401, 403, 422))
def list_workspaces(principal: AdminReader, session: SessionDep) -> WorkspaceList:
    return WorkspaceList(data=[workspace_out(w) for w in repository.list_workspaces(session)])


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=WorkspaceOut,
    responses=rate_limited(201, errors(400, 401, 403, 409, 413, 422, 429, 503, descriptions={409: "A workspace of this name exists."})),
)
def create_workspace(body: WorkspaceCreate, principal: AdminWriter, session: SessionDep) -> WorkspaceOut:
    return workspace_out(repository.create_workspace(session, body.name))
