"""Run a function in a child process under a time and an address-space limit.

Parsers are the code most exposed to hostile input (pypdf on a crafted PDF, lxml on a pathological
page): a hang, a runaway allocation or a segfault there must cost one source, not the flow-run
process. The caller is a Prefect flow-run process, which has threads, so plain `fork` could copy a
lock some other thread holds; children come from a `forkserver` instead: a clean single-threaded
server, started once per process with the parsing libraries already imported, forks each child.

Children are started without re-running the parent's `__main__` (gristmill.internals says why and how).
"""

import gc
import resource
import signal
import threading
import time
from collections.abc import Callable
from multiprocessing import context, forkserver
from multiprocessing.connection import Connection
from typing import Any, TypeVar

from gristmill.errors import GristmillError, ParseError
from gristmill.internals import MainlessForkServerProcess, stop_forkserver

T = TypeVar("T")

# Imported once in the forkserver so each child starts with them loaded (pypdf, lxml, trafilatura,
# duckdb: about a second of imports, plus warm caches, that a child would otherwise pay per call).
PRELOAD = [
    "gristmill.settings",
    "tasks.parse.dispatch",
    "tasks.parse.pdf",
    "tasks.parse.docx",
    "tasks.parse.html",
    "tasks.parse.csv",
    "tasks.parse.json",
    "tasks.parse.forkserver_warmup",
]
_KILL_GRACE_SECONDS = 5.0
_context_lock = threading.Lock()
_context: context.ForkServerContext | None = None


def _forkserver_context() -> context.ForkServerContext:
    global _context
    with _context_lock:
        if _context is None:
            ctx = context.ForkServerContext()
            ctx.set_forkserver_preload(PRELOAD)
            _context = ctx
        return _context


def warm_up() -> None:
    """Start the forkserver now (it imports the parsers) rather than on the first parse."""
    _forkserver_context()
    forkserver.ensure_running()


def stop() -> None:
    """Stop the forkserver, which holds the parsers' imports (~100 MB); the next parse starts it again.

    Only for when no parse is in flight: a child forked before would lose its exit status.
    """
    with _context_lock:
        if _context is not None:
            stop_forkserver()


def run_isolated(
    fn: Callable[..., T], *args: Any, timeout: float, memory_bytes: int | None, **kwargs: Any
) -> T:
    """fn(*args, **kwargs) in a child process; its result, or its GristmillError raised again here.

    `fn` and its arguments must pickle (fn defined at module level in an importable module). Raises
    ParseError "parse_timeout" when the child runs past `timeout` seconds (it is killed),
    "parse_memory" when it runs out of its `memory_bytes` address space, and "parser_crashed" when it
    dies without an answer (a segfault, a kill) or raises something that is not a GristmillError.
    """
    ctx = _forkserver_context()
    receiver, sender = ctx.Pipe(duplex=False)
    process = MainlessForkServerProcess(
        target=_child_main, args=(sender, fn, args, kwargs, timeout, memory_bytes), daemon=True
    )
    started = time.monotonic()
    try:
        process.start()
    except OSError as exc:  # no forkserver, no fork: the machine, not the file, is at fault
        receiver.close()
        sender.close()
        raise ParseError(f"could not start the parsing process: {exc}", code="parser_crashed") from exc
    try:
        sender.close()  # the child holds the only write end, so its death reads as EOF here
        if not receiver.poll(timeout):
            _kill(process)
            raise ParseError(
                f"parsing took longer than the {timeout:g} s limit and was stopped",
                code="parse_timeout",
                details={"timeout_seconds": timeout},
            )
        try:
            status, payload = _receive(receiver)
        except (EOFError, OSError):
            process.join(_KILL_GRACE_SECONDS)
            raise _death(process.exitcode, time.monotonic() - started) from None
    finally:
        receiver.close()
        if process.is_alive():
            _kill(process)
        process.join(_KILL_GRACE_SECONDS)
        if process.exitcode is not None:
            process.close()
    if status == "ok":
        return payload
    raise payload


def _receive(receiver: Connection) -> Any:
    # Unpickling a Document of 40,000 CSV rows creates ~200,000 objects, and the cyclic collector
    # would run hundreds of times over them for nothing (they hold no cycles): 3-4x slower.
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        return receiver.recv()
    finally:
        if was_enabled:
            gc.enable()


def _child_main(
    sender: Connection,
    fn: Callable[..., Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    timeout: float,
    memory_bytes: int | None,
) -> None:
    if memory_bytes:
        resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, memory_bytes))
    # A backstop if the parent dies and cannot kill us: the kernel stops a CPU-bound child itself.
    cpu_seconds = int(timeout) + 10
    resource.setrlimit(resource.RLIMIT_CPU, (cpu_seconds, cpu_seconds + 5))
    try:
        outcome: tuple[str, Any] = ("ok", fn(*args, **kwargs))
    except GristmillError as exc:
        outcome = ("error", exc)
    except MemoryError:
        outcome = ("error", _memory_error(memory_bytes))
    except BaseException as exc:  # noqa: BLE001 - anything else is a parser bug, reported as a crash
        outcome = ("error", ParseError(f"the parser crashed: {type(exc).__name__}: {exc}", code="parser_crashed"))
    try:
        sender.send(outcome)
    except MemoryError:
        sender.send(("error", _memory_error(memory_bytes)))
    except Exception as exc:  # noqa: BLE001 - e.g. a result that does not pickle
        sender.send(("error", ParseError(f"the parser's result could not be returned: {exc}", code="parser_crashed")))
    finally:
        sender.close()


def _memory_error(memory_bytes: int | None) -> ParseError:
    limit = f" of {memory_bytes / (1024 * 1024):.0f} MB" if memory_bytes else ""
    return ParseError(
        f"parsing ran out of memory (limit{limit}); the file is too large or too complex to parse",
        code="parse_memory",
        details={"memory_bytes": memory_bytes},
    )


def _death(exitcode: int | None, elapsed: float) -> ParseError:
    if exitcode is not None and exitcode < 0:
        try:
            how = f"killed by {signal.Signals(-exitcode).name}"
        except ValueError:
            how = f"killed by signal {-exitcode}"
        if -exitcode == signal.SIGXCPU:
            return ParseError(
                f"parsing used up its CPU time and was stopped after {elapsed:.0f} s", code="parse_timeout"
            )
    else:
        how = f"exited with status {exitcode}"
    return ParseError(
        f"the parser process died without an answer ({how}); the file may be malformed",
        code="parser_crashed",
        details={"exitcode": exitcode},
    )


def _kill(process: MainlessForkServerProcess) -> None:
    process.kill()
    process.join(_KILL_GRACE_SECONDS)
