"""The shop's web app (FastAPI): save an order and enqueue its e-mail in ONE transaction.

    POST /orders {"email": ..., "item": ..., "quantity": ...}    201 {"id", "confirmation_job"}
    POST /orders?crash=true                                       500: fails after the enqueue
    GET  /orders/{id}                                             the order, or 404

``send_confirmation.options(session=session).submit(order.id)`` stores the job through the
session's own connection: it commits with the order, or (an exception, a rollback, a crash of
the process) vanishes with it. Workers see the job only once the transaction has committed.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from sqlalchemy.orm import Session

from db import Order, create_tables, engine
from tasks import send_confirmation


@asynccontextmanager
async def lifespan(_: FastAPI) -> AsyncIterator[None]:
    create_tables()
    yield
    send_confirmation.app.close()  # the offload backend the submits opened


api = FastAPI(title="shop", lifespan=lifespan)


class NewOrder(BaseModel):
    email: str = Field(min_length=3, max_length=200)
    item: str = Field(min_length=1, max_length=100)
    quantity: int = Field(ge=1, le=1000)


class CrashAfterEnqueue(Exception):
    """The demo's stand-in for anything that fails after the enqueue, before the commit."""


@api.exception_handler(CrashAfterEnqueue)
def crashed(_: Request, exc: CrashAfterEnqueue) -> JSONResponse:
    return JSONResponse({"detail": str(exc)}, status_code=500)


@api.post("/orders", status_code=201)
def place_order(order: NewOrder, crash: bool = False) -> dict[str, Any]:
    with Session(engine) as session, session.begin():  # commits at the end, or rolls back
        row = Order(email=order.email, item=order.item, quantity=order.quantity)
        session.add(row)
        session.flush()  # the order's id
        job = send_confirmation.options(session=session).submit(row.id)
        row.confirmation_job = job.id
        if crash:
            raise CrashAfterEnqueue("failed after the enqueue: the order and its job roll back")
        return {"id": row.id, "confirmation_job": job.id}


@api.get("/orders/{order_id}")
def get_order(order_id: int) -> dict[str, Any]:
    with Session(engine) as session:
        row = session.get(Order, order_id)
        if row is None:
            raise HTTPException(404, "no such order")
        return {
            "id": row.id,
            "email": row.email,
            "item": row.item,
            "quantity": row.quantity,
            "confirmation_job": row.confirmation_job,
        }


@api.get("/health")
def health() -> dict[str, str]:
    return {"status": "ok"}
