"""Run Alembic migrations programmatically (``dsync migrate``; ``dsync serve`` on the embedded database)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config

import migrations
from gateway.store.database_url import async_url

_SCRIPT_LOCATION = Path(migrations.__file__).parent


def alembic_config(database_url: str) -> Config:
    """Alembic's configuration for ``database_url`` without an alembic.ini: the scripts in ``migrations/``."""
    config = Config()
    config.set_main_option("script_location", str(_SCRIPT_LOCATION))
    # ConfigParser interpolation would choke on '%' in passwords.
    url = async_url(database_url).render_as_string(hide_password=False)
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def upgrade(database_url: str, revision: str = "head") -> None:
    """Bring the schema of ``database_url`` up to ``revision`` (the latest by default)."""
    command.upgrade(alembic_config(database_url), revision)
