"""``offload ...``: parse the command line, wire the pieces, call one layer. Nothing else."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Sequence
from typing import Any

import orjson

from offload import cli_migrate, cli_top, console
from offload.backends.sqlite.check import require_existing
from offload.cli_args import build_parser
from offload.client import App, SubmitOptions
from offload.core.schedule import describe_schedules
from offload.core.states import State
from offload.errors import ConfigurationError, JobError, OffloadError, WaitTimeout
from offload.loader import load_app
from offload.logs import configure_logging
from offload.settings import Settings


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    ns = parser.parse_args(argv)
    try:
        return int(ns.func(ns))
    except JobError as exc:
        print(f"offload: job did not succeed: {exc}", file=sys.stderr)
        return 1
    except (OffloadError, ValueError) as exc:
        print(f"offload: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def _parser() -> argparse.ArgumentParser:
    """The command line of :mod:`offload.cli_args`, each command bound to its handler here."""
    return build_parser(
        {
            "worker": _worker,
            "up": _up,
            "serve": _serve,
            "submit": _submit,
            "status": _status,
            "cancel": _cancel,
            "prune": _prune,
            "retry": _retry,
            "jobs": _jobs,
            "schedules": _schedules,
            "loadtest": _loadtest,
            "doctor": _doctor,
        },
        extensions=[
            lambda sub, _: cli_migrate.add_parser(sub),
            lambda sub, backend_options: cli_top.register(sub, backend_options, _app_for),
        ],
    )


def _apply_strict(ns: argparse.Namespace) -> None:
    """--strict reaches every App this process (and its children) builds through the env."""
    if getattr(ns, "strict", False):
        os.environ["OFFLOAD_STRICT"] = "1"


def _app_for(ns: argparse.Namespace) -> App:
    """The App whose store a command reads; its SQLite file must exist (never made here)."""
    if ns.backend is not None and not ns.backend.strip():
        raise ConfigurationError("--backend is empty; give a URL such as sqlite:///offload.db")
    app = load_app(ns.app) if ns.app else App(ns.backend or None)
    require_existing(app.settings.backend)
    return app


def _at_least_one(value: int, flag: str) -> None:
    if value < 1:
        raise ConfigurationError(f"{flag} must be at least 1, not {value}")


def _worker(ns: argparse.Namespace) -> int:
    _at_least_one(ns.processes, "--processes")
    _apply_strict(ns)
    settings = Settings.from_env()
    configure_logging(settings.log_format, settings.log_level)
    if ns.processes > 1:
        from offload.worker.supervisor import Supervisor

        load_app(ns.app)  # fail here, once, rather than in every child

        child = [sys.executable, "-m", "offload", *_child_args(ns)]
        return Supervisor(child, ns.processes).run()
    from offload.worker.worker import Worker

    app = load_app(ns.app)
    overrides: dict[str, Any] = {"lease_seconds": ns.lease, "shutdown_grace": ns.shutdown_grace}
    if ns.lease is not None:
        overrides["renew_interval"] = overrides["reap_interval"] = ns.lease / 3
    worker = Worker(
        app,
        queues=console.parse_queues(ns.queues) if ns.queues else None,
        concurrency=ns.concurrency,
        name=ns.name,
        app_path=ns.app,
        settings=app.settings.with_(**overrides),
        parent_pid=ns.parent_pid,
    )

    async def serve() -> None:
        worker.install_signal_handlers()
        await worker.run()

    asyncio.run(serve())
    return 0


def _up(ns: argparse.Namespace) -> int:
    from offload.up import run_up

    _apply_strict(ns)
    settings = Settings.from_env()
    configure_logging(settings.log_format, settings.log_level)
    host, port = ns.host or settings.host, ns.port or settings.port
    run_up(ns.app, host=host, port=port, concurrency=ns.concurrency)
    return 0


def _serve(ns: argparse.Namespace) -> int:
    from offload.up import serve

    _at_least_one(ns.workers, "--workers")
    _apply_strict(ns)
    settings = Settings.from_env()
    configure_logging(settings.log_format, settings.log_level)
    host, port = ns.host or settings.host, ns.port or settings.port
    serve(ns.app, host=host, port=port, workers=ns.workers)
    return 0


def _child_args(ns: argparse.Namespace) -> list[str]:
    args = ["worker", ns.app, "--processes", "1", "--parent-pid", str(os.getpid())]
    for flag, value in (
        ("--queues", ns.queues),
        ("--concurrency", ns.concurrency),
        ("--name", ns.name),
        ("--lease", ns.lease),
        ("--shutdown-grace", ns.shutdown_grace),
    ):
        if value is not None:
            args += [flag, str(value)]
    return args


def _submit(ns: argparse.Namespace) -> int:
    with load_app(ns.app) as app:
        return _submit_with(app, ns)


def _submit_with(app: App, ns: argparse.Namespace) -> int:
    kwargs = dict(console.parse_keyword(item) for item in ns.kw)
    options = SubmitOptions(
        queue=ns.queue, priority=ns.priority, delay=ns.delay, idempotency_key=ns.idempotency_key
    )
    args = [console.parse_value(a) for a in ns.args]
    job = app.run_sync(app.asubmit_name(ns.task, args, kwargs, options))
    if not ns.wait:
        console.show_job(job.record, as_json=ns.json, brief=True)
        return 0
    try:
        app.run_sync(console.follow(job, ns.timeout))
    except WaitTimeout as exc:
        print(f"offload: {exc}", file=sys.stderr)
        return 3
    console.show_job(job.record, as_json=ns.json)
    return 0 if job.status is State.SUCCEEDED else 1


def _status(ns: argparse.Namespace) -> int:
    with _app_for(ns) as app:
        job = app.get_job(ns.id)
        history = app.run_sync(job.ahistory())
    console.show_job(job.record, as_json=ns.json, history=history)
    return 0


def _cancel(ns: argparse.Namespace) -> int:
    with _app_for(ns) as app:
        job = app.cancel(ns.id)
    console.show_job(job.record, as_json=ns.json, brief=True)
    return 0


def _jobs(ns: argparse.Namespace) -> int:
    _at_least_one(ns.limit, "--limit")
    with _app_for(ns) as app:
        jobs = app.jobs(status=ns.status, task=ns.task, queue=ns.queue, limit=ns.limit)
    console.show_table([j.record for j in jobs], as_json=ns.json)
    return 0


def _prune(ns: argparse.Namespace) -> int:
    _at_least_one(ns.batch, "--batch")
    with _app_for(ns) as app:
        pruned = app.run_sync(app.aprune(ns.batch))
    print(f"pruned {pruned} expired job(s)")
    return 0


def _retry(ns: argparse.Namespace) -> int:
    _at_least_one(ns.limit, "--limit")
    with load_app(ns.app) as app:
        done = app.run_sync(
            app.aretry_matching(
                status=ns.status,
                task=ns.task,
                queue=ns.queue,
                limit=ns.limit,
                dry_run=ns.dry_run,
            )
        )
    if ns.json:
        rows = [
            {"id": old.id, "task": old.task, "retry": new.id if new else None} for old, new in done
        ]
        print(orjson.dumps(rows).decode())
        return 0
    verb = "would retry" if ns.dry_run else "retried"
    for old, new in done:
        print(f"{old.id}  {old.task}" + (f"  -> {new.id}" if new else ""))
    print(f"{verb} {len(done)} {ns.status} job(s)")
    return 0


def _schedules(ns: argparse.Namespace) -> int:
    with load_app(ns.app) as app:
        now = app.run_sync(app.anow())
        console.show_schedules(describe_schedules(app, now), as_json=ns.json)
    return 0


def _loadtest(ns: argparse.Namespace) -> int:
    from offload import loadtest

    args = console.parse_value(ns.args)
    if not isinstance(args, list):
        raise ConfigurationError(f"--args must be a JSON array, not {ns.args!r}")
    report = asyncio.run(
        loadtest.run(
            ns.url,
            task=ns.task,
            args=args,
            n=ns.n,
            concurrency=ns.c,
            rate=ns.rate,
            duration=ns.duration,
            token=ns.token,
            allow_remote=ns.allow_remote,
            progress=loadtest.progress_bar(),
        )
    )
    print(orjson.dumps(report.as_dict()).decode() if ns.json else report.table())
    return 0


def _doctor(ns: argparse.Namespace) -> int:
    from offload import doctor

    try:
        report = doctor.scan(ns.paths, select=_codes(ns.select), ignore=_codes(ns.ignore))
    except ConfigurationError as exc:
        print(f"offload: error: {exc}", file=sys.stderr)
        return 2
    print(report.render(ns.format))
    return 1 if report.findings else 0


def _codes(text: str) -> list[str]:
    return [code.strip() for code in text.split(",") if code.strip()]


if __name__ == "__main__":
    sys.exit(main())
