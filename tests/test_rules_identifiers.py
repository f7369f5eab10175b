"""Check digits of Belgian identifiers (IC-ID-1 building blocks)."""

from __future__ import annotations

import pytest

from adapter.rules.identifiers import (
    cbe_valid,
    check_identifier,
    classify_system,
    make_cbe,
    make_nihdi,
    make_ssin,
    nihdi_verdict,
    ssin_valid,
)


def test_ssin_before_2000() -> None:
    # 85.07.30-033.28 : 97 - (850730033 mod 97) = 28
    assert ssin_valid("85073003328")
    assert not ssin_valid("85073003329")


def test_ssin_after_2000_uses_the_2_prefix() -> None:
    ssin = make_ssin("2003-06-05", 17)
    assert ssin_valid(ssin)
    body = int(ssin[:9])
    # the pre-2000 formula alone gives another check number, so the rule is really exercised
    assert 97 - body % 97 != int(ssin[9:])


@pytest.mark.parametrize("value", ["8507300332", "850730033288", "85.07.30-033.28", "8507300332a", ""])
def test_ssin_shape(value: str) -> None:
    assert not ssin_valid(value)


def test_cbe() -> None:
    assert cbe_valid("0203201340")  # 97 - (2032013 mod 97) = 40
    assert not cbe_valid("0203201341")
    assert not cbe_valid("2203201340")  # must start with 0 or 1
    assert cbe_valid(make_cbe(4_101_017))


def test_nihdi() -> None:
    assert nihdi_verdict(make_nihdi(100_101, "004")) == "ok"
    assert nihdi_verdict("10010153") == "nihdi-8"
    assert nihdi_verdict("1001015300") == "invalid"
    assert nihdi_verdict("1-00101-53-004") == "invalid"
    assert check_identifier("nihdi", "12345678901") == "ok"


def test_classify_system() -> None:
    core = "https://www.ehealth.fgov.be/standards/fhir/core/NamingSystem/"
    legacy = "https://www.ehealth.fgov.be/standards/fhir/NamingSystem/"
    assert classify_system(core + "ssin") == ("ssin", False)
    assert classify_system(legacy + "ssin") == ("ssin", True)
    assert classify_system(core + "nihdi-professional") == ("nihdi", False)
    assert classify_system(legacy + "cbe") == ("cbe", True)
    assert classify_system("http://example.org/ssin") is None
    assert classify_system(None) is None
