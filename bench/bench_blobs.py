"""Blob store choice for a scaled-out service: S3 (moto's server on loopback, as the tests run it)
against the same bytes as a PostgreSQL bytea row, written then read back.

    .venv/bin/python -m bench.bench_blobs [--count 200] [--size 65536]

Needs the machine's PostgreSQL (GRISTMILL_TEST_POSTGRES_URL as the tests read it). Prints the
median milliseconds of a write and of a read for each.
"""

import argparse
import os
import statistics
import time
import uuid

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url


def timed(call) -> float:
    started = time.perf_counter()
    call()
    return (time.perf_counter() - started) * 1000


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--count", type=int, default=200)
    parser.add_argument("--size", type=int, default=64 * 1024)
    args = parser.parse_args()
    data = os.urandom(args.size)

    from moto.server import ThreadedMotoServer

    from gristmill.settings import Settings
    from storage.blobs import open_blob_store
    from tests.conftest import free_port

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        settings = Settings(blob_uri="s3://bench-blobs/b", s3_endpoint=f"http://127.0.0.1:{port}", s3_allow_http=True,
                            s3_access_key_id="k", s3_secret_access_key="s")
        store = open_blob_store(settings)
        store.client.create_bucket(Bucket="bench-blobs")
        refs = [store.write(f"warm-{n}", data) for n in range(3)]
        writes = [timed(lambda n=n: refs.append(store.write(str(n), data))) for n in range(args.count)]
        reads = [timed(lambda ref=ref: store.read(ref)) for ref in refs[3:]]
        print(f"s3 (moto): write {statistics.median(writes):.2f} ms, read {statistics.median(reads):.2f} ms "
              f"({args.count} x {args.size} bytes)")
    finally:
        server.stop()

    admin_url = os.environ.get("GRISTMILL_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    name = f"bench_blobs_{uuid.uuid4().hex[:8]}"
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    engine = create_engine(make_url(admin_url).set(database=name))
    try:
        with engine.begin() as connection:
            connection.execute(text("CREATE TABLE blobs (id text PRIMARY KEY, data bytea NOT NULL)"))

        def write(key: str) -> None:
            with engine.begin() as connection:
                connection.execute(text("INSERT INTO blobs VALUES (:id, :data) ON CONFLICT (id) DO UPDATE SET data = :data"),
                                   {"id": key, "data": data})

        def read(key: str) -> None:
            with engine.connect() as connection:
                connection.execute(text("SELECT data FROM blobs WHERE id = :id"), {"id": key}).scalar()

        writes = [timed(lambda n=n: write(str(n))) for n in range(args.count)]
        reads = [timed(lambda n=n: read(str(n))) for n in range(args.count)]
        print(f"postgresql bytea: write {statistics.median(writes):.2f} ms, read {statistics.median(reads):.2f} ms")
    finally:
        engine.dispose()
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE "{name}" WITH (FORCE)'))
        admin.dispose()


if __name__ == "__main__":
    main()
