"""The HR database of the roles API (SQLite): schema, demo data, and the queries a new role needs.

Plain blocking functions, each opening its own short-lived connection, so that several can run
at once in threads (SQLite in WAL mode serves concurrent readers; ``sqlite3`` releases the GIL
while a query runs).

    python db.py PATH [--employees N]      # create and fill a demo database
"""

from __future__ import annotations

import argparse
import json
import random
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

DEPARTMENTS = ("engineering", "design", "sales", "support", "finance", "research")
TITLES = ("engineer", "analyst", "designer", "manager", "scientist", "specialist")
SKILLS = (
    "python",
    "sql",
    "rust",
    "go",
    "kubernetes",
    "figma",
    "negotiation",
    "writing",
    "statistics",
    "accounting",
    "leadership",
    "research",
    "support",
    "testing",
    "security",
    "cloud",
)
LEVELS = 6

SCHEMA = """
CREATE TABLE IF NOT EXISTS departments (id INTEGER PRIMARY KEY, name TEXT UNIQUE NOT NULL,
                                        budget INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS employees (id INTEGER PRIMARY KEY, department_id INTEGER NOT NULL,
                                      title TEXT NOT NULL, level INTEGER NOT NULL,
                                      salary INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS skills (employee_id INTEGER NOT NULL, skill TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS roles (id TEXT PRIMARY KEY, department TEXT NOT NULL,
                                  title TEXT NOT NULL, level INTEGER NOT NULL,
                                  salary_min INTEGER NOT NULL, salary_max INTEGER NOT NULL,
                                  skills TEXT NOT NULL, description TEXT NOT NULL,
                                  created_at REAL NOT NULL);
"""


@contextmanager
def connect(path: Path) -> Iterator[sqlite3.Connection]:
    conn = sqlite3.connect(path, timeout=10)
    try:
        with conn:
            yield conn
    finally:
        conn.close()


def seed(path: Path, employees: int, rng_seed: int = 7) -> None:
    """A database of ``employees`` people with 3 skills each, spread over the departments."""
    rng = random.Random(rng_seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    with connect(path) as conn:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.executescript(SCHEMA)
        conn.executemany(
            "INSERT INTO departments VALUES (?, ?, ?)",
            [(i, name, 1_000_000 * (i + 2)) for i, name in enumerate(DEPARTMENTS)],
        )
        people = []
        for n in range(employees):
            level = rng.randint(1, LEVELS)
            salary = 40_000 + 15_000 * level + rng.randint(0, 20_000)
            people.append((n, rng.randrange(len(DEPARTMENTS)), rng.choice(TITLES), level, salary))
        conn.executemany("INSERT INTO employees VALUES (?, ?, ?, ?, ?)", people)
        conn.executemany(
            "INSERT INTO skills VALUES (?, ?)",
            [(n, skill) for n in range(employees) for skill in rng.sample(SKILLS, 3)],
        )


def department_id(path: Path, name: str) -> int | None:
    with connect(path) as conn:
        row = conn.execute("SELECT id FROM departments WHERE name = ?", (name,)).fetchone()
    return None if row is None else int(row[0])


# -- the queries a new role needs; independent of each other, so they can run at once ---------
def headcount(path: Path, department: str) -> dict[str, int]:
    """People and payroll of the department."""
    with connect(path) as conn:
        people, payroll, budget = conn.execute(
            "SELECT count(e.id), coalesce(sum(e.salary), 0), d.budget FROM departments d "
            "LEFT JOIN employees e ON e.department_id = d.id WHERE d.name = ?",
            (department,),
        ).fetchone()
    return {"people": people, "payroll": payroll, "budget": budget}


def salary_band(path: Path, title: str, level: int) -> dict[str, int]:
    """Lowest and highest salary of people with this title and level, company-wide."""
    with connect(path) as conn:
        low, high = conn.execute(
            "SELECT min(salary), max(salary) FROM employees WHERE title = ? AND level = ?",
            (title, level),
        ).fetchone()
    return {"min": low or 0, "max": high or 0}


def top_skills(path: Path, title: str, limit: int = 5) -> list[str]:
    """The skills most common among people with this title."""
    with connect(path) as conn:
        rows = conn.execute(
            "SELECT s.skill FROM skills s JOIN employees e ON e.id = s.employee_id "
            "WHERE e.title = ? GROUP BY s.skill ORDER BY count(*) DESC, s.skill LIMIT ?",
            (title, limit),
        ).fetchall()
    return [skill for (skill,) in rows]


def similar_roles(path: Path, department: str, title: str) -> list[str]:
    """Ids of roles already opened for this title in this department."""
    with connect(path) as conn:
        rows = conn.execute(
            "SELECT id FROM roles WHERE department = ? AND title = ? ORDER BY created_at",
            (department, title),
        ).fetchall()
    return [role_id for (role_id,) in rows]


def save_role(path: Path, role: dict[str, Any]) -> None:
    """Store the role under its id (the job's): a rerun overwrites, never duplicates."""
    with connect(path) as conn:
        conn.execute(
            "INSERT OR REPLACE INTO roles VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                role["id"],
                role["department"],
                role["title"],
                role["level"],
                role["salary_min"],
                role["salary_max"],
                json.dumps(role["skills"]),
                role["description"],
                time.time(),
            ),
        )


def get_role(path: Path, role_id: str) -> dict[str, Any] | None:
    with connect(path) as conn:
        conn.row_factory = sqlite3.Row
        row = conn.execute("SELECT * FROM roles WHERE id = ?", (role_id,)).fetchone()
    if row is None:
        return None
    return {**dict(row), "skills": json.loads(row["skills"])}


def main() -> None:
    parser = argparse.ArgumentParser(description="create and fill a demo HR database")
    parser.add_argument("path", type=Path)
    parser.add_argument("--employees", type=int, default=100_000)
    ns = parser.parse_args()
    if ns.path.exists():
        print(f"{ns.path} exists: left as it is")
        return
    began = time.perf_counter()
    seed(ns.path, ns.employees)
    print(f"{ns.path}: {ns.employees} employees in {time.perf_counter() - began:.1f}s")


if __name__ == "__main__":
    main()
