"""A real PostgreSQL server for the tests, from Debian's packages (postgresql-NN: initdb and
pg_ctl under /usr/lib/postgresql/NN/bin): a fresh cluster in a temporary folder, on a port
picked by binding port 0 and reading it back, stopped and removed afterwards. As root (CI)
the server runs as the ``postgres`` user the package creates (PostgreSQL refuses root)."""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest


def postgres_bin() -> Path | None:
    """The bin folder of the newest PostgreSQL installed from Debian's packages."""
    found = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4])
    )
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def postgres_server() -> Iterator[str]:
    """A running server; yields the URL of its database ``verdicts`` (user ``alert``)."""
    bindir = postgres_bin()
    if bindir is None:
        if os.environ.get("CI"):
            pytest.fail(
                "PostgreSQL is missing in CI: .ci/run installs the Debian package postgresql"
            )
        pytest.skip("PostgreSQL binaries not installed (Debian package postgresql)")
    root = Path(tempfile.mkdtemp(prefix="alert-anomaly-pg-"))
    prefix: list[str] = []
    if os.geteuid() == 0:
        user = pwd.getpwnam("postgres")
        os.chown(root, user.pw_uid, user.pw_gid)
        prefix = ["runuser", "-u", "postgres", "--"]
    data, log = root / "data", root / "server.log"

    def run(*args: str) -> None:
        subprocess.run([*prefix, *args], check=True, capture_output=True, timeout=120)

    port = free_port()
    try:
        run(str(bindir / "initdb"), "-D", str(data), "-U", "alert", "--auth=trust", "-E", "UTF8",
            "--no-sync")  # fmt: skip
        options = f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off"
        run(str(bindir / "pg_ctl"), "-D", str(data), "-l", str(log), "-o", options, "-w", "start")
        try:
            run(str(bindir / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "alert",
                "verdicts")  # fmt: skip
            yield f"postgresql://alert@127.0.0.1:{port}/verdicts"
        finally:
            run(str(bindir / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop")
    finally:
        shutil.rmtree(root, ignore_errors=True)
