"""``becare validate`` of big files: no size limit but memory, unless ``--max-size`` sets one (issue 14).

The service keeps its own body limit (tests/test_service_hardening.py); a file on disk the user
chose to validate is bounded by memory only.
"""

from __future__ import annotations

import gc
import json
import sys
from pathlib import Path

import pytest

from adapter.cli.main import main
from adapter.cli.validate import byte_size

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench import shapes  # noqa: E402


@pytest.fixture(scope="module")
def big_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An 11 MB care bundle (the sample's entries 290 times): over the old 10 MiB cap."""
    path = tmp_path_factory.mktemp("large") / "bundle-11mb.json"
    path.write_bytes(shapes.json_bytes(shapes.replicated(290)))
    assert path.stat().st_size > 11 * 1_000_000
    return path


def _outcome(capsys: pytest.CaptureFixture[str]) -> dict:
    return json.loads(capsys.readouterr().out)


def test_a_file_over_ten_megabytes_is_validated(big_bundle: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["validate", str(big_bundle), "--format", "json", "--no-progress", "--no-rulebook"])
    outcome = _outcome(capsys)
    assert code == 0, outcome["issue"][:3]
    assert not any(i["severity"] == "fatal" for i in outcome["issue"])


def test_max_size_refuses_a_larger_file(big_bundle: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["validate", str(big_bundle), "--format", "json", "--no-progress", "--max-size", "10M"])
    outcome = _outcome(capsys)
    assert code == 2
    [issue] = outcome["issue"]
    assert issue["severity"] == "fatal" and issue["code"] == "too-costly"
    size = big_bundle.stat().st_size
    assert issue["details"]["text"] == f"The file is {size} bytes, over the limit of 10485760"


def test_max_size_lets_a_smaller_file_through(capsys: pytest.CaptureFixture[str]) -> None:
    args = ["validate", str(shapes.CARE_BUNDLE), "--format", "json", "--no-progress", "--max-size", "1M"]
    code = main(args)
    assert code == 0
    assert not any(i["severity"] == "fatal" for i in _outcome(capsys)["issue"])


@pytest.mark.parametrize(
    ("text", "size"),
    [("1048576", 1048576), ("512K", 524288), ("50M", 52428800), ("50mb", 52428800), ("1GiB", 1073741824)],
)
def test_max_size_units(text: str, size: int) -> None:
    assert byte_size(text) == size


@pytest.mark.parametrize("text", ["0", "-5", "1.5M", "5T", "ten", ""])
def test_a_bad_max_size_is_a_usage_error(text: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["validate", str(shapes.CARE_BUNDLE), "--max-size", text])
    assert exc.value.code == 2
    assert "--max-size" in capsys.readouterr().err


def test_in_process_runs_leave_the_collector_as_they_found_it(capsys: pytest.CaptureFixture[str]) -> None:
    frozen = gc.get_freeze_count()
    assert gc.isenabled()
    main(["validate", str(shapes.CARE_BUNDLE), "--no-progress"])
    assert gc.isenabled() and gc.get_freeze_count() == frozen
    gc.disable()
    try:
        main(["validate", str(shapes.CARE_BUNDLE), "--no-progress"])
        assert not gc.isenabled()  # a caller that had it off still has it off
    finally:
        gc.enable()
    capsys.readouterr()
