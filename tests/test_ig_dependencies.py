"""IG dependencies as declared (issue 14): ``--ig sushi-config.yaml`` / ``--ig package.json`` load
the packages they name from a FHIR package cache (``--packages DIR``, default ``~/.fhir/packages``,
layout ``<id>#<version>/package/``) and say which could not be found.

The cache is built in tmp_path from real packages: the 2020 ``hl7.be.core`` 0.1.0 profiles and
Patient Care 1.1.0 from the reference material, BeCore 2.1.2 as becare vendors it. The IG's own
profile derives from the 2020 be-careteam, so it can only be used when that dependency loaded.
"""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path
from typing import Any

import pytest

from adapter.cli.main import main
from adapter.conformance import default_store
from adapter.conformance.packages import (
    ManifestError,
    load_ig,
    pick_version,
    read_sushi_config,
)
from tests.shared_ref import reference_dir

ROOT = Path(__file__).resolve().parents[1]
REFERENCE = reference_dir() / "belgian-profiles"
OLD_CORE = REFERENCE / "hl7-be-github-io-2020-historical"
PATIENT_CARE = REFERENCE / "patient-care"

LEGACY_CARETEAM = "https://www.ehealth.fgov.be/standards/fhir/StructureDefinition/be-careteam"
IG_PROFILE = "https://example.org/fhir/StructureDefinition/named-homecare-team"
TRAP = "https://example.org/fhir/StructureDefinition/example-only"
NAME_REQUIRED = "CareTeam.name: minimum required = 1"


def _package(cache: Path, pid: str, version: str, files: list[Path], deps: dict[str, str]) -> Path:
    folder = cache / f"{pid}#{version}" / "package"
    folder.mkdir(parents=True)
    for f in files:
        shutil.copy(f, folder / f.name)
    manifest = {"name": pid, "version": version, "fhirVersions": ["4.0.1"], "dependencies": deps}
    (folder / "package.json").write_text(json.dumps(manifest), encoding="utf-8")
    return folder


@pytest.fixture
def cache(tmp_path: Path) -> Path:
    """A package cache: 2020 hl7.be.core (which names a transitive dependency nobody has),
    Patient Care as a CI build (``#current``) and as 1.1.0."""
    root = tmp_path / "packages"
    _package(root, "hl7.be.core", "0.1.0", sorted(OLD_CORE.glob("StructureDefinition-*.json")),
             {"hl7.fhir.r4.core": "4.0.1", "hl7.fhir.be.transitive": "1.0.0"})  # fmt: skip
    care = sorted(PATIENT_CARE.glob("StructureDefinition-*.json"))
    _package(root, "hl7.fhir.be.patient-care", "1.1.0", care, {"hl7.fhir.be.core": "2.1.2"})
    _package(root, "hl7.fhir.be.patient-care", "current", care, {"hl7.fhir.be.core": "2.1.2"})
    return root


def _ig_profile() -> dict[str, Any]:
    """What SUSHI writes for a profile on the 2020 be-careteam (differential only)."""
    return {
        "resourceType": "StructureDefinition", "id": "named-homecare-team", "url": IG_PROFILE,
        "version": "0.1.0", "name": "NamedHomecareTeam", "status": "draft", "fhirVersion": "4.0.1",
        "kind": "resource", "abstract": False, "type": "CareTeam", "baseDefinition": LEGACY_CARETEAM,
        "derivation": "constraint",
        "differential": {"element": [{"id": "CareTeam", "path": "CareTeam"},
                                     {"id": "CareTeam.name", "path": "CareTeam.name", "min": 1}]},
    }  # fmt: skip


SUSHI_CONFIG = """\
id: example.homecare
canonical: https://example.org/fhir
version: 0.1.0
fhirVersion: 4.0.1
dependencies:
  hl7.fhir.r4.core: 4.0.1
  hl7.be.core: 0.1.x
  hl7.fhir.be.patient-care: current
  hl7.fhir.be.core:
    version: 2.1.2
    uri: http://hl7.org/fhir/ImplementationGuide/hl7.fhir.be.core
  hl7.fhir.be.missing: 1.0.0
"""


@pytest.fixture
def sushi(tmp_path: Path) -> Path:
    project = tmp_path / "ig"
    generated = project / "fsh-generated" / "resources"
    generated.mkdir(parents=True)
    (generated / "StructureDefinition-named-homecare-team.json").write_text(json.dumps(_ig_profile()))
    (project / "sushi-config.yaml").write_text(SUSHI_CONFIG, encoding="utf-8")
    return project / "sushi-config.yaml"


@pytest.fixture
def team(tmp_path: Path) -> Path:
    path = tmp_path / "team.json"
    path.write_text(json.dumps({"resourceType": "CareTeam", "id": "t", "meta": {"profile": [IG_PROFILE]},
                                "status": "active"}))  # fmt: skip
    return path


def _validate(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, list[str]]:
    code = main(["validate", "--no-rulebook", "--no-progress", *args])
    captured = capsys.readouterr()
    return code, captured.out, [line for line in captured.err.splitlines() if line]


# -- the command line ----------------------------------------------------------------------------------
def test_sushi_config_loads_its_dependencies_and_names_the_missing(
    sushi: Path, cache: Path, team: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = _validate(capsys, "--ig", str(sushi), "--packages", str(cache), str(team))
    # the IG's profile applied on top of the 2020 be-careteam loaded from the cache
    assert code == 1 and NAME_REQUIRED in out, out
    assert "cannot be used" not in out and "unknown" not in out
    assert err == [
        f"becare: --ig {sushi}: dependency hl7.fhir.be.missing#1.0.0 not found in {cache}; "
        "profiles it defines will be reported as unknown",
        f"becare: --ig {sushi}: dependency hl7.fhir.be.transitive#1.0.0 (needed by hl7.be.core#0.1.0) "
        f"not found in {cache}; profiles it defines will be reported as unknown",
    ]


def test_without_the_dependency_the_profile_cannot_be_used(
    sushi: Path, tmp_path: Path, team: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    empty = tmp_path / "empty-cache"
    empty.mkdir()
    code, out, err = _validate(capsys, "--ig", str(sushi), "--packages", str(empty), str(team))
    assert code == 1
    assert f"Profile '{IG_PROFILE}' cannot be used" in out and NAME_REQUIRED not in out
    missing = {line.split("dependency ", 1)[1].split(" ", 1)[0] for line in err}
    # FHIR core is built in; BeCore 2.1.2 and Patient Care (1.1.0, the highest there is for
    # "current") ship with becare: none of them is missing
    assert missing == {"hl7.be.core#0.1.x", "hl7.fhir.be.missing#1.0.0"}


def test_default_cache_is_the_users_fhir_package_folder(
    sushi: Path, cache: Path, team: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    home = tmp_path / "home"
    (home / ".fhir").mkdir(parents=True)
    shutil.move(str(cache), str(home / ".fhir" / "packages"))
    monkeypatch.setenv("HOME", str(home))
    code, out, err = _validate(capsys, "--ig", str(sushi), str(team))
    assert code == 1 and NAME_REQUIRED in out
    assert len(err) == 2 and all(str(home / ".fhir" / "packages") in line for line in err)


def test_package_json_loads_the_package_not_its_examples(
    cache: Path, tmp_path: Path, team: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "example.homecare-0.1.0" / "package"
    (folder / "example").mkdir(parents=True)
    (folder / "StructureDefinition-named-homecare-team.json").write_text(json.dumps(_ig_profile()))
    trap = {**_ig_profile(), "id": "trap", "url": TRAP}
    (folder / "example" / "StructureDefinition-trap.json").write_text(json.dumps(trap))
    manifest = {"name": "example.homecare", "version": "0.1.0",
                "dependencies": {"hl7.fhir.r4.core": "4.0.1", "hl7.be.core": "0.1.0"}}  # fmt: skip
    (folder / "package.json").write_text(json.dumps(manifest))
    args = ["--ig", str(folder / "package.json"), "--packages", str(cache), str(team)]
    code, out, err = _validate(capsys, *args)
    assert code == 1 and NAME_REQUIRED in out
    assert err == [
        f"becare: --ig {folder / 'package.json'}: dependency hl7.fhir.be.transitive#1.0.0 (needed by "
        f"hl7.be.core#0.1.0) not found in {cache}; profiles it defines will be reported as unknown"
    ]
    store = default_store().overlay()
    result = load_ig(store, folder / "package.json", cache)
    assert store.get(IG_PROFILE) is not None and store.get(TRAP) is None
    assert result.resources == 1 and ("hl7.be.core", "0.1.0") in result.loaded


def test_sushi_project_without_generated_resources_uses_its_package_or_says_so(
    cache: Path, tmp_path: Path, team: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    project = tmp_path / "built"
    (project / "output").mkdir(parents=True)
    config = project / "sushi-config.yaml"
    config.write_text("id: example.homecare\nversion: 0.1.0\ndependencies:\n  hl7.be.core: 0.1.0\n")
    code, out, err = _validate(capsys, "--ig", str(config), "--packages", str(cache), str(team))
    assert "run sushi first" in err[-1] and f"Profile reference '{IG_PROFILE}' has not been checked" in out
    data = json.dumps(_ig_profile()).encode()
    with tarfile.open(project / "output" / "package.tgz", "w:gz") as tgz:
        info = tarfile.TarInfo("package/StructureDefinition-named-homecare-team.json")
        info.size = len(data)
        tgz.addfile(info, io.BytesIO(data))
    code, out, err = _validate(capsys, "--ig", str(config), "--packages", str(cache), str(team))
    assert code == 1 and NAME_REQUIRED in out
    assert not any("run sushi first" in line for line in err)


# -- bad input: a clear message, exit 2, never a traceback ----------------------------------------------
def test_unreadable_declarations_and_a_missing_cache_exit_2(
    sushi: Path, tmp_path: Path, team: Path
) -> None:
    broken = tmp_path / "broken" / "sushi-config.yaml"
    broken.parent.mkdir()
    broken.write_text("dependencies: [unclosed\n")
    listed = tmp_path / "listed" / "package.json"
    listed.parent.mkdir()
    listed.write_text('{"name": "x", "dependencies": ["hl7.be.core"]}')
    cases = [
        (["--ig", str(broken)], "cannot be read"),
        (["--ig", str(listed)], "'dependencies' must map package ids to versions"),
        (["--ig", str(sushi), "--packages", str(tmp_path / "nowhere")], "no such folder"),
    ]
    for args, message in cases:
        proc = subprocess.run([sys.executable, "-m", "adapter.cli.main", "validate", *args, str(team)],
                              capture_output=True, text=True, cwd=ROOT)  # fmt: skip
        assert proc.returncode == 2, (args, proc.stderr)
        assert message in proc.stderr and "Traceback" not in proc.stderr, proc.stderr


def test_package_ids_cannot_leave_the_cache(cache: Path, tmp_path: Path) -> None:
    outside = tmp_path / "secret#1.0.0" / "package"
    outside.mkdir(parents=True)
    (outside / "StructureDefinition-named-homecare-team.json").write_text(json.dumps(_ig_profile()))
    config = tmp_path / "evil" / "sushi-config.yaml"
    config.parent.mkdir()
    config.write_text("dependencies:\n  ../secret: 1.0.0\n  hl7.fhir.r5.core: 5.0.0\n")
    store = default_store().overlay()
    result = load_ig(store, config, cache)
    assert store.get(IG_PROFILE) is None and result.loaded == []
    assert result.missing == [
        "dependency ../secret#1.0.0: not a package id and version",
        "dependency hl7.fhir.r5.core#5.0.0: becare validates FHIR R4 4.0.1 only",
    ]


# -- the parts -----------------------------------------------------------------------------------------
def test_load_ig_says_what_came_from_where(sushi: Path, cache: Path) -> None:
    store = default_store().overlay()
    result = load_ig(store, sushi, cache)
    assert result.loaded == [("hl7.be.core", "0.1.0"), ("hl7.fhir.be.patient-care", "current")]
    assert ("hl7.fhir.be.core", "2.1.2") in result.builtin and ("hl7.fhir.r4.core", "4.0.1") in result.builtin
    assert result.resources == 1
    assert store.get(LEGACY_CARETEAM + "|0.1.0") is not None
    assert default_store().get(LEGACY_CARETEAM) is None  # the shared store is never changed


@pytest.mark.parametrize(
    ("declared", "available", "picked"),
    [
        ("1.1.0", ["1.0.0", "1.1.0"], "1.1.0"),
        ("1.2.0", ["1.0.0", "1.1.0"], None),
        ("1.1.x", ["1.0.0", "1.1.0", "1.1.2", "1.2.0"], "1.1.2"),
        ("1.x", ["1.0.0", "1.10.0", "1.9.0", "2.0.0"], "1.10.0"),
        ("latest", ["1.0.0", "2.0.0-ballot", "2.0.0", "current"], "2.0.0"),
        ("current", ["1.0.0", "current"], "current"),
        ("current", ["1.0.0", "1.1.0"], "1.1.0"),
        ("dev", ["1.0.0", "current"], "current"),
        ("dev", ["dev", "current"], "dev"),
        ("latest", [], None),
    ],
)
def test_versions_are_picked_as_the_fhir_tooling_does(
    declared: str, available: list[str], picked: str | None
) -> None:
    assert pick_version(declared, available) == picked


def test_sushi_versions_stay_strings(tmp_path: Path) -> None:
    config = tmp_path / "sushi-config.yaml"
    config.write_text("id: x\ndependencies:\n  a.b: 2.0\n  c.d:\n    version: 1.10\n  e.f: 3\n")
    assert [(d.id, d.version) for d in read_sushi_config(config).dependencies] == [
        ("a.b", "2.0"), ("c.d", "1.10"), ("e.f", "3")
    ]  # fmt: skip
    config.write_text("dependencies:\n  a.b:\n    uri: http://example.org\n")
    with pytest.raises(ManifestError, match="has no version"):
        read_sushi_config(config)
