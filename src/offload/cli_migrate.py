"""``offload migrate [--dry-run]``: bring a PostgreSQL backend's schema up to date, or print the
SQL that would, for teams that apply DDL themselves.

The backend applies missing migrations itself when it opens (under an advisory lock, so
processes starting together do not race); this command does the same ahead of a deploy, or,
with ``--dry-run``, only prints the script (one transaction, under the same lock) and changes
nothing. SQLite and Redis need no migration step: they prepare their storage when they open.
"""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

from offload.errors import BackendUnavailable, ConfigurationError
from offload.settings import Settings


def add_parser(sub: Any) -> None:
    """Register ``migrate`` on the CLI's subcommands."""
    p = sub.add_parser("migrate", help="apply (or print) the PostgreSQL schema migrations")
    p.add_argument("--backend", help="backend URL (default: $OFFLOAD_BACKEND)")
    p.add_argument("--dry-run", action="store_true", help="print the SQL, change nothing")
    p.add_argument(
        "--offline",
        action="store_true",
        help="with --dry-run: do not connect; print the SQL for an empty database",
    )
    p.set_defaults(func=run)


def run(ns: argparse.Namespace) -> int:
    url = ns.backend or Settings.from_env().backend
    if not url.startswith(("postgresql:", "postgres:")):
        raise ConfigurationError(
            f"offload migrate is for PostgreSQL backends, not {url.split(':', 1)[0]!r}: SQLite "
            "and Redis prepare their storage when they open"
        )
    if ns.offline and not ns.dry_run:
        raise ConfigurationError("--offline only goes with --dry-run")
    try:
        from offload.backends.postgres.backend import split_url
    except ImportError:
        raise ConfigurationError(
            f"{url!r} needs psycopg: pip install 'offload[postgres]'"
        ) from None
    conninfo, options = split_url(url)
    from offload.backends.postgres import schema

    name = schema.check_schema_name(options.get("schema", schema.DEFAULT_SCHEMA))
    if ns.offline:
        print(schema.migration_sql(name), end="")
        return 0
    found, now = asyncio.run(_migrate(conninfo, name, apply=not ns.dry_run))
    if ns.dry_run:
        if found == schema.SCHEMA_VERSION:
            print(f"-- schema {name!r} is at version {found}: nothing to do")
        else:
            print(schema.migration_sql(name, found), end="")
        return 0
    if found == now:
        print(f"schema {name!r} is at version {now}: nothing to do")
    else:
        print(f"schema {name!r} migrated from version {found} to {now}")
    return 0


async def _migrate(conninfo: str, name: str, *, apply: bool) -> tuple[int, int]:
    """The version found and the version left (the same unless ``apply``)."""
    import psycopg

    from offload.backends.postgres import schema
    from offload.backends.postgres.migrate import migrate, stored_version

    try:
        async with await psycopg.AsyncConnection.connect(conninfo) as conn:
            if not apply:
                found = await stored_version(conn, name)
                schema.check_version(found)
                return found, found
            found = await migrate(conn, name)
            await conn.commit()
            return found, schema.SCHEMA_VERSION
    except psycopg.OperationalError as exc:
        raise BackendUnavailable(f"PostgreSQL is unavailable: {exc}") from None
