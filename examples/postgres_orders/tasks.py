"""The confirmation e-mail, run by ``offload worker tasks:app`` (run.py starts one).

The job is submitted in the same transaction as its order (see web.py), so it runs only for
an order that was committed, and it always finds that order. "Sending" writes the message to
``$OUTBOX/order-<id>.eml`` (a real app would hand it to its mail service here).
"""

from __future__ import annotations

import os
from pathlib import Path

from sqlalchemy.orm import Session

import offload
from db import Order, engine

app = offload.App()  # $OFFLOAD_BACKEND: postgresql://... (run.py sets it)
OUTBOX = Path(os.environ.get("OUTBOX", "outbox"))


@app.task(retries=3)
def send_confirmation(order_id: int) -> str:
    with Session(engine) as session:
        order = session.get(Order, order_id)
        if order is None:  # cannot happen: the job commits with its order, or not at all
            raise LookupError(f"order {order_id} does not exist")
        body = f"To: {order.email}\nSubject: order {order.id}\n\n{order.quantity} x {order.item}\n"
    OUTBOX.mkdir(parents=True, exist_ok=True)
    (OUTBOX / f"order-{order_id}.eml").write_text(body)
    return f"sent to {order.email}"
