"""The content API's jobs: write a post through several slow steps, then e-mail its creator.

The workers run them: ``offload worker tasks:app`` from this folder (``run.py`` starts one).
"""

from __future__ import annotations

import asyncio
import smtplib
from pathlib import Path

import httpx

import offload
import store
from config import Config
from writing import IMAGES, SECTIONS, Post, compose_email, image_url, section_prompt, title_prompt

app = offload.App()  # $OFFLOAD_BACKEND (run.py sets it), else sqlite:///offload.db
config = Config.from_env()


@app.task(timeout=120, retries=2)
async def generate_post(creator_id: int, topic: str) -> Post:
    """Title, sections and images of one post, with progress after every step.

    An ``async def`` task runs on the worker's event loop, so every wait in it must be awaited:
    the LLM and the image CDN through ``httpx.AsyncClient``, SQLite through a thread.
    """
    job = offload.current()
    creator = await asyncio.to_thread(store.get_creator, config.db, creator_id)
    if creator is None:
        raise LookupError(f"creator {creator_id} does not exist")
    async with httpx.AsyncClient(base_url=config.upstream, timeout=30) as client:
        job.progress(0.05, "writing the title")
        title = (await complete(client, title_prompt(creator, topic))).partition(".")[0]
        sections = []
        for number in range(1, SECTIONS + 1):
            job.progress(
                round(0.05 + 0.6 * number / (SECTIONS + 1), 2), f"writing section {number}"
            )
            sections.append(await complete(client, section_prompt(creator, topic, number)))
        job.progress(0.7, f"downloading {IMAGES} images")
        folder = config.media / job.id
        images = await asyncio.gather(
            *(download(client, image_url(topic, n), folder / f"{n}.png") for n in range(IMAGES))
        )
    job.progress(0.95, "saving")
    await asyncio.to_thread(
        store.save_post, config.db, job.id, creator.id, topic, title, sections, images
    )
    job.progress(1.0, "written")
    return Post(
        post_id=job.id,
        creator_id=creator.id,
        email=creator.email,
        title=title,
        sections=sections,
        images=images,
    )


@app.task(timeout=60, retries=5, retry_backoff=2.0, priority=1)
def email_creator(post: Post) -> dict[str, str]:
    """Tell the creator the post is ready. A plain ``def``: smtplib blocks, so this runs in the
    worker's thread pool; a refused connection is retried with backoff (up to 5 times).
    ``priority=1``: a finished post's e-mail goes before the next post is started."""
    message = compose_email(config, post)
    with smtplib.SMTP(config.smtp_host, config.smtp_port, timeout=10) as smtp:
        smtp.send_message(message)
    return {"to": post["email"], "message_id": str(message["Message-ID"])}


def post_workflow(creator_id: int, topic: str) -> offload.Chain:
    """Generate, then e-mail: the e-mail step receives the post (the previous step's result)."""
    return offload.chain(generate_post.s(creator_id, topic), email_creator.s())


async def complete(client: httpx.AsyncClient, prompt: str) -> str:
    response = await client.post("/v1/complete", json={"prompt": prompt})
    response.raise_for_status()
    return str(response.json()["text"])


async def download(client: httpx.AsyncClient, url: str, path: Path) -> str:
    response = await client.get(url)
    response.raise_for_status()
    await asyncio.to_thread(_write, path, response.content)
    return str(path)


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
