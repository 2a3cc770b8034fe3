"""What both versions of the roles API share: where the database is, and the role's text.

Read once from the environment (``run.py`` sets it for the web app and the workers alike).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

DB = Path(os.environ.get("ROLES_DB", "data/hr.db"))
#: seconds the description takes to generate: a stand-in for a call to a language model
GENERATION_SECONDS = float(os.environ.get("ROLES_GENERATION_SECONDS", "1.0"))


def describe(
    department: str,
    title: str,
    level: int,
    headcount: dict[str, int],
    band: dict[str, int],
    skills: list[str],
    similar: list[str],
) -> str:
    """The generated job description (what the model would write, from what the queries found)."""
    peers = f"{len(similar)} similar role(s) already open" if similar else "the first such role"
    return (
        f"{title.capitalize()} (level {level}) in {department}: join a team of "
        f"{headcount['people']} people. Salary {band['min']:,}-{band['max']:,}. "
        f"We look for {', '.join(skills[:-1])} and {skills[-1]}; this is {peers}."
    )


def role_record(
    role_id: str,
    department: str,
    title: str,
    level: int,
    band: dict[str, int],
    skills: list[str],
    description: str,
) -> dict[str, Any]:
    return {
        "id": role_id,
        "department": department,
        "title": title,
        "level": level,
        "salary_min": band["min"],
        "salary_max": band["max"],
        "skills": skills,
        "description": description,
    }
