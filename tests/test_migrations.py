"""The schema comes only from migrations: migrating an empty database gives exactly the models."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from idp.extensions import db


def test_migrated_schema_matches_the_models(app, backend: str) -> None:
    """``app`` runs on a database migrated from empty to head (see conftest's templates)."""
    with db.engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        differences = compare_metadata(context, db.metadata)
    assert differences == []
