"""Alembic migrations of the Carina database, shipped with the package."""
