"""One rule at a time, on small modules: what each finds, and what it must leave alone."""

from __future__ import annotations

import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

from offload.doctor import scan

Check = Callable[[str], set[tuple[int, str]]]


@pytest.fixture
def check(tmp_path: Path) -> Check:
    """Scan ``source`` as one module; its findings as (line, code)."""

    def run(source: str) -> set[tuple[int, str]]:
        path = tmp_path / "app.py"
        path.write_text(textwrap.dedent(source).lstrip("\n"))
        return {(f.line, f.code) for f in scan([str(path)]).findings}

    return run


def test_import_aliases_are_resolved(check: Check) -> None:
    assert check("""
        import requests as r
        import urllib.request as ur
        from subprocess import check_output as co
        from time import sleep as nap
        from urllib import request

        async def handler():
            r.post("u")
            ur.urlopen("u")
            co(["ls"])
            nap(1)
            request.urlopen("u")
    """) == {(8, "OFF101"), (9, "OFF101"), (10, "OFF103"), (11, "OFF102"), (12, "OFF101")}


def test_calls_handed_to_threads_or_awaited_are_fine(check: Check) -> None:
    assert (
        check("""
        import asyncio, functools, time
        import requests
        from starlette.concurrency import run_in_threadpool

        async def handler(url):
            await asyncio.to_thread(time.sleep, 1)
            await run_in_threadpool(requests.get, url)
            loop = asyncio.get_running_loop()
            await loop.run_in_executor(None, lambda: requests.get(url))
            await loop.run_in_executor(None, functools.partial(time.sleep, 1))

            def later():
                time.sleep(1)

            await asyncio.to_thread(later)
    """)
        == set()
    )


def test_sync_functions_may_block(check: Check) -> None:
    assert (
        check("""
        import time, requests, sqlite3

        def task():
            time.sleep(1)
            requests.get("u")
            sqlite3.connect("x.db").execute("select 1")
    """)
        == set()
    )


def test_names_that_only_look_like_clients(check: Check) -> None:
    assert (
        check("""
        import httpx
        from openai import OpenAI

        client = OpenAI()

        async def handler(client: httpx.AsyncClient, cache: dict, self=None):
            await client.get("u")           # the parameter hides the module-level client
            cache.get("key")
            self.session.get("u")           # unknown object: left alone

        async def other():
            sleep = lambda s: None
            sleep(1)
    """)
        == set()
    )


def test_clients_made_in_several_ways(check: Check) -> None:
    assert check("""
        import boto3
        import psycopg2
        from sqlalchemy import create_engine, text
        from sqlalchemy.orm import sessionmaker, Session
        from typing import Annotated
        from fastapi import Depends

        engine = create_engine("sqlite://")
        SessionLocal = sessionmaker(bind=engine)

        async def a(db: Annotated[Session, Depends()]):
            db.query(1).all()
            with SessionLocal() as session:
                session.execute(text("select 1"))
            with engine.connect() as conn:
                conn.execute(text("select 1"))
            cur = psycopg2.connect("dsn").cursor()
            cur.execute("select 1")
            boto3.Session().client("s3").get_object(Bucket="b", Key="k")
            boto3.client("s3").generate_presigned_url("get_object")
    """) == {
        (12, "OFF105"),
        (14, "OFF105"),
        (15, "OFF105"),
        (16, "OFF105"),
        (17, "OFF105"),
        (18, "OFF105"),
        (19, "OFF106"),
        (20, "OFF106"),
    }


def test_openai_module_level_client(check: Check) -> None:
    assert check("""
        import openai

        async def a():
            openai.chat.completions.create(model="m", messages=[])
            await openai.AsyncOpenAI().chat.completions.create(model="m", messages=[])
    """) == {(4, "OFF106")}


def test_file_reads_of_unknown_size(check: Check) -> None:
    assert check("""
        from importlib.resources import files
        from pathlib import Path
        import aiofiles

        HERE = Path(__file__).parent

        async def a(name, upload):
            Path("static/index.html").read_text()
            (HERE / "templates" / "page.html").read_text()
            open("VERSION").read()
            with open(name, "rb") as f:
                f.read(4096)
                f.read()
            (HERE / name).read_bytes()
            files("mypkg").joinpath("schema.json").read_text()
            (HERE / "static").joinpath("logo.png").read_bytes()
            await upload.read()
            async with aiofiles.open(name) as g:
                await g.read()
    """) == {(13, "OFF107"), (14, "OFF107")}


def test_threads(check: Check) -> None:
    assert check("""
        import threading
        from concurrent.futures import ThreadPoolExecutor
        from fastapi import APIRouter

        router = APIRouter()
        pool = ThreadPoolExecutor(max_workers=2)

        class Job(threading.Thread):
            pass

        @router.post("/a")
        def a():
            t = threading.Thread(target=print)
            t.start()
            Job().start()
            threading.Timer(5, print).start()
            pool.submit(print)

        def not_a_handler():
            threading.Thread(target=print).start()

        async def b():
            threading.Thread(target=print).start()
    """) == {(14, "OFF201"), (15, "OFF201"), (16, "OFF201"), (23, "OFF201")}


def test_threads_started_once_at_startup_are_fine(check: Check) -> None:
    assert (
        check("""
        import threading
        from contextlib import asynccontextmanager
        from fastapi import FastAPI

        app = FastAPI()

        @asynccontextmanager
        async def lifespan(app):
            threading.Thread(target=print, daemon=True).start()
            yield

        @app.on_event("startup")
        async def warm_caches():
            threading.Thread(target=print, daemon=True).start()

        class Pool:
            async def start(self):
                for i in range(4):
                    threading.Thread(target=print).start()
    """)
        == set()
    )


def test_dropped_tasks(check: Check) -> None:
    assert check("""
        import asyncio
        from asyncio import create_task, ensure_future

        tasks = set()

        async def a(self):
            create_task(a(None))
            ensure_future(a(None))
            asyncio.get_running_loop().create_task(a(None))
            self.loop.create_task(a(None))
            kept = asyncio.create_task(a(None))
            tasks.add(kept)
            async with asyncio.TaskGroup() as tg:
                tg.create_task(a(None))
            await asyncio.create_task(a(None))
    """) == {(7, "OFF202"), (8, "OFF202"), (9, "OFF202"), (10, "OFF202")}


def test_a_task_kept_only_in_a_local_that_is_never_read_is_dropped(check: Check) -> None:
    assert check("""
        import asyncio

        tasks = set()
        background = None

        async def handler(self):
            task = asyncio.create_task(handler(None))
            loop = asyncio.get_running_loop()
            job = loop.create_task(handler(None))
            kept = asyncio.create_task(handler(None))
            tasks.add(kept)
            awaited = asyncio.create_task(handler(None))
            await awaited
            self.task = chained = asyncio.create_task(handler(None))
            returned = asyncio.ensure_future(handler(None))
            return returned

        async def store():
            global background
            background = asyncio.create_task(store())

        def closure():
            later = asyncio.ensure_future(store())
            return lambda: later.cancel()

        started = asyncio.ensure_future(store())  # a module global: kept
    """) == {(7, "OFF202"), (9, "OFF202")}


def test_cpu_rules_only_in_async_route_handlers(check: Check) -> None:
    assert check("""
        import bcrypt
        from fastapi import FastAPI
        from PIL import Image

        app = FastAPI()

        @app.post("/a")
        async def a(data, items):
            bcrypt.hashpw(data, bcrypt.gensalt())
            image = Image.open(data)
            image.thumbnail((128, 128))
            total = sum(i * i for i in range(10**7))
            for item in items:
                for i in range(3_000_000):
                    pass
            for i in range(1000):
                pass
            return total

        async def not_a_route(data):
            bcrypt.hashpw(data, bcrypt.gensalt())
            return sum(i for i in range(10**7))

        @app.get("/b")
        def sync_route(data):
            return sum(i for i in range(10**7))
    """) == {(9, "OFF402"), (11, "OFF402"), (12, "OFF401"), (14, "OFF401")}


def test_inline_suppression(check: Check) -> None:
    assert check("""
        import time

        async def a():
            time.sleep(1)  # offload: ignore[OFF102]
            time.sleep(1)  # offload: ignore[OFF101, OFF102]
            time.sleep(1)  #offload:ignore
            time.sleep(1)  # offload: ignore[OFF101]
            time.sleep(1)  # noqa
            s = "# offload: ignore"; time.sleep(1)
    """) == {(7, "OFF102"), (8, "OFF102"), (9, "OFF102")}


def test_gevent_import_without_any_patch(check: Check) -> None:
    assert check("""
        import json
        from gevent.pywsgi import WSGIServer
    """) == {(2, "OFF301")}


def test_gevent_gunicorn_python_config(tmp_path: Path) -> None:
    (tmp_path / "gunicorn.conf.py").write_text(
        'worker_class = "gevent"\nwsgi_app = "pkg.web:app"\n'
    )
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "__init__.py").write_text("")
    (tmp_path / "pkg" / "web.py").write_text(
        '"""doc"""\nimport flask\n\napp = flask.Flask(__name__)\n'
    )
    report = scan([str(tmp_path)])
    assert [(Path(f.path).name, f.line, f.code) for f in report.findings] == [
        ("web.py", 2, "OFF301")
    ]
    assert "gunicorn.conf.py:1" in report.findings[0].title


@pytest.mark.parametrize(
    "worker",
    ["geventwebsocket.gunicorn.workers.GeventWebSocketWorker", "GeventWebSocketWorker"],
)
def test_gevent_based_worker_classes_need_the_patch_too(tmp_path: Path, worker: str) -> None:
    (tmp_path / "Procfile").write_text(f"web: gunicorn --worker-class {worker} -w 2 chat:app\n")
    (tmp_path / "chat.py").write_text('"""doc"""\nimport flask\n\napp = flask.Flask(__name__)\n')
    report = scan([str(tmp_path)])
    assert [(Path(f.path).name, f.line, f.code) for f in report.findings] == [
        ("chat.py", 2, "OFF301")
    ]
    assert "Procfile:1" in report.findings[0].title


def test_gevent_in_a_dockerfile_without_a_known_app(tmp_path: Path) -> None:
    (tmp_path / "Dockerfile").write_text(
        'FROM python:3.12\nCMD ["gunicorn", "--worker-class", "gevent", "elsewhere:app"]\n'
    )
    (tmp_path / "main.py").write_text("import flask\n")
    report = scan([str(tmp_path)])
    assert [(Path(f.path).name, f.line, f.code) for f in report.findings] == [
        ("Dockerfile", 2, "OFF301")
    ]


def test_gevent_patched_with_sys_imported_first(check: Check) -> None:
    assert (
        check("""
        from __future__ import annotations
        import sys
        import gevent.monkey
        gevent.monkey.patch_all()
        import requests
    """)
        == set()
    )


def test_unreadable_and_odd_files(tmp_path: Path) -> None:
    (tmp_path / "nul.py").write_bytes(b"x = 1\0\n")
    (tmp_path / "latin.py").write_bytes(b"# -*- coding: latin-1 -*-\nname = '\xe9'\n")
    (tmp_path / "README.md").write_text("not scanned")
    report = scan([str(tmp_path)])
    assert [(Path(f.path).name, f.code) for f in report.findings] == [("nul.py", "OFF001")]
    assert report.files == 2


def test_virtualenvs_and_hidden_folders_are_skipped(tmp_path: Path) -> None:
    blocking = "import time\n\nasync def f():\n    time.sleep(1)\n"
    for folder in (".venv/lib", "node_modules/x", "myenv/lib", "app/env"):
        (tmp_path / folder).mkdir(parents=True)
        (tmp_path / folder / "mod.py").write_text(blocking)
    (tmp_path / "myenv" / "pyvenv.cfg").write_text("home = /usr/bin\n")
    report = scan([str(tmp_path)])
    assert [Path(f.path).relative_to(tmp_path).as_posix() for f in report.findings] == [
        "app/env/mod.py"
    ]


def test_blocking_helpers_of_the_project_are_followed(tmp_path: Path) -> None:
    """The creator app's two slowest endpoints called sync helpers of another module."""
    files = {
        "__init__.py": "",
        "main.py": """
            import asyncio
            import time

            import app.mail as mail
            from app import db
            from fastapi import FastAPI

            from . import render
            from .helpers import load_rows

            api = FastAPI()

            @api.get("/report")
            async def report():
                rows = load_rows()
                render.pdf(rows)
                db.count()
                mail.send()
                nap()
                mail.quiet()
                await asyncio.to_thread(load_rows)
                return pure(rows)

            def nap():
                time.sleep(1)

            def pure(rows):
                return len(rows)
        """,
        "helpers.py": """
            import requests

            def load_rows():
                return requests.get("https://example.com").json()
        """,
        "render.py": """
            import subprocess

            def pdf(rows):
                subprocess.run(["xelatex", "exam.tex"])
        """,
        "db.py": """
            import sqlite3

            def _connect():
                return sqlite3.connect("app.db")

            def count():
                return _connect()
        """,
        "mail.py": """
            import time

            def send():
                time.sleep(1)

            def quiet():
                time.sleep(1)  # offload: ignore[OFF102]
        """,
    }
    (tmp_path / "app").mkdir()
    for name, text in files.items():
        (tmp_path / "app" / name).write_text(textwrap.dedent(text).lstrip("\n"))
    report = scan([str(tmp_path)])
    found = {(Path(f.path).name, f.line, f.code): f.title for f in report.findings}
    assert set(found) == {
        ("main.py", 15, "OFF101"),
        ("main.py", 16, "OFF103"),
        ("main.py", 17, "OFF105"),
        ("main.py", 18, "OFF102"),
        ("main.py", 19, "OFF102"),
    }
    helpers = str(Path(tmp_path, "app", "helpers.py"))
    assert found[("main.py", 15, "OFF101")] == (
        f"blocking HTTP call: load_rows() -> requests.get() ({helpers}:4) in async def report"
    )
    db = str(Path(tmp_path, "app", "db.py"))
    assert found[("main.py", 17, "OFF105")] == (
        f"blocking database call: db.count() -> _connect() ({db}:7) -> sqlite3.connect() "
        f"({db}:4) in async def report"
    )
