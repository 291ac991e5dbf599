"""A cluster on one machine (`pvad cluster up`): PostgreSQL, N `pvad server` processes and HAProxy in front.

Everything lives in one work folder (default ``.pvad/cluster``)::

    certs/                  the development PKI (CA reused), with the proxy's certificate
    pg/                     PostgreSQL's data folder, password file and log (when the store is PostgreSQL)
    server-<i>.yaml, .log   each analysis server's config and log
    haproxy.cfg, .log       HAProxy's generated config and log; frontend.pem / proxy.pem bundles (0600)
    cluster.json            addresses and process ids (what `pvad cluster down` reads)

The servers' settings come from a server config template (analysis, scoring, decoders, ...); the
cluster sets listen, tls, health, access.trusted_proxies, the store and server_id of each.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from pvad.certs import issue_cert, make_dev_pki, pem_bundle
from pvad.cluster.haproxy import (
    Backend,
    Timing,
    check_address,
    haproxy_binary,
    haproxy_config,
)
from pvad.cluster.processes import (
    Child,
    ClusterError,
    Postgres,
    free_port,
    server_argv,
    start_haproxy,
    wait_ready,
)
from pvad.errors import ConfigError

log = logging.getLogger(__name__)

PROXY_ID = "hap-1"


@dataclass
class ServerSlot:
    """One analysis server of the cluster: its ports, config file and process."""

    index: int
    port: int
    health_port: int
    config: Path
    child: Child

    @property
    def name(self) -> str:
        return f"server-{self.index}"

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def ready_url(self) -> str:
        return f"http://127.0.0.1:{self.health_port}/ready"


@dataclass
class LocalCluster:
    """Plan and run a cluster in `workdir`; `start()` returns once HAProxy accepts connections and every
    server is ready. `store`: "postgres" (one database for all servers) or "sqlite" (a file per server:
    no shared state, so a camera that moves starts from nothing there)."""

    workdir: Path
    servers: int = 3
    listen: str = "127.0.0.1:50051"
    template: dict = field(default_factory=dict)  # server config fields (a server YAML without the cluster's keys)
    store: str = "postgres"
    cameras: tuple[str, ...] = ("cam-1",)
    subscribers: tuple[str, ...] = ("demo",)
    proxy_id: str = PROXY_ID
    timing: Timing = Timing()
    server_env: dict | None = None
    ready_timeout_s: float = 300.0
    slots: list[ServerSlot] = field(default_factory=list)
    postgres: Postgres | None = None
    haproxy: Child | None = None
    pki: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.servers < 1:
            raise ConfigError(f"--servers: at least 1, got {self.servers}")
        if self.store not in ("postgres", "sqlite"):
            raise ConfigError(f"store: 'postgres' or 'sqlite', got {self.store!r}")
        check_address("--listen", self.listen)
        for key in ("listen", "tls", "health", "event_log", "postgres", "server_id"):
            if key in self.template:
                log.info("the cluster sets %s itself: the template's value is replaced", key)
        self.workdir = Path(self.workdir).resolve()

    # ------------------------------------------------------------------ files

    @property
    def certs(self) -> Path:
        return self.workdir / "certs"

    def _make_pki(self) -> None:
        have = self.certs / "server.pem"
        if have.exists():  # reuse: only add what is missing (a camera's certificate is never reissued)
            self.pki = {"server": _paths(self.certs, "server")}
            for role, names in (("camera", self.cameras), ("subscriber", self.subscribers), ("proxy", [self.proxy_id])):
                for n in names:
                    p = _paths(self.certs, f"{role}-{n}")
                    self.pki[f"{role}/{n}"] = p if p.cert.exists() else issue_cert(self.certs, role=role, name=n)
        else:
            self.pki = make_dev_pki(self.certs, cameras=self.cameras, subscribers=self.subscribers,
                                    proxies=[self.proxy_id])

    def server_config(self, slot_index: int, port: int, health_port: int) -> dict:
        s = self.pki["server"]
        cfg = {k: v for k, v in self.template.items() if k not in ("kind", "event_log", "postgres")}
        access = dict(cfg.get("access") or {})
        access["trusted_proxies"] = sorted({*access.get("trusted_proxies", []), self.proxy_id})
        cfg.update({
            "kind": "server",
            "listen": f"127.0.0.1:{port}",
            "tls": {"ca": str(s.ca), "cert": str(s.cert), "key": str(s.key)},
            "health": {"listen": f"127.0.0.1:{health_port}"},
            "access": access,
        })
        if self.store == "postgres":
            cfg["postgres"] = {"dsn": self.postgres.dsn, "password_file": str(self.postgres.password_file)}
        else:
            cfg["event_log"] = {"path": str(self.workdir / f"server-{slot_index}" / "events.sqlite")}
        cfg["server_id"] = f"server-{slot_index}"
        return cfg

    def _write_server(self, i: int) -> ServerSlot:
        port, health_port = free_port(), free_port()
        path = self.workdir / f"server-{i}.yaml"
        (self.workdir / f"server-{i}").mkdir(parents=True, exist_ok=True)
        data = self.server_config(i, port, health_port)
        from pvad.config import ServerConfig
        from pvad.config.loader import validate_config

        validate_config({k: v for k, v in data.items() if k != "kind"}, ServerConfig, origin=str(path))
        path.write_text(yaml.safe_dump(data, sort_keys=False))
        child = Child(f"server-{i}", server_argv(path), self.workdir / f"server-{i}.log", env=self.server_env)
        return ServerSlot(i, port, health_port, path, child)

    def write_haproxy(self) -> Path:
        text = haproxy_config(
            listen=self.listen, backends=[Backend(s.name, s.address, s.health_port) for s in self.slots],
            ca=self.pki["server"].ca, frontend_pem=pem_bundle(self.pki["server"], self.workdir / "frontend.pem"),
            proxy_pem=pem_bundle(self.pki[f"proxy/{self.proxy_id}"], self.workdir / "proxy.pem"), timing=self.timing,
            stats_socket=self.workdir / "haproxy.sock")
        path = self.workdir / "haproxy.cfg"
        path.write_text(text)
        return path

    # ------------------------------------------------------------------ running

    def start(self) -> None:
        if haproxy_binary() is None:
            raise ClusterError("haproxy is not installed (Debian: apt-get install haproxy; `make services` as root)")
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._make_pki()
        try:
            if self.store == "postgres":
                self.postgres = Postgres(self.workdir / "pg", free_port())
                log.info("starting PostgreSQL in %s", self.postgres.root)
                self.postgres.start()
            self.slots = [self._write_server(i) for i in range(1, self.servers + 1)]
            log.info("starting %d analysis servers", self.servers)
            for s in self.slots:
                s.child.start()
            with ThreadPoolExecutor(len(self.slots)) as pool:
                list(pool.map(lambda s: wait_ready(s.ready_url, self.ready_timeout_s, s.child), self.slots))
            host, _, port = self.listen.rpartition(":")
            self.haproxy = start_haproxy(self.write_haproxy(), self.workdir / "haproxy.log", (host, int(port)))
            self._write_state()
        except BaseException:
            self.stop()
            raise

    def restart_server(self, slot: ServerSlot, *, wait: bool = True) -> None:
        slot.child.start()
        if wait:
            wait_ready(slot.ready_url, self.ready_timeout_s, slot.child)

    def _write_state(self) -> None:
        state = {
            "pid": os.getpid(),
            "listen": self.listen,
            "ca": str(self.pki["server"].ca),
            "store": self.store,
            "postgres": {"dsn": self.postgres.dsn, "password_file": str(self.postgres.password_file),
                         "pid": self.postgres.child.proc.pid} if self.postgres else None,
            "haproxy": {"config": str(self.workdir / "haproxy.cfg"), "pid": self.haproxy.proc.pid},
            "servers": [{"name": s.name, "address": s.address, "ready": s.ready_url, "config": str(s.config),
                         "pid": s.child.proc.pid if s.child.proc else None} for s in self.slots],
        }
        (self.workdir / "cluster.json").write_text(json.dumps(state, indent=2))

    def stop(self, grace: float = 20.0) -> None:
        """Servers first (they drain: /ready says 503 and their acks still flow through HAProxy), then HAProxy,
        then PostgreSQL."""
        alive = [s for s in self.slots if s.child.alive]
        if alive:
            with ThreadPoolExecutor(len(alive)) as pool:
                list(pool.map(lambda s: s.child.stop(grace), alive))
        if self.haproxy is not None:
            self.haproxy.stop(5)
        if self.postgres is not None:
            self.postgres.stop()
        (self.workdir / "cluster.json").unlink(missing_ok=True)

    def supervise(self, stop: Callable[[], bool], restart_delay_s: float = 1.0) -> None:
        """Until `stop()` is true: restart a server that exited on its own; HAProxy or PostgreSQL exiting ends it."""
        while not stop():
            for s in self.slots:
                if s.child.proc is not None and not s.child.alive:
                    log.error("%s exited with code %s; restarting it (see %s)", s.name, s.child.proc.returncode,
                              s.child.log_path)
                    time.sleep(restart_delay_s)
                    s.child.start()
                    self._write_state()
            if self.haproxy is not None and not self.haproxy.alive:
                raise ClusterError(f"HAProxy exited with code {self.haproxy.proc.returncode}; see {self.haproxy.log_path}")
            if self.postgres is not None and not self.postgres.child.alive:
                raise ClusterError(f"PostgreSQL exited; see {self.postgres.child.log_path}")
            time.sleep(0.5)


def _paths(folder: Path, stem: str):
    from pvad.certs import CertPaths

    return CertPaths(ca=folder / "ca.pem", cert=folder / f"{stem}.pem", key=folder / f"{stem}.key")
