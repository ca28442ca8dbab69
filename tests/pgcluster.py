"""A throwaway PostgreSQL 15 cluster for the journal's tests, from Debian's binaries.

``initdb`` into a temporary directory (as the ``postgres`` user when the tests run as root:
initdb refuses root), ``pg_ctl start`` on a free loopback port with password authentication,
and ``pg_ctl stop`` at the end. Each test gets a database of its own (:meth:`Cluster.database`).
:func:`cluster_or_skip` skips with the reason when the binaries are absent; in CI (``CI`` set)
a missing binary is a broken machine and fails instead.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

BIN = Path(os.environ.get("IBFLEET_TEST_PG_BIN", "/usr/lib/postgresql/15/bin"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Cluster:
    """One running server: ``url(db)`` without the password, which is ``password``."""

    root: Path
    port: int
    password: str = field(default_factory=lambda: secrets.token_urlsafe(18))
    user: str | None = None  # the OS user the server runs as (None: the current one)
    fsync: bool = False
    # More addresses to listen on, and the subnets pg_hba.conf admits there (password auth).
    also_listen: tuple[str, ...] = ()
    subnets: tuple[str, ...] = ()

    @property
    def data(self) -> Path:
        return self.root / "data"

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://ibfleet@127.0.0.1:{self.port}/{database}"

    def _run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(BIN / args[0]), *args[1:]],
            user=self.user,
            cwd=self.root,
            capture_output=True,
            text=True,
            check=check,
            timeout=120,
        )

    def init(self) -> None:
        pwfile = self.root / "pw"
        pwfile.write_text(self.password + "\n")
        if self.user is not None:
            entry = pwd.getpwnam(self.user)
            os.chown(self.root, entry.pw_uid, entry.pw_gid)
            os.chown(pwfile, entry.pw_uid, entry.pw_gid)
        self._run(
            "initdb",
            "-D",
            str(self.data),
            "-U",
            "ibfleet",
            "--auth=scram-sha-256",
            f"--pwfile={pwfile}",
            "-E",
            "UTF8",
        )
        pwfile.unlink()

    def start(self) -> None:
        # The tests never pull the plug on their cluster: fsync off unless a benchmark asks.
        with (self.data / "pg_hba.conf").open("a") as hba:
            hba.writelines(f"host all all {subnet} scram-sha-256\n" for subnet in self.subnets)
        listen = ",".join(("127.0.0.1", *self.also_listen))
        opts = (
            f"-p {self.port} -c listen_addresses={listen} -k {self.root}"
            f" -c fsync={'on' if self.fsync else 'off'} -c max_connections=60"
            " -c shared_buffers=16MB"
        )
        self._run(
            "pg_ctl", "-D", str(self.data), "-l", str(self.root / "log"), "-w", "-o", opts, "start"
        )

    def stop(self, mode: str = "fast") -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop", check=False)

    def psql(self, sql: str, database: str = "postgres") -> None:
        import psycopg

        with psycopg.connect(self.url(database), password=self.password, autocommit=True) as conn:
            conn.execute(sql)

    @contextlib.contextmanager
    def database(self) -> Iterator[str]:
        """A fresh database for one test; its URL (password: :attr:`password`)."""
        name = f"t_{secrets.token_hex(6)}"
        self.psql(f"CREATE DATABASE {name}")
        try:
            yield self.url(name)
        finally:
            with contextlib.suppress(Exception):
                self.psql(f"DROP DATABASE {name} WITH (FORCE)")

    def log_tail(self) -> str:
        with contextlib.suppress(OSError):
            return (self.root / "log").read_text()[-2000:]
        return ""


def missing_reason() -> str | None:
    """Why no cluster can be started here, or None."""
    for tool in ("initdb", "pg_ctl"):
        if not (BIN / tool).is_file():
            return f"no PostgreSQL binaries at {BIN} ({tool} missing); CI installs postgresql"
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            return "running as root and no postgres user to run initdb as"
    return None


@contextlib.contextmanager
def running_cluster(
    *, fsync: bool = False, also_listen: tuple[str, ...] = (), subnets: tuple[str, ...] = ()
) -> Iterator[Cluster]:
    """Start a cluster, yield it, stop it and remove its files (``also_listen``, ``subnets``:
    :class:`Cluster`'s, for clients not on this host's loopback)."""
    reason = missing_reason()
    if reason is not None:
        if os.environ.get("CI"):
            raise RuntimeError(f"CI is set but PostgreSQL cannot run: {reason}")
        pytest.skip(reason)
    root = Path(tempfile.mkdtemp(prefix="ibfleet-pg-"))
    cluster = Cluster(
        root=root,
        port=_free_port(),
        user="postgres" if os.geteuid() == 0 else None,
        fsync=fsync,
        also_listen=also_listen,
        subnets=subnets,
    )
    try:
        try:
            cluster.init()
            cluster.start()
        except subprocess.CalledProcessError as exc:
            raise RuntimeError(
                f"test PostgreSQL did not start: {exc.stderr or exc.stdout}\n{cluster.log_tail()}"
            ) from None
        yield cluster
    finally:
        cluster.stop("immediate")
        shutil.rmtree(root, ignore_errors=True)
