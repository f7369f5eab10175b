"""``becare map --to kmehr`` and ``becare map --from kmehr``, as an integration engineer runs them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from lxml import etree

from adapter.cli.main import main
from adapter.kmehr import schemas

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "samples" / "valid" / "wallonia-case-management.json"
DOCUMENT = ROOT / "mappings" / "examples" / "care-coordination-flanders.yaml"
KMEHR_NS = "{http://www.ehealth.fgov.be/standards/kmehr/schema/v1}"


@pytest.mark.parametrize("version", ["1.19", "1.26"])
@pytest.mark.parametrize("source", [SAMPLE, DOCUMENT], ids=["bundle", "document"])
def test_to_kmehr_writes_a_message_valid_for_the_chosen_version(
    tmp_path: Path, version: str, source: Path
) -> None:
    out = tmp_path / "careplan.xml"
    assert main(["map", str(source), "--to", "kmehr", "--kmehr-version", version, "--output", str(out)]) == 0
    message = etree.fromstring(out.read_bytes())
    assert schemas.problems("kmehr", version, message) == []
    assert message.findtext(f"{KMEHR_NS}header/{KMEHR_NS}standard/{KMEHR_NS}cd") == \
        schemas.STANDARD_FOR_KMEHR[version]
    cds = [cd.text for cd in message.iter(f"{KMEHR_NS}cd") if cd.get("S") == "CD-TRANSACTION"]
    assert cds and set(cds) == {"careplan"}


def test_round_trip_through_files_gives_back_the_bundle(tmp_path: Path) -> None:
    kmehr = tmp_path / "careplan.xml"
    back = tmp_path / "back.json"
    assert main(["map", str(SAMPLE), "--to", "kmehr", "--output", str(kmehr)]) == 0
    assert main(["map", str(kmehr), "--from", "kmehr", "--output", str(back)]) == 0
    assert json.loads(back.read_text()) == json.loads(SAMPLE.read_text())


def test_summary_language_follows_lang(tmp_path: Path) -> None:
    texts = {}
    for lang in ("nl", "de"):
        out = tmp_path / f"{lang}.xml"
        assert main(["map", str(SAMPLE), "--to", "kmehr", "--lang", lang, "--output", str(out)]) == 0
        message = etree.fromstring(out.read_bytes())
        texts[lang] = {t.get("L") for t in message.iter(f"{KMEHR_NS}text")}
    assert texts["nl"] == {"nl"} and texts["de"] == {"de"}


def test_bad_input_gets_a_clear_error_and_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bundle = json.loads(SAMPLE.read_text())
    for entry in bundle["entry"]:
        if entry["resource"]["resourceType"] == "Patient":
            entry["resource"].pop("identifier", None)
    no_inss = tmp_path / "no-inss.json"
    no_inss.write_text(json.dumps(bundle))
    not_kmehr = tmp_path / "other.xml"
    not_kmehr.write_text("<note>hello</note>")
    hostile = tmp_path / "hostile.xml"
    hostile.write_text('<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]>'
                       '<kmehrmessage xmlns="http://www.ehealth.fgov.be/standards/kmehr/schema/v1">&e;'
                       "</kmehrmessage>")
    out = tmp_path / "never.xml"
    assert main(["map", str(no_inss), "--to", "kmehr", "--output", str(out)]) == 2
    err = capsys.readouterr().err
    assert "INSS" in err or "SSIN" in err
    assert not out.exists()
    for bad in (not_kmehr, hostile):
        assert main(["map", str(bad), "--from", "kmehr"]) == 2
        err = capsys.readouterr().err
        assert "nothing written" in err and "Traceback" not in err and "root:" not in err
    assert main(["map", str(SAMPLE), "--to", "kmehr", "--from", "kmehr"]) == 2


def test_the_command_as_a_process(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "adapter.cli.main", "map", str(SAMPLE), "--to", "kmehr",
         "--kmehr-version", "1.19"],
        capture_output=True, timeout=120, cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr.decode()
    assert schemas.problems("kmehr", "1.19", etree.fromstring(result.stdout)) == []
