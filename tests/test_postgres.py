"""PostgreSQL as the database of a service of several processes: every migration, the reconciler's
lease, and Prefect's own server. The repository, webhook, key, pipeline and service tests run on
PostgreSQL as well (their modules' `DATABASE_BACKENDS`)."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import create_engine, inspect, text
from sqlalchemy.engine import make_url

from gristmill.settings import Settings
from gristmill.supervisor.serve import build_children
from storage.db import MIGRATIONS_DIR, get_engine, migrate
from storage.locks import SingletonLease
from tests.conftest import free_port, fresh_postgres_database, wait_for_http

TABLES = {"alembic_version", "api_keys", "ingest_jobs", "libraries", "sources", "webhook_deliveries", "webhook_events",
          "webhook_subscriptions", "workspaces"}


def test_every_migration_runs_on_postgresql_up_down_and_up_again() -> None:
    from alembic import command
    from alembic.config import Config

    with fresh_postgres_database("migrations") as url:
        migrate(url)
        assert TABLES <= set(inspect(get_engine(url)).get_table_names())
        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS_DIR))
        with get_engine(url).begin() as connection:
            config.attributes["connection"] = connection
            command.downgrade(config, "base")
        assert set(inspect(get_engine(url)).get_table_names()) <= {"alembic_version"}
        migrate(url)
        with get_engine(url).connect() as connection:
            head = connection.execute(text("SELECT version_num FROM alembic_version")).scalar()
        assert head == sorted(p.name.split("_")[0] for p in (MIGRATIONS_DIR / "versions").glob("0*.py"))[-1]


def test_one_process_at_a_time_holds_the_reconciler_lease_and_a_killed_holder_hands_it_on() -> None:
    with fresh_postgres_database("lease") as url:
        first, second = SingletonLease(url, "gristmill.reconciler"), SingletonLease(url, "gristmill.reconciler")
        assert (first.held(), second.held(), first.held()) == (True, False, True)
        first.release()
        assert second.held() and not first.held()
        second.release()

        # Another process takes it and dies by SIGKILL: the server ends its session, and the lease with it.
        holder = subprocess.Popen(
            [sys.executable, "-c", "import sys, time; from storage.locks import SingletonLease; "
             f"assert SingletonLease({url!r}, 'gristmill.reconciler').held(); print('held', flush=True); time.sleep(600)"],
            stdout=subprocess.PIPE, text=True,
        )
        try:
            assert holder.stdout.readline().strip() == "held"
            assert not first.held()
            os.kill(holder.pid, signal.SIGKILL)
            holder.wait(timeout=10)
            deadline = time.monotonic() + 10
            while not first.held():
                assert time.monotonic() < deadline, "the killed holder's lease was not released"
                time.sleep(0.1)
        finally:
            holder.kill()
            first.release()


def test_on_sqlite_every_process_holds_the_lease(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'g.db'}"
    assert SingletonLease(url, "gristmill.reconciler").held() and SingletonLease(url, "gristmill.reconciler").held()


@pytest.mark.slow
def test_serve_starts_prefects_server_on_postgresql(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PREFECT_API_URL")  # `serve` starts its own Prefect server only when none is named
    with fresh_postgres_database("prefect") as url:
        prefect_url = make_url(url).set(drivername="postgresql+asyncpg").render_as_string(hide_password=False)
        settings = Settings(home=tmp_path / "home", prefect_port=free_port(), prefect_database_url=prefect_url)
        settings.home.mkdir()
        (child,) = [c for c in build_children(settings) if c.name == "Prefect server"]
        assert child.env["PREFECT_API_DATABASE_CONNECTION_URL"] == prefect_url
        child.log_path = tmp_path / "prefect.log"
        child.start()
        try:
            wait_for_http(child.ready_url, timeout=180, process=child.process)
            engine = create_engine(url)
            try:
                assert {"flow_run", "deployment", "work_pool"} <= set(inspect(engine).get_table_names()), child.log_path.read_text()
            finally:
                engine.dispose()
        finally:
            child.stop()
