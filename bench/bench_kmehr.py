"""What sending a bundle to a Belgian hub costs, next to validating the same bundle.

Usage: ``python bench/bench_kmehr.py [--rounds N] [--quick]`` from the repo root.

Measured in one process, interleaved (round after round, every function on every sample in
turn, so a noisy spell of the machine weighs on all of them alike), CPU time per call
(``time.process_time``), best-of-N and median:

1. validation: bytes in -> OperationOutcome bytes out, the service/CLI path
   (``Validator.validate_bytes`` = fhirio parse with positions + structure/profiles + rulebook,
   then ``Report.outcome()`` rendered as JSON);
2. KMEHR writing: ``to_kmehr(version="1.26", sender, recipient, transaction_id)`` (includes its
   XSD check) serialised to bytes as ``to_kmehr_bytes`` does;
3. encryption: ``encrypt_folders`` with ``encryptor_for_etk`` (CMS EnvelopedData for the hub's
   ETK, looked up through a cached ``EtkClient``);
4. envelope: what ``HubClient._call`` does before sending: ``messages.put_transaction`` +
   ``normalised`` + hub XSD check + SOAP ``wrap`` + ``SamlSecurity.apply`` (= ``wssecurity.secure``
   with the cached STS token) + ``serialize``.

plus, as a cross-check of 3+4, the real ``HubClient.put_transaction`` with a transport that
answers a canned acknowledge (it also re-checks the KMEHR XSD and parses the reply), and the
whole round trip against the loopback ``MockEHealthServer`` (sequential puts, wall time).

The STS token comes from ``MockSts`` through a real ``StsClient`` (in-process transport), the
credential from ``make_pki``; nothing leaves the machine.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
from lxml import etree  # noqa: E402

from adapter.ehealth.credentials import load_pkcs12_bytes  # noqa: E402
from adapter.ehealth.etk import EtkClient, EtkIdentifier  # noqa: E402
from adapter.ehealth.sts import StsClient  # noqa: E402
from adapter.hubservices import HubClient, SamlSecurity, messages  # noqa: E402
from adapter.hubservices import envelope as soap  # noqa: E402
from adapter.hubservices.encryption import encrypt_folders, encryptor_for_etk  # noqa: E402
from adapter.kmehr import Party, Sender, schemas, to_kmehr  # noqa: E402
from adapter.testing.ehealth.etk import MockEtkDepot  # noqa: E402
from adapter.testing.ehealth.hub import MockHub  # noqa: E402
from adapter.testing.ehealth.pki import make_pki  # noqa: E402
from adapter.testing.ehealth.server import MockEHealthServer  # noqa: E402
from adapter.testing.ehealth.sts import MockSts  # noqa: E402
from adapter.validation.api import ValidationOptions  # noqa: E402
from adapter.validation.engine import Validator  # noqa: E402

SAMPLES = ROOT / "samples" / "valid"
MAIN_SAMPLE = "flanders-care-coordination.json"
HUB = "flanders"  # hubservices 3.5 at the mock server: KMEHR 1.26
HUB_VERSION = "3.5"
KMEHR_VERSION = schemas.KMEHR_FOR_HUB[HUB_VERSION]
SENDER = Sender(organisation=Party(nihii="71000436000", cbe="0123456749", name="Test Care Organisation"))
RECIPIENT = Party(nihii="19990001000", cd="hub", name="Test Hub Flanders")
JSON_TYPE = "application/fhir+json"


def outcome_bytes(outcome: dict[str, Any]) -> bytes:
    """The service's JSON rendering of an OperationOutcome (``rendering.dump_json``)."""
    try:
        from adapter.service.rendering import dump_json
    except ImportError:  # service extras not installed: the same compact JSON
        return json.dumps(outcome, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    return dump_json(outcome)


def in_process(handle: Callable[[bytes, Any], tuple[Any, ...]]) -> httpx.MockTransport:
    """An httpx transport answering with a mock's ``handle(body, headers)`` (no socket)."""

    def handler(request: httpx.Request) -> httpx.Response:
        status, *rest = handle(request.read(), dict(request.headers))
        headers, body = (rest[0], rest[1]) if len(rest) == 2 else ({"Content-Type": "text/xml"}, rest[0])
        return httpx.Response(status, headers=headers, content=body)

    return httpx.MockTransport(handler)


class Sample:
    def __init__(self, path: Path) -> None:
        self.name = path.stem
        self.data = path.read_bytes()
        self.bundle = json.loads(self.data)
        self.entries = len(self.bundle.get("entry", []))
        self.message = self.write_kmehr()[0]
        self.inss = messages.folder_patient_ids(self.message)[0]
        self.kmehr_size = len(self.write_kmehr()[1])
        self.encrypted: etree._Element | None = None
        self.envelope_size = 0

    def write_kmehr(self) -> tuple[etree._Element, bytes]:
        message = to_kmehr(
            self.bundle,
            version=KMEHR_VERSION,
            sender=SENDER,
            recipient=RECIPIENT,
            transaction_id=f"becare-{uuid.uuid4()}",
        )
        data = etree.tostring(message, xml_declaration=True, encoding="UTF-8", pretty_print=True)
        return message, data


class Offline:
    """Everything the hub client needs, with the STS, the ETK depot and the hub in-process."""

    def __init__(self, directory: Path) -> None:
        pki = make_pki(directory)
        self.credential = load_pkcs12_bytes(pki.org_p12.read_bytes(), pki.password.encode(), source="org.p12")
        sts = MockSts(pki.sts_key, pki.sts_cert, trusted=[pki.ca_cert])
        self.sts_client = StsClient(
            "http://sts.invalid/sts", self.credential, transport=in_process(sts.handle)
        )
        depot = MockEtkDepot({("CBE", pki.hub_cbe, ""): (pki.hub_key, pki.hub_cert)})
        self.etk = EtkClient("http://etk.invalid/etk", transport=in_process(depot.handle))
        self.encrypt = encryptor_for_etk(self.etk, EtkIdentifier("CBE", pki.hub_cbe))
        self.security = SamlSecurity(self.sts_client, self.credential)
        # a verifying, decrypting hub: answers the first request of each sample for real (so the
        # envelopes measured are known to pass), the later ones get that reply again
        self.hub = MockHub(
            hub_version=HUB_VERSION,
            sts_certificates=[pki.sts_cert],
            decrypt_key=pki.hub_key,
            decrypt_cert=pki.hub_cert,
            default_consent=True,
        )
        self.canned: bytes | None = None
        self.client = HubClient(
            "http://hub.invalid/hub/flanders",
            hub_version=HUB_VERSION,
            security=self.security,
            author=SENDER,
            encrypt_for_hub=self.encrypt,
            transport=httpx.MockTransport(self._answer),
        )

    def _answer(self, request: httpx.Request) -> httpx.Response:
        if self.canned is None:
            status, _headers, body = self.hub.handle(request.read(), dict(request.headers))
            if status != 200 or b"Base64EncryptedData" not in request.read():
                raise SystemExit(f"the mock hub refused the offline request: HTTP {status}: {body[:300]!r}")
            self.canned = body
        return httpx.Response(200, headers={"Content-Type": "text/xml"}, content=self.canned)

    def envelope(self, encrypted: etree._Element) -> bytes:
        """``HubClient.put_transaction`` after the encryption, up to the bytes it POSTs."""
        info = messages.request_info(self.client.author, datetime.now(UTC))
        body = messages.normalised(messages.put_transaction(info, encrypted))
        errors = schemas.problems("hub", HUB_VERSION, body)
        if errors:
            raise SystemExit(f"PutTransactionRequest not XSD-valid: {errors[:2]}")
        return soap.serialize(self.security.apply(soap.wrap(body)))

    def close(self) -> None:
        self.client.close()
        self.sts_client.close()
        self.etk.close()


def measure(fns: dict[str, Callable[[], Any]], rounds: int) -> dict[str, list[float]]:
    """CPU seconds of each call, the functions taken in turn each round (A B C A B C ...)."""
    times: dict[str, list[float]] = {k: [] for k in fns}
    for fn in fns.values():  # warm-up
        fn()
    for _ in range(rounds):
        for key, fn in fns.items():
            t = time.process_time()
            fn()
            times[key].append(time.process_time() - t)
    return times


def round_trip(directory: Path, sample: Sample, puts: int) -> tuple[float, float, float, int]:
    """Sequential PutTransactions against the loopback mock eHealth server: (calls/s, p50 s, p99 s,
    transactions stored)."""
    with MockEHealthServer(directory) as server:
        credential = load_pkcs12_bytes(
            server.pki.org_p12.read_bytes(), server.pki.password.encode(), source="org.p12"
        )
        hub = server.hubs[HUB]
        hub.set_consent(sample.inss, True)
        sts = StsClient(server.sts_url, credential)
        etk = EtkClient(server.etk_url)
        client = HubClient(
            server.hub_url(HUB),
            hub_version=hub.hub_version,
            security=SamlSecurity(sts, credential),
            author=SENDER,
            encrypt_for_hub=encryptor_for_etk(etk, EtkIdentifier("CBE", server.hub_cbe[HUB])),
        )
        try:
            for _ in range(3):  # STS token, ETK, connections
                client.put_transaction(sample.message, patient_inss=sample.inss)
            latencies = []
            start = time.perf_counter()
            for _ in range(puts):
                t = time.perf_counter()
                client.put_transaction(sample.message, patient_inss=sample.inss)
                latencies.append(time.perf_counter() - t)
            elapsed = time.perf_counter() - start
            stored = len(hub.stored(sample.inss))
        finally:
            client.close()
            sts.close()
            etk.close()
    latencies.sort()
    p99 = latencies[min(len(latencies) - 1, round(0.99 * (len(latencies) - 1)))]
    return puts / elapsed, statistics.median(latencies), p99, stored


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=None, help="interleaved rounds (default 450, quick 5)")
    parser.add_argument("--puts", type=int, default=None, help="round-trip puts (default 300, quick 30)")
    parser.add_argument("--quick", action="store_true", help="a few rounds only (smoke test, < 20 s)")
    args = parser.parse_args(argv)
    rounds = args.rounds or (5 if args.quick else 450)
    puts = args.puts or (30 if args.quick else 300)
    started = time.perf_counter()

    paths = sorted(SAMPLES.glob("*.json"))
    samples = [Sample(p) for p in paths]
    main_sample = next(s for s in samples if s.name + ".json" == MAIN_SAMPLE)
    validator = Validator()
    options = ValidationOptions()

    with tempfile.TemporaryDirectory(prefix="bench-kmehr-") as tmp:
        off = Offline(Path(tmp) / "pki")
        fns: dict[str, Callable[[], Any]] = {}
        for s in samples:
            s.encrypted = encrypt_folders(messages.as_kmehr_message(s.message), off.encrypt)
            s.envelope_size = len(off.envelope(s.encrypted))
            off.canned = None
            off.client.put_transaction(s.message, patient_inss=s.inss)  # the mock hub accepts it
            if off.hub.request_log()[-1]["status"] != 200:
                raise SystemExit(f"{s.name}: the mock hub did not accept the put")

            def validate(s: Sample = s) -> bytes:
                return outcome_bytes(validator.validate_bytes(s.data, JSON_TYPE, options).outcome())

            fns[f"{s.name}/validate"] = validate
            fns[f"{s.name}/kmehr"] = s.write_kmehr
            fns[f"{s.name}/encrypt"] = lambda s=s: encrypt_folders(
                messages.as_kmehr_message(s.message), off.encrypt
            )
            fns[f"{s.name}/envelope"] = lambda s=s: off.envelope(s.encrypted)
            fns[f"{s.name}/client"] = lambda s=s: off.client.put_transaction(s.message, patient_inss=s.inss)
            fns[f"{s.name}/xsd"] = lambda s=s: schemas.problems("kmehr", KMEHR_VERSION, s.message)
        valid = validator.validate_bytes(main_sample.data, JSON_TYPE, options)
        if valid.has_errors:
            raise SystemExit(f"{main_sample.name} does not validate")
        times = measure(fns, rounds)
        off.close()
        rate, p50, p99, stored = round_trip(Path(tmp) / "ehealth", main_sample, puts)

    best = {k: min(v) * 1000 for k, v in times.items()}
    med = {k: statistics.median(v) * 1000 for k, v in times.items()}

    def out(stat: dict[str, float], name: str) -> float:
        return stat[f"{name}/kmehr"] + stat[f"{name}/encrypt"] + stat[f"{name}/envelope"]

    print("becare: cost of sending a bundle to a hub (KMEHR out) vs validating it")
    print(
        f"machine: {os.cpu_count()} CPUs, Python {platform.python_version()} ({platform.machine()}, "
        f"{platform.system()}); {rounds} interleaved rounds, CPU ms per call (best / median)"
    )
    print(
        "  validation  bytes -> Validator.validate_bytes (parse, profiles, rulebook) -> OperationOutcome JSON"
    )
    print(f"  kmehr       to_kmehr(version={KMEHR_VERSION}, with XSD check, Bundle attached) + serialise")
    print("  encrypt     encrypt_folders, CMS EnvelopedData (AES-256, RSA) for the hub ETK")
    print(
        "  envelope    PutTransaction body + hub XSD check + SOAP wrap + WS-Security (SAML HoK, RSA-SHA256)"
        " + serialise"
    )
    print("  KMEHR out   kmehr + encrypt + envelope")
    print(
        "  client      HubClient.put_transaction offline (canned ack): KMEHR XSD re-check + encrypt +"
        " envelope + reply parse"
    )
    print("  (kmehr XSD  schemas.problems on the written message alone: part of kmehr, repeated in client)")
    s = main_sample
    n = s.name
    print(
        f"\n{n}: {s.entries} entries, bundle {len(s.data) / 1024:.1f} KB, "
        f"KMEHR message {s.kmehr_size / 1024:.1f} KB (Bundle attached), "
        f"encrypted signed envelope {s.envelope_size / 1024:.1f} KB"
    )
    rows = [
        ("1 validation", f"{n}/validate"),
        ("2 kmehr", f"{n}/kmehr"),
        ("  of which KMEHR XSD", f"{n}/xsd"),
        ("3 encrypt", f"{n}/encrypt"),
        ("4 envelope", f"{n}/envelope"),
    ]
    for label, key in rows:
        print(f"  {label:<22}{best[key]:8.2f} ms  {med[key]:8.2f} ms")
    print(f"  {'5 KMEHR out (2+3+4)':<22}{out(best, n):8.2f} ms  {out(med, n):8.2f} ms")
    print(f"  {'  client put offline':<22}{best[n + '/client']:8.2f} ms  {med[n + '/client']:8.2f} ms")
    print(
        f"  {'ratio out/validation':<22}{out(best, n) / best[n + '/validate']:8.2f} x  "
        f"{out(med, n) / med[n + '/validate']:8.2f} x"
    )

    print(
        "\nper sample (best-of-N CPU ms): entries, bundle KB, validation, kmehr, encrypt, envelope, out, "
        "out/validation, KMEHR KB, envelope KB"
    )
    print(
        f"  {'sample':<36}{'ent':>4}{'KB':>6}{'valid':>8}{'kmehr':>7}{'encr':>6}{'env':>6}{'out':>7}"
        f"{'ratio':>7}{'kmehrKB':>8}{'envKB':>7}"
    )
    cols: dict[str, list[float]] = {}
    for s in samples:
        n = s.name
        row = {
            "ent": s.entries,
            "KB": len(s.data) / 1024,
            "valid": best[f"{n}/validate"],
            "kmehr": best[f"{n}/kmehr"],
            "encr": best[f"{n}/encrypt"],
            "env": best[f"{n}/envelope"],
            "out": out(best, n),
            "kmehrKB": s.kmehr_size / 1024,
            "envKB": s.envelope_size / 1024,
        }
        row["ratio"] = row["out"] / row["valid"]
        for k, v in row.items():
            cols.setdefault(k, []).append(v)
        print(_row(n, row))
    mean = {k: statistics.mean(v) for k, v in cols.items()}
    print(_row(f"mean of {len(samples)}", mean))

    print(
        f"\nhub round trip on loopback ({HUB} mock hub, hubservices {HUB_VERSION}, {main_sample.name}): "
        f"{puts} sequential HubClient.put_transaction calls, wall time; includes the mock hub's own "
        "signature/SAML verification, decryption and XSD checks, in this process (shared GIL)"
    )
    print(f"  {rate:8.1f} puts/s   p50 {p50 * 1000:7.2f} ms   p99 {p99 * 1000:7.2f} ms   ({stored} stored)")

    print("\nratios")
    n = main_sample.name
    print(
        f"  KMEHR out / validation, {n}: {out(best, n) / best[n + '/validate']:.2f}x (best), "
        f"{out(med, n) / med[n + '/validate']:.2f}x (median)"
    )
    print(f"  KMEHR out / validation, mean of samples (best): {mean['ratio']:.2f}x")
    print(
        f"  shares of KMEHR out (mean, best): kmehr {mean['kmehr'] / mean['out']:.0%}, encrypt "
        f"{mean['encr'] / mean['out']:.0%}, envelope {mean['env'] / mean['out']:.0%}"
    )
    print(f"  round-trip p50 / validation, {n}: {p50 * 1000 / best[n + '/validate']:.2f}x")
    print(f"(total run {time.perf_counter() - started:.1f} s)")
    return 0


def _row(name: str, r: dict[str, float]) -> str:
    return (
        f"  {name:<36}{r['ent']:4.0f}{r['KB']:6.1f}{r['valid']:8.2f}{r['kmehr']:7.2f}{r['encr']:6.2f}"
        f"{r['env']:6.2f}{r['out']:7.2f}{r['ratio']:6.2f}x{r['kmehrKB']:8.1f}{r['envKB']:7.1f}"
    )


if __name__ == "__main__":
    raise SystemExit(main())
