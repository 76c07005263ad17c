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

    serve = commands.add_parser("serve", help="run the whole service: Prefect, runner, embeddings, REST API")
    serve.set_defaults(handler=_serve)

    keys = commands.add_parser("keys", help="manage API keys")
    key_commands = keys.add_subparsers(dest="keys_command", required=True)
    create = key_commands.add_parser("create", help="create a key (and its workspace if needed) and print it")
    create.add_argument("--workspace", default="default")
    create.add_argument("--scopes", default="ingest.read,ingest.write", help="comma-separated: ingest.read, ingest.write, admin")
    create.add_argument("--name")
    create.set_defaults(handler=_create_key)

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
    from gristmill.metadata import metadata_from_json

    metadata = metadata_from_json(args.metadata, "--metadata")
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


def _serve(_args: argparse.Namespace) -> int:
    from gristmill.supervisor.serve import serve

    return serve()


def _create_key(args: argparse.Namespace) -> int:
    from gristmill.settings import get_settings
    from storage.db import migrate, session_scope
    from storage.keys import create_key

    settings = get_settings()
    migrate(settings.resolved_database_url)
    scopes = [s.strip() for s in args.scopes.split(",") if s.strip()]
    with session_scope(settings.resolved_database_url) as session:
        plain, record = create_key(session, args.workspace, scopes, name=args.name)
    print(plain)
    print(f"workspace {args.workspace}, scopes {', '.join(record.scopes)}; store it now: it is not shown again", file=sys.stderr)
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
