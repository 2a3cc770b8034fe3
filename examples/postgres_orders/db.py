"""The shop's own data: orders in PostgreSQL, through SQLAlchemy 2 (psycopg 3 driver).

``ORDERS_DATABASE`` is a SQLAlchemy URL (``postgresql+psycopg://...``, the driver transactional
submits need); ``ORDERS_SCHEMA`` the schema the shop's tables live in (run.py sets both).
"""

from __future__ import annotations

import os

from sqlalchemy import MetaData, String, create_engine, text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

DATABASE = os.environ.get(
    "ORDERS_DATABASE", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
SCHEMA = os.environ.get("ORDERS_SCHEMA", "shop")

engine = create_engine(DATABASE, pool_size=5)


class Base(DeclarativeBase):
    metadata = MetaData(schema=SCHEMA)


class Order(Base):
    __tablename__ = "orders"

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(200))
    item: Mapped[str] = mapped_column(String(100))
    quantity: Mapped[int]
    #: The id of the confirmation e-mail's job, stored in the same transaction as the job.
    confirmation_job: Mapped[str | None] = mapped_column(String(40))


def create_tables() -> None:
    with engine.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{SCHEMA}"'))
    Base.metadata.create_all(engine)
