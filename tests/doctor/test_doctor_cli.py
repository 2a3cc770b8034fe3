"""``offload doctor`` through the CLI: exit codes, text and JSON output, bad input."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from offload.cli import main

FIXTURES = Path(__file__).parent / "fixtures"


def test_clean_app_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["doctor", str(FIXTURES / "clean_fastapi")]) == 0
    assert capsys.readouterr().out.strip() == "offload doctor: no findings in 1 file"


def test_findings_exit_1_grouped_by_file_with_the_fix(capsys: pytest.CaptureFixture[str]) -> None:
    app = FIXTURES / "fastapi_bad"
    assert main(["doctor", str(app), "--select", "OFF102"]) == 1
    out = capsys.readouterr().out
    jobs, main_py = f"{app / 'jobs.py'}", f"{app / 'main.py'}"
    assert out.splitlines()[:3] == [
        f"{jobs}:10: OFF102 blocking sleep: t.sleep() (time.sleep) in async def poll",
        "    fix: use `await asyncio.sleep(...)`; to run work later, submit an @app.task with "
        ".options(delay=...); see docs/guide/tasks.md",
        "",
    ]
    assert f"{main_py}:38: OFF102 blocking sleep: sleep() (time.sleep) in async def report" in out
    assert out.rstrip().endswith(
        "offload doctor: 3 findings (3 errors, 0 warnings) in 2 of 2 files"
    )


def test_json_output(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["doctor", str(FIXTURES / "flask_bad"), "--format", "json"]) == 1
    assert orjson.loads(capsys.readouterr().out) == [
        {
            "path": str(FIXTURES / "flask_bad" / "app.py"),
            "line": 18,
            "col": 5,
            "code": "OFF201",
            "title": "thread per request: worker.start() on a threading.Thread in route handler "
            "create_exam",
            "fix": "do not start a thread per request: submit an @app.task (bounded worker slots, "
            "durable, with status), or use one module-level ThreadPoolExecutor(max_workers=N); "
            "see docs/guide/workers.md",
            "severity": "error",
        }
    ]


def test_json_when_clean_is_an_empty_list(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["doctor", str(FIXTURES / "clean_flask"), "--format", "json"]) == 0
    assert orjson.loads(capsys.readouterr().out) == []


def test_ignore_everything_found_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["doctor", str(FIXTURES / "flask_bad"), "--ignore", "OFF2"]) == 0


def test_paths_relative_to_the_current_folder(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(FIXTURES / "flask_bad")
    assert main(["doctor", "."]) == 1
    assert capsys.readouterr().out.startswith("app.py:18: OFF201 ")


def test_a_syntax_error_is_reported_not_raised(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["doctor", str(FIXTURES / "broken")]) == 1
    assert "bad.py:1: OFF001 could not parse: invalid syntax" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["no/such/dir"], "offload: error: no such file or folder: no/such/dir\n"),
        ([".", "--select", "OFF999"], "offload: error: unknown rule code 'OFF999' (known: OFF001,"),
        ([".", "--ignore", "E501"], "offload: error: unknown rule code 'E501' (known: OFF001,"),
    ],
)
def test_bad_input_exits_2_with_one_line(
    args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["doctor", *args]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith(message)
    assert captured.err.count("\n") == 1


def test_a_bad_format_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["doctor", ".", "--format", "xml"])
    assert exited.value.code == 2
    assert "invalid choice: 'xml'" in capsys.readouterr().err
