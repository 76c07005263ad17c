"""Query parameters a route does not declare are refused (422), never silently ignored."""

from fastapi import Request
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute

from api.schemas import SEED_FIELD_NAMES
from gristmill.errors import InvalidRequest

_DECLARED: dict[int, frozenset[str]] = {}


def refuse_unknown_query_parameters(request: Request) -> None:
    route = request.scope.get("route")
    if not isinstance(route, APIRoute):
        return
    declared = _DECLARED.get(id(route))
    if declared is None:
        declared = _DECLARED.setdefault(id(route), frozenset(_query_names(route.dependant)))
    unknown = [name for name in request.query_params if name not in declared]
    if not unknown:
        return
    name = unknown[0]
    here = f" (here: {SEED_FIELD_NAMES[name]})" if name in SEED_FIELD_NAMES else ""
    allowed = ", ".join(sorted(declared)) or "none"
    raise InvalidRequest(
        f"query parameter {name}: unknown parameter{here}; this route takes: {allowed}",
        code="validation_failed",
        details=[{"field": f"query parameter {n}", "loc": ["query", n], "msg": "unknown parameter", "type": "extra_forbidden"} for n in unknown],
    )


def _query_names(dependant: Dependant) -> set[str]:
    names = {param.alias for param in dependant.query_params}
    for sub in dependant.dependencies:
        names |= _query_names(sub)
    return names
