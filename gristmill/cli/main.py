"""The `gristmill` command: ingest, search and list libraries, serve, manage keys, run the embeddings server.

Each command imports what it needs when it runs: `gristmill --help` must not wait for Prefect.
"""

import argparse
import json
import os
import sys
from collections.abc import Sequence
from dataclasses import asdict

from gristmill.errors import GristmillError, InvalidRequest
from gristmill.search_modes import DEFAULT_SEARCH_MODE, SEARCH_MODES


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return 2
    from gristmill.environment import prepare_process
    from gristmill.settings import get_settings

    prepare_process(get_settings())
    try:
        return int(args.handler(args) or 0)
    except GristmillError as error:
        print(f"error: {error.message} ({error.code})", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gristmill", description="Self-hosted ingestion for retrieval.")
    commands = parser.add_subparsers(dest="command")

    ingest = commands.add_parser("ingest", help="ingest files, folders (recursively) and http(s) URLs")
    ingest.add_argument("inputs", nargs="+", help="files, folders or URLs")
    ingest.add_argument("--library", required=True, help="library name (created if missing)")
    ingest.add_argument("--external-id", help="upsert key; only with a single input")
    ingest.add_argument("--title", help="title; only with a single input")
    ingest.add_argument("--metadata", help="JSON object stored with every source")
    ingest.add_argument("--json", action="store_true", help="print the summary as JSON")
    ingest.set_defaults(handler=_ingest)

    search = commands.add_parser("search", help="search a library")
    search.add_argument("query")
    search.add_argument("--library", required=True)
    search.add_argument("--limit", type=int, default=10)
    search.add_argument("--mode", choices=SEARCH_MODES, default=DEFAULT_SEARCH_MODE)
    search.add_argument("--json", action="store_true", help="print results as JSON")
    search.set_defaults(handler=_search)

    libraries = commands.add_parser("libraries", help="list libraries with their source and chunk counts")
    libraries.add_argument("--json", action="store_true")
    libraries.set_defaults(handler=_libraries)

    jobs = commands.add_parser("jobs", help="act on jobs")
    job_commands = jobs.add_subparsers(dest="jobs_command", required=True)
    cancel = job_commands.add_parser("cancel", help="cancel an unfinished job: its sources not yet stored end cancelled")
    cancel.add_argument("job_id")
    cancel.add_argument("--json", action="store_true")
    cancel.set_defaults(handler=_cancel_job)

    serve = commands.add_parser("serve", help="run the whole service: Prefect, runner, embeddings, REST API")
    serve.set_defaults(handler=_serve)

    migrate = commands.add_parser(
        "migrate", help="bring the database to the newest schema and make the first admin key (once, before an upgrade's processes start)"
    )
    migrate.set_defaults(handler=_migrate)

    worker = commands.add_parser("worker", help="run the work pool's flow runs on this machine (a Prefect process worker)")
    worker.add_argument("--pool", help="work pool name (default GRISTMILL_WORK_POOL)")
    worker.add_argument("--name", help="the worker's name in Prefect (default: Prefect's)")
    worker.set_defaults(handler=_worker)

    keys = commands.add_parser("keys", help="manage API keys")
    key_commands = keys.add_subparsers(dest="keys_command", required=True)
    create = key_commands.add_parser("create", help="create a key (and its workspace if needed) and print it")
    create.add_argument("--workspace", default="default")
    create.add_argument("--scopes", default="ingest.read,ingest.write", help="comma-separated: ingest.read, ingest.write, admin")
    create.add_argument("--name")
    create.add_argument("--expires-in-days", type=float, help="the key stops working after this many days")
    create.set_defaults(handler=_create_key)
    listing = key_commands.add_parser("list", help="list keys: prefix, workspace, scopes, created, last used, state")
    listing.add_argument("--workspace", help="only this workspace's keys")
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(handler=_list_keys)
    revoke = key_commands.add_parser("revoke", help="revoke a key: it answers 401 from the next request on")
    revoke.add_argument("key", help="the key's id, or its prefix as `keys list` shows it")
    revoke.set_defaults(handler=_revoke_key)

    embeddings = commands.add_parser("embeddings-server", help="run the local embeddings server")
    embeddings.add_argument("--host")
    embeddings.add_argument("--port", type=int)
    embeddings.set_defaults(handler=_embeddings_server)
    return parser


# Standalone, the CLI fetches what its user could fetch anyway: pages on this machine included.
STANDALONE_ALLOWED_NETWORKS = "127.0.0.0/8,::1/128"


def _backend():
    """The running service named by GRISTMILL_URL, or this process (standalone)."""
    from gristmill.settings import get_settings

    settings = get_settings()
    if settings.url:
        from gristmill.cli.remote import RemoteBackend

        return RemoteBackend(settings)
    from gristmill.environment import prefect_credentials

    # Prefect's temporary server for this command requires the home's credentials, as `serve`'s does;
    # set before the standalone backend imports Prefect, which reads them once.
    os.environ.update(prefect_credentials(settings))
    from gristmill.cli.standalone import StandaloneBackend

    if settings.fetch_allowed_networks is None:
        # Through the environment, so that the flow run this process starts reads it too.
        os.environ["GRISTMILL_FETCH_ALLOWED_NETWORKS"] = STANDALONE_ALLOWED_NETWORKS
        get_settings.cache_clear()
        settings = get_settings()
    return StandaloneBackend(settings)


def _ingest(args: argparse.Namespace) -> int:
    from gristmill.cli import printer
    from gristmill.cli.inputs import collect_specs
    from gristmill.metadata import check_plain_text, metadata_from_json

    metadata = metadata_from_json(args.metadata, "--metadata")
    for flag, value in (("--library", args.library), ("--title", args.title), ("--external-id", args.external_id)):
        if value is not None:
            check_plain_text(value, flag)
    if (args.external_id or args.title) and len(args.inputs) != 1:
        raise InvalidRequest("--external-id and --title apply to a single input", code="single_input_only")
    specs, skipped = collect_specs(args.inputs, external_id=args.external_id, title=args.title, metadata=metadata)
    summary = _backend().ingest(args.library, specs, show_progress=not args.json)
    summary.skipped = skipped
    if args.json:
        print(json.dumps(asdict(summary), indent=2, default=str))
    else:
        printer.print_summary(summary)
    return 0 if summary.succeeded else 1


def _search(args: argparse.Namespace) -> int:
    from gristmill.cli import printer

    results = _backend().search(args.library, args.query, limit=args.limit, mode=args.mode)
    if args.json:
        print(json.dumps({"results": [asdict(r) for r in results]}, indent=2))
    else:
        printer.print_results(results)
    return 0


def _libraries(args: argparse.Namespace) -> int:
    from gristmill.cli import printer

    rows = _backend().libraries()
    if args.json:
        print(json.dumps({"libraries": [asdict(r) for r in rows]}, indent=2, default=str))
    else:
        printer.print_libraries(rows)
    return 0


def _cancel_job(args: argparse.Namespace) -> int:
    job = _backend().cancel_job(args.job_id)
    if args.json:
        print(json.dumps(asdict(job), indent=2))
    else:
        print(f"job {job.id} {job.status}; {job.cancelled} source(s) cancelled before they were stored")
    return 0


def _migrate(_args: argparse.Namespace) -> int:
    from gristmill.supervisor.serve import prepare_home

    prepare_home()
    return 0


def _worker(args: argparse.Namespace) -> int:
    from gristmill.settings import get_settings
    from gristmill.supervisor.worker import run_worker

    return run_worker(get_settings(), pool=args.pool, name=args.name)


def _serve(_args: argparse.Namespace) -> int:
    from gristmill.supervisor.serve import serve

    return serve()


# `gristmill keys` works on this machine's database (GRISTMILL_HOME or GRISTMILL_DATABASE_URL): the
# operator's tool. Elsewhere an admin key manages keys through the REST API (/v1/keys).


def _key_database():
    from gristmill.home import make_private
    from gristmill.settings import get_settings
    from storage.db import migrate, session_scope

    settings = get_settings()
    make_private(settings.home)
    migrate(settings.resolved_database_url)
    return session_scope(settings.resolved_database_url)


def _create_key(args: argparse.Namespace) -> int:
    from datetime import timedelta

    from gristmill.metadata import check_plain_text
    from storage.keys import create_key
    from storage.repository import ensure_workspace
    from storage.tables import utcnow

    check_plain_text(args.workspace, "--workspace")
    if args.name:
        check_plain_text(args.name, "--name")
    if args.expires_in_days is not None and args.expires_in_days <= 0:
        raise InvalidRequest("--expires-in-days must be more than 0", code="invalid_expiry")
    expires_at = utcnow() + timedelta(days=args.expires_in_days) if args.expires_in_days else None
    scopes = [s.strip() for s in args.scopes.split(",") if s.strip()]
    with _key_database() as session:
        plain, record = create_key(session, ensure_workspace(session, args.workspace), scopes, name=args.name, expires_at=expires_at)
    print(plain)
    until = f", expires {record.expires_at:%Y-%m-%d %H:%M} UTC" if record.expires_at else ""
    print(f"workspace {args.workspace}, scopes {', '.join(record.scopes)}{until}; store it now: it is not shown again", file=sys.stderr)
    return 0


def _list_keys(args: argparse.Namespace) -> int:
    from gristmill.cli import printer
    from storage.keys import list_keys
    from storage.repository import find_workspace_by_name
    from storage.tables import utcnow

    with _key_database() as session:
        workspace = find_workspace_by_name(session, args.workspace) if args.workspace else None
        if args.workspace and workspace is None:
            raise InvalidRequest(f"no workspace named {args.workspace!r}", code="workspace_not_found")
        listings = list_keys(session, workspace.id if workspace else None)
    now = utcnow()
    rows = [printer.KeyRow.of(listing.key, listing.workspace_name, now) for listing in listings]
    if args.json:
        print(json.dumps({"keys": [asdict(row) for row in rows]}, indent=2, default=str))
    else:
        printer.print_keys(rows)
    return 0


def _revoke_key(args: argparse.Namespace) -> int:
    from storage.keys import find_key_by_id_or_prefix, revoke_key

    with _key_database() as session:
        record = revoke_key(session, find_key_by_id_or_prefix(session, args.key))
    print(f"revoked key {record.prefix}... ({record.id}); it answers 401 from now on", file=sys.stderr)
    return 0


def _embeddings_server(args: argparse.Namespace) -> int:
    from gristmill.embeddings import server

    argv = []
    if args.host:
        argv += ["--host", args.host]
    if args.port:
        argv += ["--port", str(args.port)]
    server.main(argv)
    return 0
