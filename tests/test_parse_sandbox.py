"""The parse sandbox: a child that hangs, eats memory, dies or raises costs one parse, not this process."""

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from gristmill.documents import FetchedContent
from gristmill.errors import ParseError, UnsupportedType
from gristmill.settings import Settings
from tasks.parse import parse_document, parse_isolated, run_isolated, sandbox
from tests.builders import build_pdf

MB = 1024 * 1024
REPO = Path(__file__).resolve().parents[1]

# --- deliberately bad "parsers": module-level so the child can unpickle them ------------------


def double(x: int) -> int:
    return 2 * x


def sleep_forever(pid_file: str) -> None:
    Path(pid_file).write_text(str(os.getpid()))
    time.sleep(600)


def eat_memory() -> int:
    hoard = [bytearray(64 * MB) for _ in range(64)]  # 4 GB, far over the limit
    return len(hoard)


def segfault() -> None:
    os.kill(os.getpid(), signal.SIGSEGV)


def raise_unsupported() -> None:
    raise UnsupportedType("no parser for .xyz files", code="weird_type", details={"ext": ".xyz"})


def raise_value_error() -> None:
    raise ValueError("boom")


# --- run_isolated ------------------------------------------------------------------------------


def test_result_comes_back() -> None:
    assert run_isolated(double, 21, timeout=30, memory_bytes=512 * MB) == 42


def test_a_hung_parser_is_killed_at_the_time_limit(tmp_path: Path) -> None:
    pid_file = tmp_path / "child.pid"
    started = time.monotonic()

    # 4 s leaves the child time to import this module and write its pid even on a loaded machine.
    with pytest.raises(ParseError) as error:
        run_isolated(sleep_forever, str(pid_file), timeout=4.0, memory_bytes=512 * MB)

    assert time.monotonic() - started < 15
    assert error.value.code == "parse_timeout"
    assert error.value.message == "parsing took longer than the 4 s limit and was stopped"
    with pytest.raises(ProcessLookupError):
        os.kill(int(pid_file.read_text()), 0)  # killed and reaped, not left running
    assert run_isolated(double, 2, timeout=30, memory_bytes=512 * MB) == 4


def test_a_parser_that_eats_memory_hits_the_limit() -> None:
    with pytest.raises(ParseError) as error:
        run_isolated(eat_memory, timeout=30, memory_bytes=320 * MB)

    assert error.value.code == "parse_memory"
    assert error.value.message == (
        "parsing ran out of memory (limit of 320 MB); the file is too large or too complex to parse"
    )
    assert run_isolated(double, 3, timeout=30, memory_bytes=512 * MB) == 6


def test_a_parser_that_crashes_is_reported() -> None:
    with pytest.raises(ParseError) as error:
        run_isolated(segfault, timeout=30, memory_bytes=512 * MB)

    assert error.value.code == "parser_crashed"
    assert error.value.message == (
        "the parser process died without an answer (killed by SIGSEGV); the file may be malformed"
    )
    assert run_isolated(double, 4, timeout=30, memory_bytes=512 * MB) == 8


def test_gristmill_errors_cross_back_with_their_class_code_and_details() -> None:
    with pytest.raises(UnsupportedType) as error:
        run_isolated(raise_unsupported, timeout=30, memory_bytes=512 * MB)

    assert error.value.code == "weird_type"
    assert error.value.message == "no parser for .xyz files"
    assert error.value.details == {"ext": ".xyz"}


def test_other_exceptions_become_parser_crashed() -> None:
    with pytest.raises(ParseError) as error:
        run_isolated(raise_value_error, timeout=30, memory_bytes=512 * MB)

    assert error.value.code == "parser_crashed"
    assert error.value.message == "the parser crashed: ValueError: boom"


def test_children_do_not_rerun_the_callers_main_module(tmp_path: Path) -> None:
    log = tmp_path / "imports.log"
    script = tmp_path / "caller.py"
    script.write_text(
        textwrap.dedent(
            f"""
            import os
            with open({str(log)!r}, "a") as f:
                f.write(__name__ + "\\n")
            if __name__ == "__main__":
                from tasks.parse import run_isolated
                pids = {{run_isolated(os.getpid, timeout=30, memory_bytes=None) for _ in range(2)}}
                assert os.getpid() not in pids and len(pids) == 2
            """
        )
    )

    subprocess.run([sys.executable, str(script)], cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)}, check=True)

    assert log.read_text() == "__main__\n"  # never "__mp_main__": children skipped the script


# --- parse_isolated ----------------------------------------------------------------------------


def test_parse_isolated_gives_the_same_document_as_in_process(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path)
    source = FetchedContent(
        data=build_pdf([["First page."], ["Second page."]], title="Two pages"),
        content_type="application/pdf",
        uri="/uploads/two.pdf",
    )

    assert parse_isolated(source, settings) == parse_document(source, settings)


def test_risky_formats_run_in_the_child_and_plain_text_in_process(tmp_path: Path) -> None:
    # No child can start under a 1 MB address space, so only in-process parsing succeeds here.
    settings = Settings(home=tmp_path, parse_memory_bytes=1 * MB)
    note = FetchedContent(data=b"# Note\n\nBuy milk.", content_type="text/markdown", uri=None)
    table = FetchedContent(data=b"item,qty\nmilk,2\n", content_type="text/csv", uri=None)

    assert parse_isolated(note, settings).text == "Buy milk."
    with pytest.raises(ParseError) as error:
        parse_isolated(table, settings)
    assert error.value.code in {"parse_memory", "parser_crashed"}


def test_large_text_files_run_in_the_child_too(tmp_path: Path) -> None:
    # Past 256 KB a note is no longer cheap to parse: it gets the same limits as the risky formats.
    # No child answers within 1 ms, so only a parse in this process can succeed here.
    settings = Settings(home=tmp_path, parse_timeout_seconds=0.001)
    small = FetchedContent(data=b"# Log\n\n" + b"All quiet.\n" * 20_000, content_type="text/markdown", uri=None)
    large = FetchedContent(data=b"# Log\n\n" + b"All quiet.\n" * 30_000, content_type="text/markdown", uri=None)

    assert parse_isolated(small, settings).sections[0].heading_path == ["Log"]
    with pytest.raises(ParseError) as error:
        parse_isolated(large, settings)
    assert error.value.code == "parse_timeout"


def test_parse_isolated_applies_the_time_limit(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path, parse_timeout_seconds=0.001)
    source = FetchedContent(data=build_pdf([["Slow enough."]]), content_type="application/pdf", uri=None)

    with pytest.raises(ParseError) as error:
        parse_isolated(source, settings)

    assert error.value.code == "parse_timeout"
    assert error.value.message == "parsing took longer than the 0.001 s limit and was stopped"


def test_parse_task_is_parse_isolated_without_retries() -> None:
    from tasks.parse import parse_task

    assert parse_task.name == "parse"
    assert parse_task.retries == 0
    assert parse_task.fn is parse_isolated


def _forkserver_children() -> set[int]:
    """This process's children that are multiprocessing forkservers."""
    children: set[int] = set()
    for task_dir in Path(f"/proc/{os.getpid()}/task").iterdir():
        children.update(int(pid) for pid in (task_dir / "children").read_text().split())
    servers = set()
    for pid in children:
        try:
            if b"forkserver" in Path(f"/proc/{pid}/cmdline").read_bytes():
                servers.add(pid)
        except FileNotFoundError:  # exited meanwhile
            pass
    return servers


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="reads the process tree from /proc")
def test_stop_ends_the_forkserver_and_the_next_parse_starts_another() -> None:
    assert run_isolated(double, 1, timeout=30, memory_bytes=None) == 2
    servers = _forkserver_children()
    assert len(servers) == 1

    sandbox.stop()
    assert _forkserver_children() == set()
    assert not Path(f"/proc/{servers.pop()}").exists()  # reaped, not left a zombie

    assert run_isolated(double, 4, timeout=30, memory_bytes=None) == 8
    assert len(_forkserver_children()) == 1
