"""The README's curl walk-through, extracted from the README and run as a user pastes it: twice, offline."""

import os
import subprocess
from pathlib import Path

import pytest

from tests.running_service import Service

pytestmark = pytest.mark.slow

README = Path(__file__).resolve().parent.parent / "README.md"
# Every curl of the walk-through must succeed: an answer of 400 or more fails the script.
STRICT = 'set -eo pipefail\ncurl() { command curl --fail-with-body --max-time 60 "$@"; }\n'


def walkthrough() -> str:
    text = README.read_text()
    start = text.index("<!-- walkthrough:start -->\n") + len("<!-- walkthrough:start -->\n")
    block = text[start : text.index("<!-- walkthrough:end -->")]
    lines = block.splitlines()
    assert all(line.startswith("    ") or not line.strip() for line in lines), "the walk-through is one indented block"
    return "\n".join(line[4:] for line in lines) + "\n"


def test_the_readme_walkthrough_works_when_pasted_twice(service: Service, tmp_path: Path) -> None:
    script = walkthrough()
    assert "example.com" not in script and "GRISTMILL_HOME" in script
    env = {**os.environ, "GRISTMILL_HOME": str(service.home), "GRISTMILL_API_PORT": str(service.api_port)}
    runs = [
        subprocess.run(["bash", "-c", STRICT + script], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
        for _ in range(2)
    ]
    for run in runs:
        assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
        assert '"text":"Rotate API keys under Settings > API."' in run.stdout
        assert run.stdout.rstrip().endswith("}") and '"text":"Refunds are paid within 14 days."' in run.stdout
    with service.client() as client:
        [library] = [lib for lib in client.get("/v1/libraries", params={"name": "handbook"}).json()["data"] if lib["name"] == "handbook"]
        assert library["source_count"] == 3  # the second run stored nothing twice
