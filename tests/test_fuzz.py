"""Schemathesis against the real API on loopback: no 5xx, no status the OpenAPI does not declare, no
answer that does not match its declared schema.

The API (`create_app`) runs in this process on a free port, on a fresh home with the real Prefect
server of the session and no flow runner: accepted jobs wait, nothing is fetched, and every `url` a
case carries is rewritten to the loopback web server first (tests/fuzz_hooks.py). The budget is
GRISTMILL_FUZZ_SECONDS (45 s by default, about 800 cases; the suite must stay under 15 minutes) for
the whole run: set it higher for a deeper search.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import serve_local_api
from tests.http_server import LoopbackServer

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
CHECKS = "not_a_server_error,status_code_conformance,content_type_conformance,response_headers_conformance,response_schema_conformance"


def test_the_api_answers_only_what_its_openapi_declares(
    prefect_server: str, gristmill_home: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    budget = os.environ.get("GRISTMILL_FUZZ_SECONDS", "45")
    roomy = {"GRISTMILL_RATE_LIMIT_WRITES": "1000000/minute", "GRISTMILL_RATE_LIMIT_SEARCHES": "1000000/minute"}
    with LoopbackServer() as web, serve_local_api(monkeypatch, **roomy) as api:
        web.serve("/fuzz", "a page on loopback", content_type="text/plain")
        env = {
            **os.environ,
            "PYTHONPATH": str(ROOT),
            "SCHEMATHESIS_HOOKS": "tests.fuzz_hooks",
            "GRISTMILL_FUZZ_LOOPBACK_URL": web.url("/fuzz"),
            "GRISTMILL_FUZZ_KEY_ID": api.admin_key_id,
        }
        command = [
            str(Path(sys.executable).parent / "st"), "run", f"{api.base_url}/openapi.json",
            "--checks", CHECKS,
            "--header", f"Authorization: Bearer {api.admin_key}",
            "--max-time", budget,
            "--workers", "2",
            # On a machine shared with other test runs a request can wait long for a core; a connection
            # the client dropped is tried again, while every answer the API gave is checked.
            "--request-timeout", "60",
            "--request-retries", "2",
            "--suppress-health-check", "all",
            "--report", "ndjson", "--report-dir", str(tmp_path),
        ]
        done = subprocess.run(command, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=int(budget) + 240)
    print(done.stdout[-5000:])
    assert done.returncode == 0, done.stdout[-20000:] + done.stderr[-3000:]
