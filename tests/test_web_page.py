"""The validation page at ``/``, driven in a real headless Chromium against the real service.

The service runs with uvicorn on a free loopback port and the real validator; the browser is
Debian's ``/usr/bin/chromium`` (installed by ``.ci/run``) driven by Playwright. The page must work
offline, so every request it makes is checked to stay on the service's own origin. The JSON
endpoints behind the rule explanations are tested over plain HTTP.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
import yaml

from adapter.fhirio import to_xml
from adapter.rules.catalog import RULE_SYSTEM, load_catalog
from adapter.service.app import create_app
from adapter.service.config import ApiKey, AuthConfig, RateLimit, ServiceConfig, hash_key
from adapter.validation import Validator
from adapter.validation.api import ValidationOptions

in_browser = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[1]
STATIC = ROOT / "adapter" / "web" / "static"
TEXTS: dict[str, dict[str, str]] = json.loads((STATIC / "i18n.json").read_text(encoding="utf-8"))
TEAM_SAMPLE = ROOT / "samples" / "rules" / "IC-TEAM-1" / "breaks.json"
API_KEY = "page-test-key-3f9a"
CHROMIUM = os.environ.get("BECARE_CHROMIUM", "/usr/bin/chromium")
WAIT_MS = 60_000


# -- the real service on loopback ----------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class LiveService:
    """``create_app`` served by uvicorn in a thread, as ``becare serve`` would serve it."""

    def __init__(self, config: ServiceConfig, validator: Validator) -> None:
        self.port = _free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        app = create_app(config, validator=validator)
        self.server = uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="on")
        )
        self.thread = threading.Thread(target=self.server.run, name="page-test-uvicorn", daemon=True)

    def __enter__(self) -> LiveService:
        self.thread.start()
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if httpx.get(self.base + "/readyz", timeout=2).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            assert self.thread.is_alive(), "uvicorn stopped during start-up"
            time.sleep(0.1)
        raise AssertionError("the service did not become ready within 120 s")

    def __exit__(self, *_exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=15)


@pytest.fixture(scope="module")
def validator() -> Validator:
    return Validator()


@pytest.fixture(scope="module")
def service(validator: Validator) -> Iterator[LiveService]:
    config = ServiceConfig(rate_limit=RateLimit(per_second=0, burst=1))
    with LiveService(config, validator) as live:
        yield live


@pytest.fixture(scope="module")
def secured(validator: Validator) -> Iterator[LiveService]:
    auth = AuthConfig(api_keys=(ApiKey(id="page", sha256=hash_key(API_KEY)),))
    config = ServiceConfig(rate_limit=RateLimit(per_second=0, burst=1), auth=auth)
    with LiveService(config, validator) as live:
        yield live


# -- the browser -----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not (Path(CHROMIUM).is_file() or shutil.which(CHROMIUM)):
        pytest.fail(
            f"Chromium not found at {CHROMIUM}: the validation page is tested in a real browser. "
            "Install it (.ci/run does: apt-get install chromium) or set BECARE_CHROMIUM to its path.",
            pytrace=False,
        )
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(
            executable_path=CHROMIUM, args=["--headless", "--no-sandbox", "--disable-gpu"]
        )
        try:
            yield chromium
        finally:
            chromium.close()


class PageRun:
    """One browser tab plus what it did that the page must never do."""

    def __init__(self, browser: Any, base: str, lang: str = "en") -> None:
        self.base = base
        self.context = browser.new_context(locale=lang, accept_downloads=True)
        self.foreign: list[str] = []
        self.script_errors: list[str] = []
        self.csp_violations: list[str] = []
        self.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=base)
        self.context.route("**/*", self._only_own_origin)
        self.page = self.context.new_page()
        self.page.on("pageerror", lambda exc: self.script_errors.append(str(exc)))
        self.page.on("console", self._console)
        self.page.goto(base + "/")
        self.page.wait_for_selector("body[data-ready=true]", timeout=WAIT_MS)

    def _only_own_origin(self, route: Any) -> None:
        url = route.request.url
        if url.startswith(self.base + "/") or url.startswith(("blob:", "data:")):
            route.continue_()
        else:  # offline: a CDN, font or analytics request would fail on a disconnected workstation
            self.foreign.append(url)
            route.abort()

    def _console(self, msg: Any) -> None:
        if "Content Security Policy" in msg.text:
            self.csp_violations.append(msg.text)

    def paste(self, text: str) -> None:
        """A real paste (clipboard, Ctrl+V) into the text area, as a user does it; typing a
        40 kB bundle key by key would take Playwright several seconds."""
        self.page.fill("#content", "")
        self.page.evaluate("text => navigator.clipboard.writeText(text)", text)
        self.page.focus("#content")
        self.page.keyboard.press("Control+V")
        assert self.page.input_value("#content") == text

    def wait_done(self, lang: str) -> None:
        self.page.wait_for_selector(f"body[data-state=done][data-lang={lang}]", timeout=WAIT_MS)

    def wait_error(self, lang: str) -> None:
        self.page.wait_for_selector(f"body[data-state=error][data-lang={lang}]", timeout=WAIT_MS)

    def rule_ids(self) -> set[str]:
        return set(
            self.page.eval_on_selector_all(
                "#groups li.issue[data-rule]", "els => els.map(e => e.dataset.rule)"
            )
        )

    def issue(self, rule_id: str) -> Any:
        return self.page.locator(f"#groups li.issue[data-rule='{rule_id}']").first

    def close(self) -> None:
        self.context.close()
        assert self.foreign == [], f"the page left its origin (not offline-safe): {self.foreign}"
        assert self.script_errors == [], f"JavaScript errors: {self.script_errors}"
        assert self.csp_violations == [], f"CSP violations: {self.csp_violations}"


@pytest.fixture
def run(browser: Any, service: LiveService) -> Iterator[PageRun]:
    tab = PageRun(browser, service.base)
    yield tab
    tab.close()


# -- helpers ---------------------------------------------------------------------------------------------
def _manifest() -> list[dict[str, Any]]:
    return yaml.safe_load((ROOT / "samples" / "manifest.yaml").read_text(encoding="utf-8"))["samples"]


def _expected(file: str) -> tuple[str, list[str]]:
    entry = next(s for s in _manifest() if s["file"] == file)
    return entry["region"], list(entry["expect"])


def _api_outcome(base: str, data: bytes, lang: str, region: str | None = None) -> dict[str, Any]:
    params = {"region": region} if region else {}
    r = httpx.post(
        base + "/fhir/$validate",
        content=data,
        params=params,
        timeout=60,
        headers={"Content-Type": "application/fhir+json", "Accept-Language": lang},
    )
    assert r.status_code == 200, r.text
    return r.json()


def _rule_issue(outcome: dict[str, Any], rule_id: str) -> dict[str, Any]:
    for issue in outcome["issue"]:
        codes = [
            c.get("code")
            for c in issue.get("details", {}).get("coding", [])
            if c.get("system") == RULE_SYSTEM
        ]
        if rule_id in codes:
            return issue
    raise AssertionError(f"{rule_id} not in the service's answer")


def _line(issue: dict[str, Any]) -> int:
    return next(e["valueInteger"] for e in issue["extension"] if e["url"].endswith("issue-line"))


def _col(issue: dict[str, Any]) -> int:
    return next(e["valueInteger"] for e in issue["extension"] if e["url"].endswith("issue-col"))


# -- the page in the browser ----------------------------------------------------------------------------
@in_browser
def test_upload_shows_rule_ids_switch_language_and_download(
    run: PageRun, service: LiveService, validator: Validator, tmp_path: Path
) -> None:
    page = run.page
    assert page.locator("h1").text_content() == TEXTS["en"]["heading"]
    page.set_input_files("#file", str(TEAM_SAMPLE))
    run.wait_done("en")

    region, expected = _expected("rules/IC-TEAM-1/breaks.json")
    assert set(expected) <= run.rule_ids()
    english = _api_outcome(service.base, TEAM_SAMPLE.read_bytes(), "en")
    api_issue = _rule_issue(english, "IC-TEAM-1")
    item = run.issue("IC-TEAM-1")
    # Under its severity, with its location, line and the resource it is about.
    group = page.locator("#groups section.group", has=page.locator("li.issue[data-rule='IC-TEAM-1']"))
    assert group.get_attribute("data-severity") == api_issue["severity"]
    assert group.locator("h3").text_content().startswith(TEXTS["en"][f"group.{api_issue['severity']}"])
    assert re.match(r"Bundle\.entry\[\d+\]", api_issue["expression"][0])
    assert item.locator(".resource").text_content().strip() == "in CareTeam"  # the sample has no ids
    assert item.locator(".expr").text_content() == api_issue["expression"][0]
    assert f"{_line(api_issue)}" in item.locator(".linecol").text_content()
    assert item.locator(".msg").text_content() == api_issue["details"]["text"]
    # The rule's explanation comes from the catalog.
    rule = load_catalog().rule("IC-TEAM-1")
    item.locator("details.explain summary").click()
    explanation = item.locator("details.explain").text_content()
    assert rule.title["en"] in explanation
    assert rule.fix["en"] in explanation
    assert rule.source in explanation
    # ... and shows the example that breaks the rule, as the service computes it from the rule's
    # breaking sample: here the very file uploaded, so it is this issue, location and message.
    example = httpx.get(service.base + "/rules/IC-TEAM-1", params={"lang": "en"}).json()["example"]
    assert example["sample"] == "rules/IC-TEAM-1/breaks.json"
    assert (example["location"], example["message"]) == (
        api_issue["expression"][0],
        api_issue["details"]["text"],
    )
    box = item.locator("details.explain .example[data-state=shown]")
    box.wait_for(timeout=WAIT_MS)
    assert box.locator(".ex-location").text_content() == example["location"]
    assert box.locator(".ex-message").text_content() == example["message"]
    shown = json.loads(box.locator(".ex-fragment").text_content())
    assert shown == example["fragment"] and shown["resourceType"] == "CareTeam"
    assert TEXTS["en"]["rule.example"] in box.text_content() and example["sample"] in box.text_content()

    page.select_option("#lang", "fr")
    run.wait_done("fr")
    assert page.locator("h1").text_content() == TEXTS["fr"]["heading"]
    assert page.locator("#download").text_content() == TEXTS["fr"]["download"]
    assert page.evaluate("document.documentElement.lang") == "fr"
    french = _rule_issue(_api_outcome(service.base, TEAM_SAMPLE.read_bytes(), "fr"), "IC-TEAM-1")
    message_fr = run.issue("IC-TEAM-1").locator(".msg").text_content()
    assert message_fr == french["details"]["text"]
    assert message_fr != api_issue["details"]["text"]
    assert rule.title["fr"] in run.issue("IC-TEAM-1").locator("details.explain summary").text_content()
    run.issue("IC-TEAM-1").locator("details.explain summary").click()
    box = run.issue("IC-TEAM-1").locator("details.explain .example[data-state=shown]")
    box.wait_for(timeout=WAIT_MS)
    assert box.locator(".ex-message").text_content() == message_fr  # the example in French too
    assert TEXTS["fr"]["rule.example.location"] in box.text_content()

    with page.expect_download() as info:
        page.click("#download")
    download = info.value
    assert download.suggested_filename.endswith(".json")
    target = tmp_path / download.suggested_filename
    download.save_as(target)
    outcome = json.loads(target.read_text(encoding="utf-8"))
    assert outcome["resourceType"] == "OperationOutcome"
    codes = {
        c["code"]
        for i in outcome["issue"]
        for c in i.get("details", {}).get("coding", [])
        if c.get("system") == RULE_SYSTEM
    }
    assert set(expected) <= codes
    assert _rule_issue(outcome, "IC-TEAM-1")["details"]["text"] == french["details"]["text"]
    report = validator.validate(outcome, ValidationOptions(region=region))
    assert not report.has_errors, [i.message for i in report.issues]


@in_browser
def test_pasted_xml_with_a_chosen_region(run: PageRun, service: LiveService) -> None:
    file = "rules/IC-CC-2/breaks-wallonia.json"
    region, expected = _expected(file)
    bundle = json.loads((ROOT / "samples" / file).read_text(encoding="utf-8"))
    page = run.page
    page.select_option("#lang", "nl")
    run.paste(to_xml(bundle))
    page.select_option("#region", region)
    page.click("#validate")
    run.wait_done("nl")
    assert set(expected) <= run.rule_ids()
    api = _rule_issue(_api_outcome(service.base, json.dumps(bundle).encode(), "nl", region), "IC-CC-2")
    item = run.issue("IC-CC-2")
    assert item.locator(".msg").text_content() == api["details"]["text"]
    assert item.locator(".badge").text_content() == TEXTS["nl"][f"severity.{api['severity']}"]
    # The region selector's labels come from the catalog in the page's language.
    label = page.locator(f"#region option[value='{region}']").text_content()
    assert label == load_catalog().regions[region].label("nl")


@in_browser
def test_garbage_paste_shows_a_clear_error(run: PageRun) -> None:
    page = run.page
    page.click("#validate")
    run.wait_error("en")
    assert page.locator("#error-title").text_content() == TEXTS["en"]["error.empty"]

    run.paste("this is not a FHIR resource")
    page.click("#validate")
    page.wait_for_selector("#error-details li", timeout=WAIT_MS)
    assert page.locator("#error-title").text_content() == TEXTS["en"]["error.http"].replace("{status}", "400")
    assert "cannot be parsed" in page.locator("#error-details").text_content()
    assert page.locator("#results").is_hidden()

    page.select_option("#lang", "de")
    run.wait_error("de")
    page.wait_for_function("document.getElementById('error-details').textContent.includes('nicht gelesen')")
    assert page.locator("#error-title").text_content() == TEXTS["de"]["error.http"].replace("{status}", "400")


@in_browser
def test_messages_quoting_user_data_are_not_markup(run: PageRun) -> None:
    bundle = json.loads(TEAM_SAMPLE.read_text(encoding="utf-8"))
    hostile = '<img src=x onerror="window.__owned=1">'
    patient = next(e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Patient")
    patient["gender"] = hostile
    page = run.page
    run.paste(json.dumps(bundle))
    page.click("#validate")
    run.wait_done("en")
    assert hostile in page.locator("#groups").text_content()
    assert page.locator("#groups img").count() == 0
    assert page.evaluate("window.__owned") is None


def _without_narrative_two_errors() -> dict[str, Any]:
    """The flanders sample with no narrative anywhere (a dom-6 warning per resource) and two wrong
    task statuses near its end: two errors of one kind whose messages quote different values."""
    bundle = json.loads((ROOT / "samples" / "valid" / "flanders-care-coordination.json").read_text("utf-8"))
    for entry in bundle["entry"]:
        entry["resource"].pop("text", None)
    tasks = [e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Task"]
    tasks[-2]["status"] = "bogus"
    tasks[-1]["status"] = "wrong"
    return bundle


def _message_id(issue: dict[str, Any]) -> str | None:
    return next((e["valueString"] for e in issue["extension"] if e["url"].endswith("message-id")), None)


@in_browser
def test_errors_first_repeated_warnings_folded_and_a_severity_filter(
    run: PageRun, service: LiveService, tmp_path: Path
) -> None:
    bundle = _without_narrative_two_errors()
    text = json.dumps(bundle, indent=2)
    api = _api_outcome(service.base, text.encode(), "en")
    errors = [i for i in api["issue"] if i["severity"] == "error"]
    dom6 = [i for i in api["issue"] if _message_id(i) == "dom-6"]
    assert len(errors) == 2 and len(dom6) == len(bundle["entry"])
    assert api["issue"].index(errors[0]) >= 17  # in document order the errors sit below the warnings

    page = run.page
    run.paste(text)
    page.click("#validate")
    run.wait_done("en")
    severities = page.eval_on_selector_all("#groups section.group", "els => els.map(e => e.dataset.severity)")
    assert severities == ["error", "warning", "information"]
    # The two errors come first, in document order, each on its own row: same code, other values.
    rows = page.locator("#groups li.issue")
    messages = [e["details"]["text"] for e in errors]
    assert [rows.nth(k).locator(".msg").text_content() for k in (0, 1)] == messages
    assert all("sev-error" in (rows.nth(k).get_attribute("class") or "") for k in (0, 1))
    assert "'bogus'" in messages[0] and "'wrong'" in messages[1]
    # Every missing narrative: one row with the count ...
    folded = page.locator("#groups li.issue", has_text=dom6[0]["details"]["text"])
    assert folded.count() == 1
    row = folded.first
    assert "sev-warning" in (row.get_attribute("class") or "")
    assert row.get_attribute("data-count") == str(len(dom6))
    assert row.locator(".times").text_content() == f"×{len(dom6)}"
    # ... and its places, listed when opened: document order, line and column, the resource.
    summary = row.locator("details.locations summary")
    assert summary.text_content() == TEXTS["en"]["fold.locations"].replace("{n}", str(len(dom6)))
    summary.click()
    row.locator(".loc-item").first.wait_for(timeout=WAIT_MS)
    assert row.locator(".loc-item .expr").all_text_contents() == [i["expression"][0] for i in dom6]
    assert row.locator(".loc-item .linecol").all_text_contents() == [
        " " + TEXTS["en"]["loc.line"].format(line=_line(i), col=_col(i)) for i in dom6
    ]
    first = bundle["entry"][0]["resource"]
    resource = row.locator(".loc-item .resource").first.text_content()
    assert resource == " in " + first["resourceType"] + (f"/{first['id']}" if "id" in first else "")

    # The severity filter: one box per severity present, with its count.
    def box(severity: str) -> Any:
        return page.locator(f"#filter input[data-severity='{severity}']")

    def section(severity: str) -> Any:
        return page.locator(f"#groups section.group[data-severity='{severity}']")

    boxes = page.eval_on_selector_all("#filter input", "els => els.map(e => e.dataset.severity)")
    assert boxes == ["error", "warning", "information"]
    assert all(box(s).is_checked() for s in boxes)
    warnings_label = TEXTS["en"]["filter.warning"].replace("{n}", str(len(dom6)))
    assert page.locator("#filter label.sev-warning").text_content() == warnings_label
    assert page.locator("#filtered").is_hidden()
    box("warning").uncheck()
    assert section("warning").is_hidden()
    assert section("error").is_visible() and section("information").is_visible()
    hidden = TEXTS["en"]["filter.hidden"]
    assert page.locator("#filtered").text_content() == hidden.replace("{n}", str(len(dom6)))
    box("error").uncheck()
    assert section("error").is_hidden()
    assert page.locator("#filtered").text_content() == hidden.replace("{n}", str(len(dom6) + 2))
    box("error").check()
    assert section("error").is_visible() and section("warning").is_hidden()
    # The choice outlives a re-validation in another language.
    page.select_option("#lang", "fr")
    run.wait_done("fr")
    assert not box("warning").is_checked() and box("error").is_checked()
    assert section("warning").is_hidden() and section("error").is_visible()
    french_label = TEXTS["fr"]["filter.warning"].replace("{n}", str(len(dom6)))
    assert page.locator("#filter label.sev-warning").text_content() == french_label
    assert section("error").locator("h3").text_content().startswith(TEXTS["fr"]["group.error"])
    box("warning").check()
    assert section("warning").is_visible() and page.locator("#filtered").is_hidden()

    # The download is still the service's OperationOutcome: one issue per finding, nothing folded.
    with page.expect_download() as info:
        page.click("#download")
    target = tmp_path / "outcome.json"
    info.value.save_as(target)
    outcome = json.loads(target.read_text(encoding="utf-8"))
    assert len(outcome["issue"]) == len(api["issue"])
    assert sum(1 for i in outcome["issue"] if _message_id(i) == "dom-6") == len(dom6)


@in_browser
def test_the_page_works_when_the_service_requires_an_api_key(browser: Any, secured: LiveService) -> None:
    assert httpx.post(secured.base + "/fhir/$validate", content=b"{}").status_code == 401
    tab = PageRun(browser, secured.base, lang="fr-BE")
    try:
        page = tab.page
        assert page.locator("h1").text_content() == TEXTS["fr"]["heading"]  # from the browser's locale
        tab.paste(TEAM_SAMPLE.read_text(encoding="utf-8"))
        page.click("#validate")
        tab.wait_error("fr")
        assert page.locator("#error-title").text_content() == TEXTS["fr"]["error.auth"]
        page.click("#auth summary")
        page.fill("#apikey", API_KEY)
        page.press("#apikey", "Enter")
        tab.wait_done("fr")
        assert "IC-TEAM-1" in tab.rule_ids()
    finally:
        tab.close()


# -- the page's HTTP surface -----------------------------------------------------------------------------
def test_page_and_assets_are_served_with_a_strict_policy(service: LiveService) -> None:
    r = httpx.get(service.base + "/")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/html")
    csp = r.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "default-src 'none'" in csp
    for name, media in (
        ("app.js", "text/javascript"),
        ("style.css", "text/css"),
        ("i18n.json", "application/json"),
    ):
        asset = httpx.get(f"{service.base}/ui/{name}")
        assert asset.status_code == 200 and asset.headers["content-type"].startswith(media)
        assert asset.content == (STATIC / name).read_bytes()
    missing = httpx.get(service.base + "/ui/..%2Fweb%2Froutes.py")
    assert missing.status_code == 404
    assert missing.json()["resourceType"] == "OperationOutcome"


def test_rules_endpoint_in_each_language(service: LiveService) -> None:
    catalog = load_catalog()
    for lang in ("en", "fr", "nl", "de"):
        r = httpx.get(service.base + "/rules", params={"lang": lang})
        assert r.status_code == 200
        body = r.json()
        assert body["lang"] == lang and body["version"] == catalog.version
        assert [rule["id"] for rule in body["rules"]] == [rule.id for rule in catalog.rules]
        first = body["rules"][0]
        assert first["title"] == catalog.rules[0].title[lang]
        assert first["fix"] == catalog.rules[0].fix[lang]
        assert {r["id"] for r in body["regions"]} == set(catalog.regions)
    negotiated = httpx.get(service.base + "/rules", headers={"Accept-Language": "nl-BE,fr;q=0.5"})
    assert negotiated.json()["lang"] == "nl"


def test_one_rule_and_its_errors(service: LiveService) -> None:
    catalog = load_catalog()
    r = httpx.get(service.base + "/rules/ic-cc-2", params={"lang": "de"})
    assert r.status_code == 200
    body = r.json()
    rule = catalog.rule("IC-CC-2")
    assert body["id"] == "IC-CC-2" and body["regional"] is True
    assert body["severity"] == rule.severity
    assert body["title"] == rule.title["de"]
    assert rule.source in body["explanation"]
    assert body["source"] == rule.source and body["fix"] == rule.fix["de"]  # what the page reads
    # the example that breaks the rule: what the service itself says about that sample
    example = body["example"]
    region, _ = _expected(example["sample"])
    sample = (ROOT / "samples" / example["sample"]).read_bytes()
    api = _rule_issue(_api_outcome(service.base, sample, "de", region), "IC-CC-2")
    assert example["location"] == api["expression"][0]
    assert example["message"] == api["details"]["text"] and example["severity"] == api["severity"]
    assert example["region"] == region and example["region_label"] == catalog.regions[region].label("de")
    assert json.loads(example["fragment_text"]) == example["fragment"]
    at = re.match(r"Bundle\.entry\[(\d+)\]", example["location"])
    assert at is not None
    breaking = json.loads(sample)["entry"][int(at.group(1))]["resource"]
    assert example["fragment"]["resourceType"] == breaking["resourceType"]

    unknown = httpx.get(service.base + "/rules/IC-NOPE-9", headers={"Accept-Language": "fr"})
    assert unknown.status_code == 404
    assert unknown.json()["resourceType"] == "OperationOutcome"
    assert "Introuvable" in unknown.json()["issue"][0]["details"]["text"]

    bad = httpx.get(service.base + "/rules", params={"lang": "xx"})
    assert bad.status_code == 400
    assert bad.json()["resourceType"] == "OperationOutcome"
    assert "lang" in bad.json()["issue"][0]["details"]["text"]


def test_rules_endpoints_stay_public_when_auth_is_configured(secured: LiveService) -> None:
    assert httpx.get(secured.base + "/").status_code == 200
    assert httpx.get(secured.base + "/rules/IC-TEAM-1").status_code == 200


# -- the static files themselves -------------------------------------------------------------------------
def test_every_text_of_the_page_exists_in_four_languages() -> None:
    assert set(TEXTS) == {"en", "fr", "nl", "de"}
    keys = set(TEXTS["en"])
    for lang, table in TEXTS.items():
        assert set(table) == keys, f"{lang}: {sorted(set(table) ^ keys)}"
        assert all(isinstance(v, str) and v.strip() for v in table.values()), lang
    html = (STATIC / "index.html").read_text(encoding="utf-8")
    js = (STATIC / "app.js").read_text(encoding="utf-8")
    used = set(re.findall(r'data-i18n(?:-placeholder)?="([^"]+)"', html))
    used |= set(re.findall(r'\bt\("([a-z.]*[a-z])"', js))
    used |= {f"severity.{s}" for s in ("fatal", "error", "warning", "information", "off")}
    severities = ("fatal", "error", "warning", "information")
    used |= {f"{kind}.{s}" for kind in ("group", "filter") for s in severities}  # t("group." + severity)
    assert used <= keys, sorted(used - keys)


def test_no_external_resources_and_no_markup_injection() -> None:
    html = (STATIC / "index.html").read_text(encoding="utf-8")
    css = (STATIC / "style.css").read_text(encoding="utf-8")
    js = (STATIC / "app.js").read_text(encoding="utf-8")
    assert not re.search(r'(src|href)="(https?:)?//', html)
    assert "<script>" not in html  # no inline script: every script has a src
    assert not re.search(r"\son[a-z]+\s*=", html)  # no inline event handlers
    assert not re.search(r"@import|url\(", css)
    assert not re.search(r"\.innerHTML|outerHTML|insertAdjacentHTML|document\.write", js)
    assert not re.search(r"fetch\(\s*[\"']https?:", js)
