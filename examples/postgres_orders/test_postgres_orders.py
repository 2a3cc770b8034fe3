"""The shop from its README: an order and its e-mail commit together, or not at all."""

from __future__ import annotations

import os
import time
import uuid
from typing import TYPE_CHECKING

import httpx
import pytest

if TYPE_CHECKING:
    from conftest import RunExample  # the fixture's type (pytest passes the fixture)

psycopg = pytest.importorskip("psycopg")
pytest.importorskip("sqlalchemy")
pytestmark = pytest.mark.slow  # real servers and workers, seconds each

SERVER = os.environ.get("OFFLOAD_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres")


def _count(sql: str) -> int:
    with psycopg.connect(SERVER) as conn:
        row = conn.execute(sql).fetchone()
    return int(row[0])


def test_an_order_and_its_email_commit_together_or_not_at_all(run_example: RunExample) -> None:
    try:
        psycopg.connect(SERVER, connect_timeout=3).close()
    except psycopg.OperationalError as exc:
        pytest.skip(f"no PostgreSQL server answers at {SERVER}: {exc}")
    schema = f"shop_{uuid.uuid4().hex[:8]}"
    try:
        shop = run_example("postgres_orders", "--database", SERVER, "--schema", schema)
        with httpx.Client(base_url=shop.base, timeout=10) as client:
            placed = client.post(
                "/orders", json={"email": "a@example.com", "item": "tea", "quantity": 2}
            )
            assert placed.status_code == 201, placed.text
            order = placed.json()
            mail = shop.data / "outbox" / f"order-{order['id']}.eml"
            deadline = time.monotonic() + 30
            while not mail.exists():
                assert time.monotonic() < deadline, shop.log.read_text()
                time.sleep(0.1)
            assert "2 x tea" in mail.read_text()
            assert (
                client.get(f"/orders/{order['id']}").json()["confirmation_job"]
                == (order["confirmation_job"])
            )

            cake = {"email": "b@example.com", "item": "cake", "quantity": 1}
            crashed = client.post("/orders?crash=true", json=cake)
            assert crashed.status_code == 500
            assert "roll back" in crashed.json()["detail"]
            # Neither the order nor its job exists: one order, one job, one e-mail.
            assert _count(f'SELECT count(*) FROM "{schema}".orders') == 1
            assert _count(f'SELECT count(*) FROM "{schema}_jobs".jobs') == 1
            assert (
                _count(
                    f'SELECT count(*) FROM "{schema}_jobs".history WHERE job_id <> '
                    f"'{order['confirmation_job']}'"
                )
                == 0
            )
            time.sleep(0.5)
            assert sorted(p.name for p in (shop.data / "outbox").iterdir()) == [mail.name]
        assert shop.stop() == 0
    finally:
        with psycopg.connect(SERVER, autocommit=True) as conn:
            for name in (schema, f"{schema}_jobs"):
                conn.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')
