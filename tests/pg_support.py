"""A throw-away PostgreSQL for the store tests: Debian's server binaries, ``initdb`` into a temporary
directory as a non-root user (``postgres`` when the tests run as root: PostgreSQL refuses to run as
root), on a free loopback port with its unix socket in that directory. Password authentication over
TCP (scram), so the servers under test read their password from ``postgres.password_file``."""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
import uuid
from pathlib import Path

import pytest

from pvad.cluster.processes import ClusterError, free_port, pg_binary
from pvad.config import PostgresConfig

USER = "pvad"
PASSWORD = "pvad-test-secret"


class PgCluster:
    """initdb + pg_ctl start/stop (found by ``pvad.cluster.processes.pg_binary``), as a non-root user."""

    def __init__(self) -> None:
        self.user = None
        if os.geteuid() == 0:
            try:
                self.user = pwd.getpwnam("postgres")
            except KeyError:
                raise RuntimeError("running as root and there is no 'postgres' user to run PostgreSQL as") from None
        # not under pytest's tmp (mode 0700, root's): the postgres user must reach it
        self.root = Path(tempfile.mkdtemp(prefix="pvad-pg-"))
        self.data = self.root / "data"
        self.port = free_port()
        self.password_file = self.root / "password"
        self.password_file.write_text(PASSWORD + "\n")
        if self.user is not None:
            os.chown(self.root, self.user.pw_uid, self.user.pw_gid)
            os.chown(self.password_file, self.user.pw_uid, self.user.pw_gid)
        self.password_file.chmod(0o600)

    def _run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        cmd = [pg_binary(args[0]), *args[1:]]
        if self.user is not None:
            # setpriv, not subprocess's user=/group=: those make Python fork() instead of vfork(), and a fork
            # beside gRPC's threads runs gRPC's fork handlers (which can abort the child)
            cmd = ["setpriv", f"--reuid={self.user.pw_uid}", f"--regid={self.user.pw_gid}", "--clear-groups", *cmd]
        return subprocess.run(cmd, capture_output=True, text=True, check=check, cwd=self.root,
                              env={"PATH": os.environ.get("PATH", ""), "LC_ALL": "C"})

    def init(self) -> None:
        self._run("initdb", "-D", str(self.data), "-U", USER, "--pwfile", str(self.password_file),
                  "--auth-local=trust", "--auth-host=scram-sha-256", "-E", "UTF8", "--no-instructions")

    def start(self) -> None:
        opts = (f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off "
                "-c full_page_writes=off -c max_connections=200")
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.root / "log"), "-o", opts, "-w", "-t", "30", "start")

    def stop(self, mode: str = "fast") -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "-t", "30", "stop", check=False)

    def dsn(self, dbname: str) -> str:
        return f"host=127.0.0.1 port={self.port} dbname={dbname} user={USER}"

    def create_database(self) -> str:
        import psycopg

        name = f"t_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(self.dsn("postgres"), password=PASSWORD, autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name}")
        return name

    def config(self, dbname: str, **kw) -> PostgresConfig:
        return PostgresConfig(dsn=self.dsn(dbname), password_file=self.password_file, **kw)

    def cleanup(self) -> None:
        self.stop("immediate")
        shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture(scope="session")
def pg_cluster():
    """One PostgreSQL for the session (skips with the reason where its binaries or psycopg are absent)."""
    if os.geteuid() == 0 and shutil.which("setpriv") is None:
        pytest.skip("needs setpriv (util-linux) to run PostgreSQL as a non-root user")
    try:
        for name in ("initdb", "pg_ctl"):
            pg_binary(name)
    except ClusterError as err:
        pytest.skip(f"needs PostgreSQL's initdb and pg_ctl: {err}")
    pytest.importorskip("psycopg_pool", reason="needs psycopg[binary] and psycopg-pool (pip install -e '.[server]')")
    cluster = PgCluster()
    try:
        cluster.init()
        cluster.start()
    except (subprocess.CalledProcessError, RuntimeError) as err:
        cluster.cleanup()
        detail = getattr(err, "stderr", "") or str(err)
        pytest.skip(f"could not start a throw-away PostgreSQL: {detail.strip()[-300:]}")
    yield cluster
    cluster.cleanup()


@pytest.fixture
def pg(pg_cluster) -> PostgresConfig:
    """A fresh database of the session's PostgreSQL, as the server's ``postgres`` section."""
    return pg_cluster.config(pg_cluster.create_database())
