from fastapi import APIRouter
from fastapi.responses import JSONResponse

from api.deps import SettingsDep
from api.schemas import Health, HealthDown, errors
from gristmill.probes import is_reachable
from gristmill.usecases.orchestration import prefect_ui_url
from storage.db import database_answers

router = APIRouter(tags=["health"])


@router.get(
    "/healthz",
    response_model=Health,
    responses={**errors(422), 503: {"model": HealthDown, "description": "Something the service needs does not answer."}},
)
def healthz(settings: SettingsDep) -> JSONResponse:
    """200 when the API, the database, Prefect and the embeddings endpoint answer; 503 naming what does not."""
    checks = {
        "api": True,
        "database": database_answers(settings.resolved_database_url),
        "prefect": bool(prefect_ui_url()) and is_reachable(f"{prefect_ui_url()}/api/health"),
        "embeddings": is_reachable(settings.embeddings_url.rstrip("/") + "/models"),
    }
    down = [name for name, ok in checks.items() if not ok]
    if down:
        return JSONResponse(
            status_code=503,
            content={
                "status": "unavailable",
                "checks": checks,
                "error": {
                    "type": "service_unavailable",
                    "code": "dependency_down",
                    "message": f"not reachable: {', '.join(down)}",
                    "details": {"down": down},
                },
            },
        )
    return JSONResponse({"status": "ok", "checks": checks})
