"""Child processes of a cluster on one machine: PostgreSQL, HAProxy and `pvad server`s.

Each child writes its output to a log file in the cluster's work folder and is stopped politely
(SIGTERM, then SIGKILL after a grace period). PostgreSQL refuses to run as root: when this runs as
root, ``initdb`` and the server run as the ``postgres`` user (Debian's package makes it), through
``runuser`` or, failing that, a setuid before exec.
"""

from __future__ import annotations

import logging
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from pvad.errors import PvadError

log = logging.getLogger(__name__)

PG_BIN_DIRS = (*sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=lambda p: p.parent.name.zfill(4), reverse=True),
               Path("/usr/local/bin"))
"""Where PostgreSQL's programs are looked for first (Debian: /usr/lib/postgresql/<major>/bin, newest first)."""


class ClusterError(PvadError):
    """A piece of the cluster could not be started (the message says which and why)."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_until(ok: Callable[[], bool], timeout: float, child: Child | None, interval: float, failure: str) -> None:
    """Until `ok()`; raises ClusterError when `child` exits first or, with `failure`, when the time is up."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if child is not None and child.proc is not None and child.proc.poll() is not None:
            raise ClusterError(f"{child.name} exited with code {child.proc.returncode} while starting; "
                               f"see {child.log_path}")
        if ok():
            return
        time.sleep(interval)
    raise ClusterError(failure)


def _accepts(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def wait_tcp(host: str, port: int, timeout: float, *, child: Child | None = None) -> None:
    """Until something accepts TCP connections on host:port (or `child` exits, or the time is up)."""
    _wait_until(lambda: _accepts(host, port), timeout, child, 0.1,
                f"nothing listens on {host}:{port} after {timeout:.0f} s"
                + (f"; see {child.log_path}" if child is not None else ""))


def http_status(url: str, timeout: float = 1.0) -> int | None:
    """The status of GET url, or None when nothing answers."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status
    except urllib.error.HTTPError as err:
        return err.code
    except (OSError, ValueError):
        return None


@dataclass
class Child:
    """One child process with its log file."""

    name: str
    argv: list[str]
    log_path: Path
    env: dict | None = None
    preexec_fn: object = None
    proc: subprocess.Popen | None = None
    paused: bool = False

    def start(self) -> Child:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        logf = open(self.log_path, "ab")
        try:
            self.proc = subprocess.Popen(self.argv, stdout=logf, stderr=subprocess.STDOUT, env=self.env,
                                         preexec_fn=self.preexec_fn, start_new_session=True)
        finally:
            logf.close()
        self.paused = False
        log.debug("%s started (pid %d): %s", self.name, self.proc.pid, " ".join(self.argv))
        return self

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def signal(self, sig: int) -> None:
        """To the child's process group (its own session): a wrapper such as ``runuser`` and what it runs."""
        if self.alive:
            try:
                os.killpg(self.proc.pid, sig)
            except ProcessLookupError:
                pass

    def kill(self) -> None:
        """SIGKILL and reap."""
        if self.alive:
            self.signal(signal.SIGKILL)
            self.proc.wait()

    def pause(self) -> None:
        self.signal(signal.SIGSTOP)
        self.paused = True

    def resume(self) -> None:
        self.signal(signal.SIGCONT)
        self.paused = False

    def stop(self, grace: float = 10.0, sig: int | None = None) -> int | None:
        """`sig` (default SIGTERM; SIGCONT first if paused), SIGKILL after `grace` seconds; the exit code."""
        if self.proc is None:
            return None
        if self.alive:
            if self.paused:
                self.resume()
            self.signal(sig or signal.SIGTERM)
            try:
                self.proc.wait(grace)
            except subprocess.TimeoutExpired:
                log.warning("%s did not stop within %.0f s: killed", self.name, grace)
                self.kill()
        return self.proc.returncode


# --------------------------------------------------------------------------- HAProxy


def start_haproxy(config: Path, log_path: Path, listen: tuple[str, int], *, timeout: float = 15.0) -> Child:
    """HAProxy in the foreground (``-db``) on `config`; returns once it accepts connections on `listen`."""
    from pvad.cluster.haproxy import check_config, haproxy_binary

    check_config(config)
    child = Child("haproxy", [haproxy_binary(), "-db", "-f", str(config)], log_path).start()
    wait_tcp(*listen, timeout, child=child)
    return child


# --------------------------------------------------------------------------- PostgreSQL


def pg_binary(name: str) -> str:
    for d in PG_BIN_DIRS:
        if (d / name).exists():
            return str(d / name)
    found = shutil.which(name)
    if found is None:
        raise ClusterError(f"PostgreSQL's {name} is not installed (Debian: apt-get install postgresql; "
                           "`make services` does it as root)")
    return found


def _as_postgres_user() -> tuple[list[str], object, str | None]:
    """How to run PostgreSQL's programs here: (argv prefix, preexec_fn, user name). As root they run as the
    ``postgres`` user; anyone else runs them as themselves."""
    if os.geteuid() != 0:
        return [], None, None
    try:
        pw = pwd.getpwnam("postgres")
    except KeyError:
        raise ClusterError("this runs as root and PostgreSQL refuses to: create a 'postgres' user "
                           "(Debian's postgresql package does) or run pvad cluster as another user") from None
    runuser = shutil.which("runuser")
    if runuser:
        return [runuser, "-u", "postgres", "--"], None, "postgres"

    def demote() -> None:  # no runuser: drop to postgres between fork and exec
        os.setgid(pw.pw_gid)
        os.initgroups("postgres", pw.pw_gid)
        os.setuid(pw.pw_uid)

    return [], demote, "postgres"


@dataclass
class Postgres:
    """A PostgreSQL server of its own in `root` (``data/``, ``password``, ``postgres.log``) on 127.0.0.1:`port`.

    The database ``pvad`` belongs to the user ``pvad``, whose password is in ``root/password`` (mode 0600):
    the servers' config names that file (``postgres.password_file``), never the password."""

    root: Path
    port: int
    user: str = "pvad"
    database: str = "pvad"
    child: Child | None = field(default=None, repr=False)

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def password_file(self) -> Path:
        return self.root / "password"

    @property
    def socket_dir(self) -> Path:
        return self.root / "run"

    @property
    def dsn(self) -> str:
        """libpq conninfo without the password."""
        return f"host=127.0.0.1 port={self.port} dbname={self.database} user={self.user}"

    def _run(self, argv: list[str], what: str, env: dict | None = None) -> None:
        prefix, preexec, _ = _as_postgres_user()
        res = subprocess.run(prefix + argv, capture_output=True, text=True, preexec_fn=preexec, env=env, timeout=120)
        if res.returncode != 0:
            raise ClusterError(f"{what} failed ({' '.join(argv[:2])} exit {res.returncode}):\n"
                               f"{(res.stdout + res.stderr).strip()[-2000:]}")

    def init(self) -> bool:
        """initdb once (returns False when the data folder exists already)."""
        if (self.data / "PG_VERSION").exists():
            return False
        _, _, user = _as_postgres_user()
        self.root.mkdir(parents=True, exist_ok=True)
        self.socket_dir.mkdir(exist_ok=True)
        password = secrets.token_urlsafe(24)
        pwfile = self.root / ".initdb-pw"
        for path in (self.password_file, pwfile):
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(password + "\n")
        if user is not None:  # the postgres user owns its data, socket folder and the one-off password copy
            pw = pwd.getpwnam(user)
            self.data.mkdir(mode=0o700, exist_ok=True)
            for p in (self.data, self.socket_dir, pwfile):
                os.chown(p, pw.pw_uid, pw.pw_gid)
            self._check_reachable(user)
        try:
            self._run([pg_binary("initdb"), "-D", str(self.data), "-U", self.user, "--auth=scram-sha-256",
                       f"--pwfile={pwfile}", "-E", "UTF8", "--no-instructions"], "initdb")
        finally:
            pwfile.unlink(missing_ok=True)
        log.info("PostgreSQL data folder initialised in %s", self.data)
        return True

    def _check_reachable(self, user: str) -> None:
        """The postgres user must be able to reach the data folder through every parent folder."""
        for parent in reversed(self.data.resolve().parents):
            mode = parent.stat().st_mode
            if not mode & 0o001:
                raise ClusterError(f"the {user} user cannot enter {parent} (mode {oct(mode & 0o777)}), so PostgreSQL "
                                   f"cannot reach {self.data}; choose a --workdir under folders others may enter")

    def start(self, timeout: float = 60.0) -> None:
        self.init()
        prefix, preexec, _ = _as_postgres_user()
        opts = (f"-p {self.port} -k {self.socket_dir} -c listen_addresses=127.0.0.1 -c max_connections=200 "
                "-c fsync=on -c synchronous_commit=on")
        self.child = Child("postgres", prefix + [pg_binary("postgres"), "-D", str(self.data), *opts.split()],
                           self.root / "postgres.log", preexec_fn=preexec).start()
        wait_tcp("127.0.0.1", self.port, timeout, child=self.child)
        self._wait_accepting(timeout)
        self._create_database()

    def _wait_accepting(self, timeout: float) -> None:
        argv = [pg_binary("pg_isready"), "-h", "127.0.0.1", "-p", str(self.port)]
        _wait_until(lambda: subprocess.run(argv, capture_output=True).returncode == 0, timeout, self.child, 0.2,
                    f"PostgreSQL does not accept connections after {timeout:.0f} s; see {self.child.log_path}")

    def _create_database(self) -> None:
        env = {**os.environ, "PGPASSWORD": self.password_file.read_text().strip()}
        res = subprocess.run([pg_binary("psql"), "-h", "127.0.0.1", "-p", str(self.port), "-U", self.user, "-d",
                              "postgres", "-tAc", f"SELECT 1 FROM pg_database WHERE datname = '{self.database}'"],
                             capture_output=True, text=True, env=env)
        if res.returncode != 0:
            raise ClusterError(f"cannot query PostgreSQL: {res.stderr.strip()}")
        if res.stdout.strip() != "1":
            res = subprocess.run([pg_binary("createdb"), "-h", "127.0.0.1", "-p", str(self.port), "-U", self.user,
                                  self.database], capture_output=True, text=True, env=env)
            if res.returncode != 0:
                raise ClusterError(f"createdb {self.database} failed: {res.stderr.strip()}")

    def stop(self, grace: float = 20.0) -> None:
        """SIGTERM is PostgreSQL's "smart" shutdown; SIGINT, "fast", ends sessions and is what we want."""
        if self.child is not None:
            self.child.stop(grace, signal.SIGINT)


# --------------------------------------------------------------------------- pvad server


def server_argv(config: Path) -> list[str]:
    return [sys.executable, "-m", "pvad.cli", "server", "--config", str(config)]


def wait_ready(url: str, timeout: float, child: Child) -> None:
    """Until GET url (a server's /ready) is 200."""
    _wait_until(lambda: http_status(url) == 200, timeout, child, 0.2,
                f"{child.name} not ready after {timeout:.0f} s; see {child.log_path}")
