"""Alembic migrations; ``gateway.migrate`` runs them."""
