"""Alembic migrations; ``gateway.store.migrate`` runs them."""
