"""The store: models, engine and sessions, migrations, secrets at rest."""
