"""offload doctor on whole sample apps: the exact findings of the bad ones, none for the clean."""

from __future__ import annotations

from pathlib import Path

import pytest

from offload.doctor import scan

FIXTURES = Path(__file__).parent / "fixtures"


def found(*paths: Path, **options: list[str]) -> set[tuple[str, int, str]]:
    report = scan([str(p) for p in paths], **options)
    return {
        (Path(f.path).relative_to(FIXTURES).as_posix(), f.line, f.code) for f in report.findings
    }


def test_fastapi_app_findings() -> None:
    assert found(FIXTURES / "fastapi_bad") == {
        ("fastapi_bad/jobs.py", 10, "OFF102"),  # t.sleep, t = time
        ("fastapi_bad/jobs.py", 11, "OFF103"),  # os.system
        ("fastapi_bad/jobs.py", 13, "OFF101"),  # a requests Session from `from requests import`
        ("fastapi_bad/main.py", 28, "OFF101"),  # r.get, r = requests
        ("fastapi_bad/main.py", 29, "OFF101"),  # urllib.request.urlopen
        ("fastapi_bad/main.py", 32, "OFF101"),  # http.client connection .request
        ("fastapi_bad/main.py", 38, "OFF102"),  # from time import sleep
        ("fastapi_bad/main.py", 39, "OFF103"),  # subprocess.run
        ("fastapi_bad/main.py", 40, "OFF104"),  # smtplib.SMTP(host) connects
        ("fastapi_bad/main.py", 41, "OFF104"),  # .send_message on it
        ("fastapi_bad/main.py", 47, "OFF105"),  # db: sqlalchemy Session parameter
        ("fastapi_bad/main.py", 48, "OFF105"),  # sqlite3.connect
        ("fastapi_bad/main.py", 49, "OFF105"),  # .execute on that connection
        ("fastapi_bad/main.py", 55, "OFF106"),  # module-level OpenAI() client
        ("fastapi_bad/main.py", 57, "OFF106"),  # anthropic.Anthropic() made in the handler
        ("fastapi_bad/main.py", 58, "OFF106"),  # module-level boto3 client
        ("fastapi_bad/main.py", 64, "OFF107"),  # open(path).read()
        ("fastapi_bad/main.py", 65, "OFF107"),  # Path(path).read_bytes()
        ("fastapi_bad/main.py", 71, "OFF201"),  # threading.Thread(...).start()
        ("fastapi_bad/main.py", 72, "OFF202"),  # asyncio.create_task, result dropped
        ("fastapi_bad/main.py", 78, "OFF402"),  # hashlib.pbkdf2_hmac
        ("fastapi_bad/main.py", 80, "OFF401"),  # 2000 x 2000 loop
        ("fastapi_bad/main.py", 88, "OFF202"),  # loop.create_task, result dropped
        ("fastapi_bad/main.py", 91, "OFF102"),  # ignore[OFF101] does not hide OFF102
    }


def test_flask_app_findings() -> None:
    assert found(FIXTURES / "flask_bad") == {("flask_bad/app.py", 18, "OFF201")}


def test_gevent_worker_without_patch() -> None:
    assert found(FIXTURES / "gevent_bad") == {("gevent_bad/wsgi.py", 3, "OFF301")}


def test_gevent_patch_after_imports() -> None:
    assert found(FIXTURES / "gevent_late") == {("gevent_late/server.py", 6, "OFF301")}


@pytest.mark.parametrize("app", ["clean_fastapi", "clean_flask", "gevent_good"])
def test_clean_apps_report_nothing(app: str) -> None:
    report = scan([str(FIXTURES / app)])
    assert report.findings == []
    assert report.files >= 1


def test_a_syntax_error_is_a_finding_and_the_other_files_are_scanned() -> None:
    report = scan([str(FIXTURES / "broken")])
    assert [(Path(f.path).name, f.line, f.code, f.severity) for f in report.findings] == [
        ("bad.py", 1, "OFF001", "warning")
    ]
    assert report.files == 2


def test_select_and_ignore_by_code_or_prefix() -> None:
    app = FIXTURES / "fastapi_bad"
    assert {code for _, _, code in found(app, select=["OFF2"])} == {"OFF201", "OFF202"}
    assert {code for _, _, code in found(app, select=["OFF10"], ignore=["OFF101", "off102"])} == {
        "OFF103",
        "OFF104",
        "OFF105",
        "OFF106",
        "OFF107",
    }


def test_findings_are_sorted_and_carry_the_fix() -> None:
    report = scan([str(FIXTURES / "fastapi_bad")])
    keys = [(f.path, f.line, f.col) for f in report.findings]
    assert keys == sorted(keys)
    for finding in report.findings:
        assert "@app.task" in finding.fix or "asyncio" in finding.fix
        assert finding.col >= 1
