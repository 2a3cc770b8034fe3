"""The steps of writing a post, shared by both versions of the API (before.py and tasks.py).

Only the waiting differs between the two: the naive version calls these steps from its
``async def`` endpoint with blocking clients; the offload version runs them in a job.
"""

from __future__ import annotations

import hashlib
from email.message import EmailMessage

from typing_extensions import TypedDict  # pydantic needs this one on Python < 3.12

from config import Config
from store import Creator

SECTIONS = 3  # one LLM call each, after one for the title
IMAGES = 3  # downloaded from the image CDN


class Post(TypedDict):
    """What the generation step returns and the e-mail step receives."""

    post_id: str
    creator_id: int
    email: str
    title: str
    sections: list[str]
    images: list[str]


def title_prompt(creator: Creator, topic: str) -> str:
    return f"A title for a post about {topic} by {creator.name}, who writes about {creator.niche}"


def section_prompt(creator: Creator, topic: str, number: int) -> str:
    return f"Paragraph {number} of {SECTIONS} of a post about {topic} for {creator.niche} fans"


def image_url(topic: str, number: int) -> str:
    slug = hashlib.sha256(topic.encode()).hexdigest()[:12]
    return f"/images/{slug}-{number}.png"


def compose_email(config: Config, post: Post) -> EmailMessage:
    """The 'your post is ready' e-mail. Its Message-ID is the post's, so a retried send is
    recognisable as the same message."""
    message = EmailMessage()
    message["From"] = config.sender
    message["To"] = post["email"]
    message["Subject"] = f"Your post is ready: {post['title']}"
    message["Message-ID"] = f"<{post['post_id']}@content-api.example>"
    message.set_content(
        f"{post['title']}\n\n"
        + "\n\n".join(post["sections"])
        + f"\n\n({len(post['images'])} images attached to the post {post['post_id']})\n"
    )
    return message
