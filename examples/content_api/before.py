"""BEFORE: the content API as it is often first written. Kept to measure against ``app.py``.

    uvicorn before:api       # from this folder (run.py --before starts it with its helpers)

The endpoint is ``async def``, but everything it calls blocks: a synchronous HTTP client for
the LLM and the images (as ``requests`` or a sync SDK would), SQLite on the event loop, and
``smtplib``. While one request writes its post (about a second), the event loop serves nobody
else: every other request, even ``GET /health``, waits in line. Nothing is retried, nothing
survives a restart, and the client waits for the whole post.
"""

from __future__ import annotations

import smtplib
import uuid
from pathlib import Path
from typing import Any

import httpx
from fastapi import FastAPI, HTTPException
from pydantic import BaseModel, Field

import store
from config import Config
from writing import IMAGES, SECTIONS, Post, compose_email, image_url, section_prompt, title_prompt

config = Config.from_env()
store.create_schema(config.db)
api = FastAPI(title="content API (before)")


class NewCreator(BaseModel):
    name: str = Field(min_length=1, max_length=100)
    email: str = Field(pattern=r"^[^@\s]+@[^@\s]+$", max_length=200)
    niche: str = Field(default="", max_length=200)


class NewContent(BaseModel):
    topic: str = Field(min_length=1, max_length=200)


@api.get("/health")
async def health() -> dict[str, str]:
    return {"status": "ok"}


@api.post("/creators", status_code=201)
async def create_creator(body: NewCreator) -> store.Creator:
    return store.add_creator(config.db, body.name, body.email, body.niche)


@api.post("/creators/{creator_id}/content", status_code=201)
async def create_content(creator_id: int, body: NewContent) -> dict[str, Any]:
    creator = store.get_creator(config.db, creator_id)
    if creator is None:
        raise HTTPException(404, f"no creator {creator_id}")
    post_id = uuid.uuid4().hex
    with httpx.Client(base_url=config.upstream, timeout=30) as client:  # blocks the loop
        title = complete(client, title_prompt(creator, body.topic)).partition(".")[0]
        sections = [
            complete(client, section_prompt(creator, body.topic, n)) for n in range(1, SECTIONS + 1)
        ]
        images = [
            download(client, image_url(body.topic, n), config.media / post_id / f"{n}.png")
            for n in range(IMAGES)
        ]
    store.save_post(config.db, post_id, creator.id, body.topic, title, sections, images)
    post = Post(
        post_id=post_id,
        creator_id=creator.id,
        email=creator.email,
        title=title,
        sections=sections,
        images=images,
    )
    with smtplib.SMTP(config.smtp_host, config.smtp_port, timeout=10) as smtp:  # blocks too
        smtp.send_message(compose_email(config, post))
    return dict(post)


def complete(client: httpx.Client, prompt: str) -> str:
    response = client.post("/v1/complete", json={"prompt": prompt})
    response.raise_for_status()
    return str(response.json()["text"])


def download(client: httpx.Client, url: str, path: Path) -> str:
    response = client.get(url)
    response.raise_for_status()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(response.content)
    return str(path)
