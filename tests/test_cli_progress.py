"""Progress of ``becare validate`` on a folder of many files: on stderr, never in the report."""

from __future__ import annotations

import json
import os
import pty
import subprocess
import sys
from pathlib import Path

import pytest
from junitparser import JUnitXml

from adapter.cli.main import main

REPO = Path(__file__).resolve().parent.parent
PATIENT = {
    "resourceType": "Patient",
    "text": {"status": "generated", "div": '<div xmlns="http://www.w3.org/1999/xhtml">A patient</div>'},
    "active": True,
    "gender": "female",
}


def _folder(tmp_path: Path, count: int) -> Path:
    folder = tmp_path / f"many-{count}"
    folder.mkdir()
    for i in range(count):
        (folder / f"patient-{i:03d}.json").write_text(
            json.dumps({**PATIENT, "id": f"p{i}"}), encoding="utf-8"
        )
    return folder


def _becare(*args: str, **kwargs: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "adapter.cli.main", *args],
        text=True,
        cwd=REPO,
        **kwargs,  # type: ignore[call-overload]
    )


def test_many_files_report_progress_on_stderr_and_json_stays_clean(tmp_path: Path) -> None:
    folder = _folder(tmp_path, 24)
    proc = _becare("validate", str(folder), "--format", "json", capture_output=True)
    assert proc.returncode == 0, proc.stderr
    bundle = json.loads(proc.stdout)  # nothing but the report on stdout
    assert bundle["resourceType"] == "Bundle" and len(bundle["entry"]) == 24
    lines = proc.stderr.splitlines()
    assert lines[0] == "becare: validating 1/24 patient-000.json"
    assert "becare: validating 24/24 patient-023.json" in lines
    assert lines[-1].startswith("becare: validated 24 file(s) in ")
    assert "\r" not in proc.stderr  # a log, not a terminal: no line rewriting
    assert 3 <= len(lines) <= 14  # about one line per tenth, not one per file


def test_no_progress_for_a_few_files_or_when_asked(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["validate", str(_folder(tmp_path, 3)), "--format", "json"]) == 0
    few = capsys.readouterr()
    assert few.err == "" and len(json.loads(few.out)["entry"]) == 3
    assert main(["validate", str(_folder(tmp_path, 21)), "--format", "junit", "--no-progress"]) == 0
    quiet = capsys.readouterr()
    assert quiet.err == "" and quiet.out.startswith("<?xml")


def test_terminal_sees_a_counter_while_stdout_is_piped(tmp_path: Path) -> None:
    """``becare validate folder --format junit > report.xml`` in a terminal."""
    master, slave = pty.openpty()
    try:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "adapter.cli.main",
                "validate",
                str(_folder(tmp_path, 8)),
                "--format",
                "junit",
            ],
            stdout=subprocess.PIPE,
            stderr=slave,
            cwd=REPO,
            text=True,
        )
        os.close(slave)
        out, _ = proc.communicate(timeout=120)
        seen = b""
        while True:
            try:
                chunk = os.read(master, 4096)
            except OSError:  # EIO: the child closed the terminal
                break
            if not chunk:
                break
            seen += chunk
    finally:
        os.close(master)
    terminal = seen.decode()
    assert proc.returncode == 0
    assert "\rvalidating 1/8 patient-000.json" in terminal and "\rvalidating 8/8 patient-007.json" in terminal
    assert "becare: validated 8 file(s)" in terminal
    report = tmp_path / "report.xml"
    report.write_text(out, encoding="utf-8")
    suite = next(iter(JUnitXml.fromfile(str(report))))
    assert suite.tests == 8 and len(list(suite)) == 8
