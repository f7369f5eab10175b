"""A throwaway PostgreSQL server for the ``postgres`` tests.

Started once per session from the server binaries (``initdb``/``pg_ctl`` in
``/usr/lib/postgresql/*/bin`` or on PATH) in a temporary folder on a free loopback port, as the
``postgres`` user when the tests run as root (PostgreSQL refuses to run as root). Missing binaries
make the tests FAIL with the reason, never skip: CI installs them (``apt-get install postgresql``).

Use ``pg_url`` (the server, database ``postgres``) or ``pg_db`` (a fresh database per test).
Import both into a conftest: ``from tests.conftest_pg import pg_db, pg_url  # noqa: F401``.
"""

from __future__ import annotations

import glob
import os
import pwd
import re
import shlex
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

PG_USER = "becare"


def _bindir() -> Path | None:
    def version(path: str) -> tuple[int, ...]:
        return tuple(int(x) for x in re.findall(r"\d+", path.split("/postgresql/")[-1].split("/")[0]))

    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=version)
    if found:
        return Path(found[-1]).parent
    on_path = shutil.which("initdb")
    return Path(on_path).parent if on_path and shutil.which("pg_ctl") else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    bindir = _bindir()
    if bindir is None:
        pytest.fail(
            "PostgreSQL server binaries not found (looked for initdb and pg_ctl in /usr/lib/postgresql/*/bin "
            "and on PATH). Install them, e.g. `apt-get install -y postgresql`; these tests do not skip.",
            pytrace=False,
        )
    try:
        import psycopg  # noqa: F401
    except ModuleNotFoundError:
        pytest.fail("the psycopg driver is not installed: pip install 'psycopg[binary]'", pytrace=False)

    base = Path(tempfile.mkdtemp(prefix="becare-pg-"))
    if os.geteuid() == 0:  # PostgreSQL refuses to run as root
        try:
            owner = pwd.getpwnam("postgres")
        except KeyError:
            pytest.fail("running as root and there is no `postgres` user for the test server", pytrace=False)
        os.chown(base, owner.pw_uid, owner.pw_gid)
        as_root = True
    else:
        as_root = False
    data, log = base / "data", base / "server.log"
    port = _free_port()

    def command(args: list[str]) -> list[str]:
        if not as_root:
            return args
        if shutil.which("runuser"):
            return ["runuser", "-u", "postgres", "--", *args]
        return ["su", "postgres", "-s", "/bin/sh", "-c", shlex.join(args)]

    def run(args: list[str]) -> None:
        done = subprocess.run(command(args), capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            detail = log.read_text() if log.exists() else ""
            pytest.fail(f"{' '.join(args[:2])} failed: {done.stdout}{done.stderr}{detail}", pytrace=False)

    run([str(bindir / "initdb"), "-D", str(data), "-A", "trust", "-U", PG_USER, "-E", "UTF8", "--no-sync"])
    options = f"-p {port} -k {base} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200"
    run([str(bindir / "pg_ctl"), "-D", str(data), "-l", str(log), "-o", options, "-w", "-t", "60", "start"])
    try:
        yield f"postgresql+psycopg://{PG_USER}@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run(command([str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"]),
                       capture_output=True, timeout=60)
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def pg_db(pg_url: str) -> Iterator[str]:
    """A fresh, empty database on the session server; dropped afterwards."""
    import psycopg

    name = f"t_{uuid.uuid4().hex[:12]}"
    plain = pg_url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(plain, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    yield pg_url.rsplit("/", 1)[0] + f"/{name}"
    with psycopg.connect(plain, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
