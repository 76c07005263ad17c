"""The CLI's client backend: when GRISTMILL_URL names a running service, commands go through its REST API."""

import json
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx

from gristmill.cli.backend import IngestSummary, ItemError, JobLine, LibraryLine, SourceLine
from gristmill.cli.printer import progress_bars
from gristmill.errors import GristmillError, NotFound, ServiceUnavailable
from gristmill.settings import Settings
from gristmill.tls import tls_context
from gristmill.usecases.shapes import SearchResult, SourceSpec

FINAL_JOB_STATUSES = {"completed", "partial", "failed", "cancelled"}
FILES_PER_REQUEST = 20
MULTIPART_MARGIN = 1024 * 1024  # part headers and boundaries, well over what 20 parts take
RATE_LIMIT_RETRIES = 10
MAX_RETRY_AFTER_SECONDS = 60.0
Numbered = list[tuple[int, SourceSpec]]  # inputs with their position on the command line


class RemoteBackend:
    def __init__(self, settings: Settings) -> None:
        assert settings.url
        headers = {"Authorization": f"Bearer {settings.api_key}"} if settings.api_key else {}
        self.client = httpx.Client(base_url=settings.url.rstrip("/"), headers=headers, timeout=120, verify=tls_context())
        self.max_upload_bytes = settings.max_upload_request_bytes - MULTIPART_MARGIN

    def ingest(self, library: str, specs: list[SourceSpec], *, show_progress: bool) -> IngestSummary:
        library_id = self._library_id(library, create=True)
        job_ids: list[str | None] = []
        errors: list[ItemError] = []
        urls = [(i, s) for i, s in enumerate(specs) if s.origin == "url"]
        files = [(i, s) for i, s in enumerate(specs) if s.origin == "file"]
        if urls:
            items = [{"url": s.uri, "title": s.title, "external_id": s.external_id, "metadata": s.metadata} for _, s in urls]
            job_ids.append(self._submit(f"/v1/libraries/{library_id}/ingest", urls, errors, json={"items": items}))
        for group in _upload_groups(files, self.max_upload_bytes):
            job_ids.append(self._upload(library_id, group, errors))
        jobs = self._wait([j for j in job_ids if j], show_progress)
        return self._summary(jobs, errors)

    def search(self, library: str, query: str, *, limit: int, mode: str) -> list[SearchResult]:
        library_id = self._library_id(library, create=False)
        answer = self._call("POST", f"/v1/libraries/{library_id}/search", json={"query": query, "limit": limit, "mode": mode})
        return [SearchResult(**r) for r in answer["results"]]

    def libraries(self) -> list[LibraryLine]:
        return [
            LibraryLine(
                id=lib["id"],
                name=lib["name"],
                description=lib["description"],
                sources=lib["source_count"],
                chunks=lib["chunk_count"],
                embedding_model=lib["embedding_model"],
            )
            for lib in self._all_libraries()
        ]

    def cancel_job(self, job_id: str) -> JobLine:
        job = self._call("POST", f"/v1/jobs/{job_id}/cancel")
        return JobLine(id=job["id"], status=job["status"], cancelled=job["counts"]["cancelled"])

    def _all_libraries(self) -> list[dict[str, Any]]:
        libraries, after = [], None
        while True:
            page = self._call("GET", "/v1/libraries", params={"limit": 1000, **({"after": after} if after else {})})
            libraries += page["data"]
            if not page["has_more"]:
                return sorted(libraries, key=lambda lib: lib["name"])
            after = page["data"][-1]["id"]

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        for waited in range(RATE_LIMIT_RETRIES + 1):
            try:
                answer = self.client.request(method, path, **kwargs)
            except httpx.HTTPError as error:
                raise ServiceUnavailable(f"cannot reach Gristmill at {self.client.base_url}: {error}") from None
            if answer.status_code != 429 or waited == RATE_LIMIT_RETRIES:
                break
            # The key's rate limit: wait as long as the service says, then send the same request again.
            time.sleep(min(float(answer.headers.get("Retry-After", "1")), MAX_RETRY_AFTER_SECONDS))
        if answer.status_code >= 400:
            raise _error_from(answer)
        return answer.json() if answer.content else None

    def _library_id(self, name: str, *, create: bool) -> str:
        if create:  # an upsert by name: the library as it is, or a new one
            return self._call("POST", "/v1/libraries/bulk", json={"libraries": [{"name": name}]})["data"][0]["id"]
        try:
            return self._call("GET", f"/v1/libraries/by-name/{quote(name, safe='')}")["id"]
        except GristmillError as error:
            if error.code == "library_not_found":
                raise NotFound(f"no library named {name!r}", code="library_not_found") from None
            raise

    def _submit(self, path: str, specs: Numbered, errors: list[ItemError], **kwargs: Any) -> str | None:
        try:
            answer = self._call("POST", path, **kwargs)
        except GristmillError as error:
            errors.extend(ItemError(index=i, input=s.uri, error=error.to_dict()) for i, s in specs)
            return None
        for result in answer["results"]:
            if result["status"] == "error":
                index, spec = specs[result["index"]]
                errors.append(ItemError(index=index, input=spec.uri, error=result["error"]))
        return answer["job_id"]

    def _upload(self, library_id: str, specs: Numbered, errors: list[ItemError]) -> str | None:
        files, present = [], []
        for index, spec in specs:
            path = Path(spec.uri or "")
            if not path.is_file():
                message = {"type": "fetch_error", "code": "file_not_found", "message": f"no such file: {path}", "details": None}
                errors.append(ItemError(index=index, input=spec.uri, error=message))
                continue
            files.append(("file", (path.name, path.read_bytes())))
            present.append((index, spec))
        if not files:
            return None
        data = {}
        if len(present) == 1 and present[0][1].external_id:
            data["external_id"] = present[0][1].external_id
        if present[0][1].metadata:
            data["metadata"] = json.dumps(present[0][1].metadata)
        return self._submit(f"/v1/libraries/{library_id}/files", present, errors, files=files, data=data)

    def _wait(self, job_ids: list[str], show_progress: bool) -> list[dict[str, Any]]:
        with progress_bars(enabled=show_progress) as progress:
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

    def _summary(self, jobs: list[dict[str, Any]], errors: list[ItemError]) -> IngestSummary:
        statuses = {j["status"] for j in jobs}
        status = "failed" if not jobs or statuses == {"failed"} else "partial" if statuses - {"completed"} or errors else "completed"
        summary = IngestSummary(job_id=",".join(j["id"] for j in jobs) or None, status=status, errors=errors)
        for job in jobs:
            for name in summary.counts:
                summary.counts[name] += job["counts"][name]
            for source_id in job["source_ids"]:
                source = self._call("GET", f"/v1/sources/{source_id}")
                summary.sources.append(
                    SourceLine(
                        source_id=source["id"],
                        input=source["uri"] or source["title"],
                        status=source["status"],
                        chunks=source["chunk_count"],
                        error=source["error"],
                        warnings=source["warnings"],
                        duplicate_of=source["duplicate_of"],
                    )
                )
        return summary


def _error_from(answer: httpx.Response) -> GristmillError:
    try:
        body = answer.json()["error"]
        message, code = body["message"], body["code"]
    except (ValueError, KeyError, TypeError):
        message, code = answer.text[:300], f"http_{answer.status_code}"
    return GristmillError(f"{message} (HTTP {answer.status_code})", code=code)


def _upload_groups(files: Numbered, max_bytes: int) -> list[Numbered]:
    """Files in upload requests of at most FILES_PER_REQUEST files and `max_bytes` together (the
    service cuts a larger request off); a file alone over it still goes, to be refused by name."""
    groups: list[Numbered] = []
    size = 0
    for index, spec in files:
        path = Path(spec.uri or "")
        length = path.stat().st_size if path.is_file() else 0
        if not groups or len(groups[-1]) >= FILES_PER_REQUEST or size + length > max_bytes:
            groups.append([])
            size = 0
        groups[-1].append((index, spec))
        size += length
    return groups
