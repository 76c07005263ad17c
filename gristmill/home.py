"""GRISTMILL_HOME, private to the user the service runs as, and the secrets kept in it.

Every Gristmill process runs with a umask of 0o077 (`gristmill.environment.prepare_process`), so
whatever it or a library in it writes later (SQLite and its WAL, blobs, LanceDB's data and index
files, Prefect's database, logs) is 0600 in 0700 folders; `make_private` tightens a home that an
older release or another tool left open.
"""

import os
import secrets
import stat
from collections.abc import Callable
from pathlib import Path

PRIVATE_UMASK = 0o077
PREFECT_AUTH_FILE = "prefect-auth"  # user:password of the Prefect server `gristmill serve` starts
EMBEDDINGS_KEY_FILE = "embeddings.key"  # bearer key of the embeddings server Gristmill starts
PREFECT_USER = "gristmill"


def make_private(home: Path) -> None:
    """Create `home` if needed and make it and everything under it the owner's alone (symlinks are
    left as they are: what they point at is not ours)."""
    home.mkdir(parents=True, exist_ok=True)
    _restrict(home)
    for root, folders, files in os.walk(home):
        for name in folders + files:
            _restrict(Path(root) / name)


def _restrict(path: Path) -> None:
    try:
        mode = path.lstat().st_mode
    except FileNotFoundError:  # removed meanwhile, e.g. a LanceDB transaction file
        return
    if stat.S_ISLNK(mode):
        return
    wanted = 0o700 if stat.S_ISDIR(mode) else stat.S_IMODE(mode) & 0o700  # an owner's x bit on a file stays
    if wanted != stat.S_IMODE(mode):
        path.chmod(wanted)


def read_secret(home: Path, name: str) -> str | None:
    path = home / name
    return path.read_text().strip() if path.is_file() else None


def ensure_secret(home: Path, name: str, make: Callable[[], str]) -> str:
    """The secret kept in `home/name`, made once (0600). Written aside and linked into place, so two
    processes starting at once agree on one and neither reads half of it."""
    found = read_secret(home, name)
    if found:
        return found
    home.mkdir(parents=True, exist_ok=True)
    draft = home / f".{name}.{os.getpid()}"
    fd = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(make() + "\n")
    try:
        os.link(draft, home / name)
    except FileExistsError:  # another process made it first: theirs holds
        pass
    finally:
        draft.unlink()
    return read_secret(home, name) or ""


def prefect_auth_string(home: Path) -> str:
    """`user:password` for the Prefect server Gristmill starts (the form Prefect's basic auth takes)."""
    return ensure_secret(home, PREFECT_AUTH_FILE, lambda: f"{PREFECT_USER}:{secrets.token_urlsafe(32)}")


def embeddings_key(home: Path) -> str:
    return ensure_secret(home, EMBEDDINGS_KEY_FILE, lambda: "gme_" + secrets.token_urlsafe(32))
