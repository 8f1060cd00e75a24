"""Alembic environment: runs against the URL handed over by jobs.store.db."""

from alembic import context

from jobs.store.db import make_engine
from jobs.store.models import Base

config = context.config
url = config.get_main_option("sqlalchemy.url")
assert url, "jobs.store.db.migrate passes the database URL"

engine = make_engine(url)
try:
    with engine.connect() as connection:
        context.configure(
            connection=connection,
            target_metadata=Base.metadata,
            render_as_batch=connection.dialect.name == "sqlite",
            compare_type=True,
        )
        with context.begin_transaction():
            context.run_migrations()
finally:
    engine.dispose()
