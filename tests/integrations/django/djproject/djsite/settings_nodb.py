"""The project without a database (DATABASES = {}): tasks still enqueue."""

from djsite.settings import *  # noqa: F403

DATABASES: dict[str, dict[str, str]] = {}
