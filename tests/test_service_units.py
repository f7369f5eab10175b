"""Pure pieces of the service: negotiation, token buckets, personal-data log filter, config,
and ``becare serve`` refusing unsafe starts."""

from __future__ import annotations

import io
import logging
from pathlib import Path

import pytest

from adapter.cli.main import main as becare
from adapter.service import negotiation as neg
from adapter.service.config import (
    ConfigError,
    ServiceConfig,
    check_bind,
    hash_key,
    load_service_config,
    service_config_from_mapping,
)
from adapter.service.logfilter import PersonalDataFilter, mask_personal_data
from adapter.service.messages import keys, languages_of
from adapter.service.ratelimit import TokenBuckets, retry_after_header


# -- negotiation ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("ctype", "fmt"),
    [
        ("application/fhir+json; charset=utf-8", "json"),
        ("application/json", "json"),
        ("application/fhir+xml", "xml"),
        ("text/xml;charset=UTF-8", "xml"),
        (None, None),
        ("", None),
    ],
)
def test_request_format(ctype: str | None, fmt: str | None) -> None:
    assert neg.request_format(ctype) == fmt


def test_request_format_rejects_other_media() -> None:
    with pytest.raises(neg.UnsupportedMediaType):
        neg.request_format("multipart/form-data; boundary=x")


def test_response_format_precedence() -> None:
    assert neg.response_format("xml", "application/fhir+json") == "xml"
    assert neg.response_format("application/fhir json", None) == "json"  # '+' decoded as space
    assert neg.response_format(None, "text/html, application/fhir+xml;q=0.9, */*;q=0.8") == "xml"
    assert neg.response_format(None, "application/fhir+json;q=0.2, application/fhir+xml;q=0.8") == "xml"
    assert neg.response_format(None, "*/*", "xml") == "xml"
    assert neg.response_format(None, None, None) == "json"
    with pytest.raises(neg.BadFormatParameter):
        neg.response_format("turtle", None)


@pytest.mark.parametrize(
    ("header", "lang"),
    [
        (None, "en"),
        ("fr-BE", "fr"),
        ("nl;q=0.3, de;q=0.9", "de"),
        ("es, it;q=0.9, nl;q=0.1", "nl"),
        ("es", "en"),
        ("fr;q=0, nl", "nl"),
        ("*", "en"),
        ("de-CH;q=bogus, fr", "fr"),
    ],
)
def test_language_q_values(header: str | None, lang: str) -> None:
    assert neg.language(header) == lang


def test_every_message_has_all_four_languages() -> None:
    for key in keys():
        assert languages_of(key) == {"en", "fr", "nl", "de"}, key


# -- token buckets ---------------------------------------------------------------------------------------
def test_token_bucket_burst_then_rate() -> None:
    now = [0.0]
    buckets = TokenBuckets(per_second=2.0, burst=3, clock=lambda: now[0])
    assert [buckets.take("a") for _ in range(3)] == [0.0, 0.0, 0.0]
    wait = buckets.take("a")
    assert wait == pytest.approx(0.5)
    assert buckets.take("b") == 0.0  # clients are independent
    now[0] += 0.5
    assert buckets.take("a") == 0.0
    assert buckets.take("a") > 0
    now[0] += 100
    assert [buckets.take("a") for _ in range(3)] == [0.0, 0.0, 0.0]  # refilled, capped at burst
    assert buckets.take("a") > 0
    assert retry_after_header(0.01) == "1" and retry_after_header(2.1) == "3"


def test_token_buckets_prune_idle_clients() -> None:
    now = [0.0]
    buckets = TokenBuckets(per_second=1.0, burst=1, clock=lambda: now[0], max_clients=10)
    for i in range(10):
        buckets.take(f"c{i}")
    now[0] += 5
    buckets.take("new-1")
    buckets.take("new-2")
    assert len(buckets._buckets) <= 3


# -- personal data in logs -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "text",
    [
        "patient 85073003328 accepted",
        "SSIN 85.07.30-033.28 rejected",
        "ssin=850730 033 28",
        '{"family": "Peeters", "given": ["Jan", "Maria"]}',
        "name=Dubois and more",
        "<family value=\"Janssens\"/><given value='An'/>",
        "{'family': 'Müller', 'given': ['Jürgen']}",
    ],
)
def test_mask_personal_data(text: str) -> None:
    masked = mask_personal_data(text)
    for secret in (
        "85073003328",
        "85.07.30-033.28",
        "850730 033 28",
        "Peeters",
        "Jan",
        "Maria",
        "Dubois",
        "Janssens",
        "'An'",
        "Müller",
        "Jürgen",
    ):
        assert secret not in masked, masked
    assert "***" in masked


def test_mask_keeps_ordinary_text() -> None:
    text = "delivery 3f2a accepted in 12.5 ms, 202 for POST /fhir (bundle of 14 entries) at 2024-05-01"
    assert mask_personal_data(text) == text


def test_log_filter_masks_formatted_records_and_exceptions() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(PersonalDataFilter())
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    logger = logging.getLogger("becare.test.mask")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        logger.warning("rejected bundle for %s (%s)", "85073003328", {"family": "Peeters"})
        try:
            raise ValueError("bad SSIN 85073003328 for given=Jan")
        except ValueError:
            logger.exception("failed")
    finally:
        logger.removeHandler(handler)
    out = stream.getvalue()
    assert "85073003328" not in out and "Peeters" not in out and "Jan" not in out
    assert "rejected bundle for ***" in out
    assert "ValueError" in out  # the traceback is kept, only personal data goes


# -- config ---------------------------------------------------------------------------------------------
def test_service_config_from_yaml(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KEY_A", "key-a-value")
    monkeypatch.setenv("JWT_SECRET", "x" * 40)
    cfg_file = tmp_path / "becare.yaml"
    cfg_file.write_text(
        "service:\n"
        "  max_body_bytes: 1234\n"
        "  request_timeout: 5\n"
        "  rate_limit: {per_second: 3, burst: 6}\n"
        "  auth:\n"
        "    api_keys:\n"
        "      - {id: a, key_env: KEY_A}\n"
        f"      - {{id: b, key_sha256: {hash_key('bee')}, scopes: [audit]}}\n"
        "    jwt: {hs256_secret_env: JWT_SECRET, audience: becare}\n",
        encoding="utf-8",
    )
    cfg = load_service_config(cfg_file)
    assert cfg.max_body_bytes == 1234 and cfg.request_timeout == 5
    assert cfg.rate_limit.per_second == 3 and cfg.rate_limit.burst == 6
    assert [k.id for k in cfg.auth.api_keys] == ["a", "b"]
    assert cfg.auth.api_keys[0].sha256 == hash_key("key-a-value")
    assert cfg.auth.api_keys[1].scopes == {"audit"}
    assert cfg.auth.jwt.hs256_secret == "x" * 40 and cfg.auth.jwt.audience == "becare"
    assert load_service_config(None) == ServiceConfig()


_SHA = hash_key("k")


@pytest.mark.parametrize(
    ("section", "needle"),
    [
        ({"auth": {"api_keys": [{"id": "a"}]}}, "key_sha256 or key_env"),
        ({"auth": {"api_keys": [{"id": "a", "key_sha256": _SHA, "scopes": ["root"]}]}}, "scopes"),
        ({"auth": {"api_keys": [{"id": "a", "key_sha256": _SHA}] * 2}}, "unique"),
        ({"auth": {"api_keys": [{"id": "a", "key_env": "BECARE_TEST_UNSET_VAR"}]}}, "BECARE_TEST_UNSET_VAR"),
        ({"auth": {"jwt": {"hs256_secret_env": "BECARE_TEST_SHORT_SECRET"}}}, "at least 32"),
        ({"auth": {"jwt": {"public_keys": ["missing.pem"]}}}, "missing.pem"),
        ({"max_body_bytes": "lots"}, "service.max_body_bytes"),
    ],
)
def test_service_config_errors(section: dict, needle: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BECARE_TEST_SHORT_SECRET", "short")
    with pytest.raises(ConfigError, match=needle):
        service_config_from_mapping(section)


def test_check_bind_requires_auth_beyond_loopback() -> None:
    open_cfg = ServiceConfig()
    assert check_bind("127.0.0.1", open_cfg) is None
    assert check_bind("::1", open_cfg) is None
    refusal = check_bind("0.0.0.0", open_cfg)
    assert refusal is not None and "authentication" in refusal
    secured = service_config_from_mapping({"auth": {"api_keys": [{"id": "a", "key_sha256": _SHA}]}})
    assert check_bind("0.0.0.0", secured) is None


def test_serve_refuses_open_bind_without_auth(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("BECARE_CONFIG", raising=False)
    code = becare(["serve", "--host", "0.0.0.0", "--port", "8099"])
    assert code == 2
    err = capsys.readouterr().err
    assert "refusing to listen on 0.0.0.0 without authentication" in err


def test_serve_reports_bad_config_with_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    bad = tmp_path / "bad.yaml"
    bad.write_text("service:\n  auth:\n    api_keys:\n      - {id: x}\n", encoding="utf-8")
    assert becare(["serve", "--config", str(bad)]) == 2
    assert "key_sha256 or key_env" in capsys.readouterr().err
    assert becare(["serve", "--config", str(tmp_path / "nope.yaml")]) == 2
    assert becare(["serve", "--port", "70000"]) == 2


def test_misspelt_service_keys_are_refused_not_ignored() -> None:
    from adapter.service.config import ConfigError, service_config_from_mapping

    for section, where in (
        ({"auth": {"apikeys": [{"id": "a", "key_sha256": _SHA}]}}, "service.auth"),
        ({"max_body_byte": 10}, "service"),
        ({"rate_limit": {"per_sec": 1}}, "service.rate_limit"),
        ({"auth": {"api_keys": [{"id": "a", "key_sha256": _SHA, "scope": ["validate"]}]}}, "api_keys[0]"),
    ):
        with pytest.raises(ConfigError, match="unknown key") as info:
            service_config_from_mapping(section)
        assert where in str(info.value)
    ok = service_config_from_mapping(
        {"auth": {"api_keys": [{"id": "a", "key_sha256": _SHA, "scopes": ["validate"]}]}}
    )
    assert ok.auth.api_keys[0].id == "a"
