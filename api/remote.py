"""The CLI's client mode: when GRISTMILL_URL names a running service, commands go through its REST API."""

import time
from pathlib import Path
from typing import Any

import httpx
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from api.local import console
from api.search_service import SearchResult
from api.submission import SourceSpec
from gristmill.errors import GristmillError, NotFound, ServiceUnavailable
from gristmill.settings import Settings
from gristmill.tls import tls_context

FINAL_JOB_STATUSES = {"completed", "partial", "failed"}
FILES_PER_REQUEST = 20


class RemoteService:
    def __init__(self, settings: Settings) -> None:
        assert settings.url
        headers = {"Authorization": f"Bearer {settings.api_key}"} if settings.api_key else {}
        self.client = httpx.Client(base_url=settings.url.rstrip("/"), headers=headers, timeout=120, verify=tls_context())

    def _call(self, method: str, path: str, **kwargs) -> Any:
        try:
            answer = self.client.request(method, path, **kwargs)
        except httpx.HTTPError as error:
            raise ServiceUnavailable(f"cannot reach Gristmill at {self.client.base_url}: {error}") from None
        if answer.status_code >= 400:
            raise _error_from(answer)
        return answer.json() if answer.content else None

    def library_id(self, name: str, *, create: bool) -> str:
        for library in self._call("GET", "/v1/libraries")["data"]:
            if library["name"] == name:
                return library["id"]
        if not create:
            raise NotFound(f"no library named {name!r}", code="library_not_found")
        return self._call("POST", "/v1/libraries", json={"name": name})["id"]

    def ingest(self, library_name: str, specs: list[SourceSpec], *, show_progress: bool) -> dict[str, Any]:
        library_id = self.library_id(library_name, create=True)
        job_ids: list[str] = []
        errors: list[dict[str, Any]] = []
        urls = [s for s in specs if s.origin == "url"]
        files = [s for s in specs if s.origin == "file"]
        if urls:
            items = [{"url": s.uri, "title": s.title, "external_id": s.external_id, "metadata": s.metadata} for s in urls]
            job_ids.append(self._submit(f"/v1/libraries/{library_id}/ingest", urls, errors, json={"items": items}))
        for start in range(0, len(files), FILES_PER_REQUEST):
            batch = files[start : start + FILES_PER_REQUEST]
            job_ids.append(self._upload(library_id, batch, errors))
        job_ids = [j for j in job_ids if j]
        jobs = self._wait(job_ids, show_progress)
        return _summary(self, jobs, errors)

    def _submit(self, path: str, specs: list[SourceSpec], errors: list, **kwargs) -> str | None:
        try:
            answer = self._call("POST", path, **kwargs)
        except GristmillError as error:
            errors.extend({"input": s.uri, "error": error.to_dict()} for s in specs)
            return None
        for result in answer["results"]:
            if result["status"] == "error":
                errors.append({"input": specs[result["index"]].uri, "error": result["error"]})
        return answer["job_id"]

    def _upload(self, library_id: str, specs: list[SourceSpec], errors: list) -> str | None:
        files, data = [], {}
        for spec in specs:
            path = Path(spec.uri or "")
            if not path.is_file():
                errors.append({"input": spec.uri, "error": {"code": "file_not_found", "message": f"no such file: {path}"}})
                continue
            files.append(("file", (path.name, path.read_bytes())))
        if not files:
            return None
        if len(specs) == 1 and specs[0].external_id:
            data["external_id"] = specs[0].external_id
        if specs[0].metadata:
            import json

            data["metadata"] = json.dumps(specs[0].metadata)
        return self._submit(f"/v1/libraries/{library_id}/files", specs, errors, files=files, data=data)

    def _wait(self, job_ids: list[str], show_progress: bool) -> list[dict[str, Any]]:
        columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
        with Progress(*columns, console=console, disable=not show_progress) as progress:
            bar = progress.add_task("sources done", total=None)
            while True:
                jobs = [self._call("GET", f"/v1/jobs/{j}") for j in job_ids]
                progress.update(
                    bar,
                    completed=sum(j["progress"]["current"] for j in jobs),
                    total=sum(j["progress"]["total"] for j in jobs),
                )
                if all(j["status"] in FINAL_JOB_STATUSES for j in jobs):
                    return jobs
                time.sleep(0.5)

    def search(self, library_name: str, query: str, *, limit: int, mode: str) -> list[SearchResult]:
        library_id = self.library_id(library_name, create=False)
        answer = self._call("POST", f"/v1/libraries/{library_id}/search", json={"query": query, "limit": limit, "mode": mode})
        return [SearchResult(**r) for r in answer["results"]]

    def libraries(self) -> list[dict[str, Any]]:
        return [
            {
                "id": lib["id"],
                "name": lib["name"],
                "description": lib["description"],
                "sources": lib["source_count"],
                "chunks": lib["chunk_count"],
                "embedding_model": lib["embedding_model"],
            }
            for lib in self._call("GET", "/v1/libraries")["data"]
        ]


def _summary(service: RemoteService, jobs: list[dict[str, Any]], errors: list[dict[str, Any]]) -> dict[str, Any]:
    counts = {"completed": 0, "partial": 0, "failed": 0, "duplicate": 0}
    sources = []
    for job in jobs:
        for name in counts:
            counts[name] += job["counts"][name]
        for source_id in job["source_ids"]:
            source = service._call("GET", f"/v1/sources/{source_id}")
            sources.append(
                {
                    "source_id": source["id"],
                    "input": source["uri"] or source["title"],
                    "status": source["status"],
                    "chunks": source["chunk_count"],
                    "error": source["error"],
                    "warnings": source["warnings"],
                    "duplicate_of": source["duplicate_of"],
                }
            )
    statuses = {j["status"] for j in jobs}
    status = "failed" if not jobs or statuses == {"failed"} else "partial" if statuses - {"completed"} or errors else "completed"
    return {"job_id": ",".join(j["id"] for j in jobs) or None, "status": status, "counts": counts, "sources": sources, "errors": errors}


def _error_from(answer: httpx.Response) -> GristmillError:
    try:
        body = answer.json()["error"]
        message, code = body["message"], body["code"]
    except (ValueError, KeyError, TypeError):
        message, code = answer.text[:300], f"http_{answer.status_code}"
    error = GristmillError(f"{message} (HTTP {answer.status_code})", code=code)
    return error
