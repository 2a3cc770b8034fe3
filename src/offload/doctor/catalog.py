"""What blocks: the functions, client constructors and client methods the rules know.

Names are fully qualified (``requests.get``, ``sqlalchemy.orm.Session``); the scanner resolves
a module's aliases before it looks them up here. A *kind* describes an object made by a known
constructor (a requests session, a sqlite3 connection, an OpenAI client): which of its methods
block, and what some methods return (``engine.connect()`` gives a connection).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Kind:
    """Objects of one sort and the methods of theirs that block."""

    code: str
    label: str
    methods: frozenset[str] | None  # None: every method not in `safe`
    safe: frozenset[str] = frozenset()
    chain: bool = False  # attributes keep the kind: client.chat.completions.create
    products: Mapping[str, str] = field(default_factory=dict)  # method ("__call__") -> kind
    no_arguments_only: bool = False  # file.read() blocks unbounded, file.read(4096) is fine
    local_only: bool = False  # only objects made in the same function count


_HTTP = frozenset({"get", "post", "put", "patch", "delete", "head", "options", "request", "send"})
_SDK = frozenset(
    {
        "create",
        "stream",
        "parse",
        "retrieve",
        "list",
        "delete",
        "update",
        "generate",
        "edit",
        "upload",
        "content",
        "cancel",
        "count_tokens",
        "create_and_poll",
        "create_and_run",
    }
)
_DBAPI = frozenset(
    {
        "execute",
        "executemany",
        "executescript",
        "commit",
        "rollback",
        "fetchone",
        "fetchall",
        "fetchmany",
        "callproc",
    }
)

KINDS: dict[str, Kind] = {
    "requests": Kind("OFF101", "requests session", _HTTP),
    "httpx": Kind("OFF101", "httpx.Client", _HTTP | {"stream"}),
    "http.client": Kind(
        "OFF101",
        "http.client connection",
        frozenset({"request", "getresponse", "connect", "endheaders", "send"}),
    ),
    "smtp": Kind(
        "OFF104",
        "SMTP connection",
        frozenset(
            {
                "connect",
                "login",
                "starttls",
                "ehlo",
                "helo",
                "sendmail",
                "send_message",
                "quit",
                "noop",
                "verify",
            }
        ),
    ),
    "dbapi": Kind("OFF105", "database connection", _DBAPI, products={"cursor": "dbapi"}),
    "sa.engine": Kind(
        "OFF105",
        "SQLAlchemy engine",
        frozenset({"connect", "begin", "execute", "raw_connection"}),
        products={"connect": "sa.connection", "begin": "sa.connection"},
    ),
    "sa.connection": Kind(
        "OFF105",
        "SQLAlchemy connection",
        frozenset({"execute", "exec_driver_sql", "scalar", "scalars", "commit", "rollback"}),
    ),
    "sa.session": Kind(
        "OFF105",
        "SQLAlchemy session",
        frozenset(
            {
                "execute",
                "scalar",
                "scalars",
                "get",
                "query",
                "commit",
                "flush",
                "refresh",
                "rollback",
                "merge",
                "exec",
            }
        ),
        products={"__call__": "sa.session"},
    ),
    "sa.sessionmaker": Kind(
        "OFF105",
        "SQLAlchemy sessionmaker",
        frozenset(),
        products={"__call__": "sa.session", "begin": "sa.session"},
    ),
    "openai": Kind("OFF106", "sync OpenAI client", _SDK, chain=True),
    "anthropic": Kind("OFF106", "sync Anthropic client", _SDK, chain=True),
    "boto3.session": Kind(
        "OFF106", "boto3 session", frozenset(), products={"client": "boto3", "resource": "boto3"}
    ),
    "boto3": Kind(
        "OFF106",
        "boto3 client",
        None,
        chain=True,
        safe=frozenset(
            {
                "get_paginator",
                "get_waiter",
                "can_paginate",
                "generate_presigned_url",
                "generate_presigned_post",
                "close",
            }
        ),
    ),
    "file": Kind("OFF107", "file", frozenset({"read", "readlines"}), no_arguments_only=True),
    "pil": Kind(
        "OFF402",
        "PIL image",
        frozenset(
            {
                "resize",
                "thumbnail",
                "save",
                "convert",
                "rotate",
                "filter",
                "transform",
                "reduce",
                "quantize",
                "load",
            }
        ),
        products={
            "resize": "pil",
            "convert": "pil",
            "rotate": "pil",
            "filter": "pil",
            "transform": "pil",
            "crop": "pil",
            "copy": "pil",
        },
    ),
    "hasher": Kind("OFF402", "password hasher", frozenset({"hash", "verify", "verify_and_update"})),
    "thread": Kind("OFF201", "threading.Thread", frozenset({"start"}), local_only=True),
}

_DB_CONNECT = (
    "sqlite3.connect",
    "psycopg2.connect",
    "psycopg.connect",
    "pymysql.connect",
    "MySQLdb.connect",
    "mysql.connector.connect",
    "psycopg.Connection.connect",
)
_DB_TYPES = (
    "sqlite3.Connection",
    "sqlite3.Cursor",
    "psycopg.Connection",
    "psycopg.Cursor",
    "psycopg2.extensions.connection",
    "psycopg2.extensions.cursor",
    "pymysql.connections.Connection",
)

# constructor or type name -> (kind, whether calling the constructor with arguments blocks)
CONSTRUCTORS: dict[str, tuple[str, bool]] = {
    "requests.Session": ("requests", False),
    "requests.session": ("requests", False),
    "requests.sessions.Session": ("requests", False),
    "httpx.Client": ("httpx", False),
    "http.client.HTTPConnection": ("http.client", False),
    "http.client.HTTPSConnection": ("http.client", False),
    "smtplib.SMTP": ("smtp", True),
    "smtplib.SMTP_SSL": ("smtp", True),
    "smtplib.LMTP": ("smtp", True),
    **dict.fromkeys(_DB_CONNECT, ("dbapi", True)),
    **dict.fromkeys(_DB_TYPES, ("dbapi", False)),
    "sqlalchemy.create_engine": ("sa.engine", False),
    "sqlalchemy.engine.create_engine": ("sa.engine", False),
    "sqlmodel.create_engine": ("sa.engine", False),
    "sqlalchemy.Engine": ("sa.engine", False),
    "sqlalchemy.engine.Engine": ("sa.engine", False),
    "sqlalchemy.Connection": ("sa.connection", False),
    "sqlalchemy.engine.Connection": ("sa.connection", False),
    "sqlalchemy.orm.Session": ("sa.session", False),
    "sqlalchemy.orm.session.Session": ("sa.session", False),
    "sqlalchemy.orm.scoped_session": ("sa.session", False),
    "sqlalchemy.orm.scoping.scoped_session": ("sa.session", False),
    "sqlmodel.Session": ("sa.session", False),
    "sqlalchemy.orm.sessionmaker": ("sa.sessionmaker", False),
    "sqlalchemy.orm.session.sessionmaker": ("sa.sessionmaker", False),
    "openai.OpenAI": ("openai", False),
    "openai.AzureOpenAI": ("openai", False),
    "anthropic.Anthropic": ("anthropic", False),
    "anthropic.AnthropicBedrock": ("anthropic", False),
    "anthropic.AnthropicVertex": ("anthropic", False),
    "boto3.client": ("boto3", True),
    "boto3.resource": ("boto3", True),
    "boto3.Session": ("boto3.session", False),
    "boto3.session.Session": ("boto3.session", False),
    "builtins.open": ("file", False),
    "io.open": ("file", False),
    "PIL.Image.open": ("pil", False),
    "passlib.context.CryptContext": ("hasher", False),
    "argon2.PasswordHasher": ("hasher", False),
    "threading.Thread": ("thread", False),
    "threading.Timer": ("thread", False),
}

_REQUESTS = ("get", "post", "put", "patch", "delete", "head", "options", "request")

# function name -> rule code, for plain calls that block
CALLS: dict[str, str] = {
    **{f"requests.{m}": "OFF101" for m in _REQUESTS},
    **{f"requests.api.{m}": "OFF101" for m in _REQUESTS},
    **{f"httpx.{m}": "OFF101" for m in (*_REQUESTS, "stream")},
    "urllib.request.urlopen": "OFF101",
    "urllib.request.urlretrieve": "OFF101",
    "urllib3.request": "OFF101",
    "time.sleep": "OFF102",
    **{
        f"subprocess.{f}": "OFF103"
        for f in (
            "run",
            "call",
            "check_call",
            "check_output",
            "getoutput",
            "getstatusoutput",
            "Popen",
        )
    },
    "os.system": "OFF103",
    "os.popen": "OFF103",
    "hashlib.pbkdf2_hmac": "OFF402",
    "hashlib.scrypt": "OFF402",
    "hashlib.file_digest": "OFF402",
    "bcrypt.hashpw": "OFF402",
    "bcrypt.checkpw": "OFF402",
    "bcrypt.kdf": "OFF402",
    "_thread.start_new_thread": "OFF201",
}

# module-level clients: openai.chat.completions.create(...) uses a sync client inside openai
SDK_MODULES = ("openai",)
SDK_METHODS = _SDK

LOOP_GETTERS = frozenset(
    {"asyncio.get_event_loop", "asyncio.get_running_loop", "asyncio.new_event_loop"}
)
TASK_SPAWNERS = frozenset(
    {
        "asyncio.create_task",
        "asyncio.ensure_future",
        "asyncio.tasks.create_task",
        "asyncio.tasks.ensure_future",
    }
)
PATH_READS = frozenset({"read_text", "read_bytes"})
PATH_TYPES = frozenset({"pathlib.Path", "pathlib.PurePath", "pathlib.PosixPath"})
