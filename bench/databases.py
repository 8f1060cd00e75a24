"""Running a benchmark once per database, against Redis, in a scratch directory.

``each_database(args, run)`` calls ``run(database, url, redis_url, args, workdir)`` for
every name in ``args.databases`` (``sqlite``: a file in the scratch directory;
``postgresql``: ``args.postgres_url``, whose database is the bench's own: emptied, then
migrated afresh by ``run``), with ``args.redis_url``'s database 14 or an embedded
Redis when none is given.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from connector.embedded_redis import EmbeddedRedis

Run = Callable[[str, str, str, argparse.Namespace, Path], None]


def empty_postgres(url: str) -> None:
    """Empty the PostgreSQL database ``url`` names: it is the bench's own, and is
    migrated afresh by the bench."""
    with psycopg.connect(url, autocommit=True) as emptied:
        emptied.execute("DROP SCHEMA public CASCADE")
        emptied.execute("CREATE SCHEMA public")


def each_database(args: argparse.Namespace, run: Run) -> None:
    with tempfile.TemporaryDirectory(prefix="triggerpost-bench-") as tmp:
        workdir = Path(tmp)
        embedded = None
        redis_url = args.redis_url
        if redis_url:
            redis_url = redis_url.rsplit("/", 1)[0] + "/14"
        else:
            embedded = EmbeddedRedis(workdir / "redis")
            embedded.start()
            redis_url = embedded.url
        try:
            for database in args.databases.split(","):
                if database == "sqlite":
                    run("sqlite", f"sqlite:///{workdir / 'bench.db'}", redis_url, args, workdir)
                elif database == "postgresql":
                    if not args.postgres_url:
                        print("\npostgresql: skipped (no --postgres-url or TEST_DATABASE_URL)")
                        continue
                    empty_postgres(args.postgres_url)
                    run("postgresql", args.postgres_url, redis_url, args, workdir)
        finally:
            if embedded is not None:
                embedded.stop()
