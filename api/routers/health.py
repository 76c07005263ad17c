from fastapi import APIRouter
from fastapi.responses import JSONResponse
from sqlalchemy import text

from api.deps import SettingsDep
from api.orchestration import prefect_ui_url
from api.processes import is_reachable
from storage.db import get_engine

router = APIRouter(tags=["health"])


@router.get("/healthz")
def healthz(settings: SettingsDep) -> JSONResponse:
    """200 when the API, the database, Prefect and the embeddings endpoint answer; 503 naming what does not."""
    checks = {
        "api": True,
        "database": _database_ok(settings.resolved_database_url),
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


def _database_ok(url: str) -> bool:
    try:
        with get_engine(url).connect() as connection:
            connection.execute(text("SELECT 1"))
        return True
    except Exception:
        return False
