"""``offload migrate``: apply the PostgreSQL migrations, or print them and change nothing."""

from __future__ import annotations

import pytest

from offload.backends.postgres import schema
from offload.backends.postgres.backend import split_url
from offload.cli import main
from pgkit import postgres_schema_url


def _tables(url: str) -> int:
    import psycopg

    conninfo, options = split_url(url)
    with psycopg.connect(conninfo) as conn:
        row = conn.execute(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = %s",
            (options["schema"],),
        ).fetchone()
    assert row is not None
    return int(row[0])


def test_offline_dry_run_prints_the_whole_script(capsys: pytest.CaptureFixture[str]) -> None:
    url = "postgresql://nobody@127.0.0.1:1/none?schema=jobs"
    assert main(["migrate", "--backend", url, "--dry-run", "--offline"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("BEGIN;\nSELECT pg_advisory_xact_lock(")
    assert 'CREATE TABLE "jobs".jobs (' in out
    assert out.rstrip().endswith("COMMIT;")


def test_dry_run_prints_the_pending_sql_and_changes_nothing(
    capsys: pytest.CaptureFixture[str],
) -> None:
    url = postgres_schema_url()
    assert main(["migrate", "--backend", url, "--dry-run"]) == 0
    assert "CREATE TABLE" in capsys.readouterr().out
    assert _tables(url) == 0
    assert main(["migrate", "--backend", url]) == 0
    assert f"from version 0 to {schema.SCHEMA_VERSION}" in capsys.readouterr().out
    assert _tables(url) > 0
    assert main(["migrate", "--backend", url, "--dry-run"]) == 0
    assert "nothing to do" in capsys.readouterr().out
    assert main(["migrate", "--backend", url]) == 0
    assert "nothing to do" in capsys.readouterr().out


def test_migrate_refuses_other_backends(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["migrate", "--backend", "sqlite:///x.db", "--dry-run"]) == 1
    assert "for PostgreSQL backends" in capsys.readouterr().err
