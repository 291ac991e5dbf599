"""`pvad cluster up|down|haproxy-config`: N analysis servers behind HAProxy (DESIGN.md §9)."""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import time
from pathlib import Path

log = logging.getLogger("pvad")

DEFAULT_TEMPLATE = Path(__file__).resolve().parents[2] / "configs" / "server-cpu.yaml"


def _template(path: str | None) -> dict:
    import yaml

    from pvad.errors import ConfigError

    p = Path(path) if path else DEFAULT_TEMPLATE
    try:
        data = yaml.safe_load(p.read_text()) or {}
    except FileNotFoundError:
        raise ConfigError(f"--config: {p}: no such file") from None
    except yaml.YAMLError as err:
        raise ConfigError(f"--config: {p}: not valid YAML: {err}") from None
    if not isinstance(data, dict) or data.get("kind", "server") != "server":
        raise ConfigError(f"--config: {p}: not a server config (kind: server)")
    return data


def _cmd_up(args: argparse.Namespace) -> int:
    from pvad.cluster.local import LocalCluster

    store = args.store
    if store == "sqlite":
        log.warning("store: SQLite, one file per server: a camera that moves to another server starts there without "
                    "its last seq, SAS or alarm state (use the PostgreSQL store for a real cluster)")
    cluster = LocalCluster(Path(args.workdir), servers=args.servers, listen=args.listen, template=_template(args.config),
                           store=store, cameras=tuple(args.camera or ["cam-1"]),
                           subscribers=tuple(args.subscriber or ["demo"]))
    stopping = {"now": False}

    def on_signal(_sig, _frame) -> None:
        stopping["now"] = True

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, on_signal)
    t0 = time.monotonic()
    try:
        cluster.start()
        if stopping["now"]:
            return 130
        ca = cluster.pki["server"].ca
        print(f"cluster up in {time.monotonic() - t0:.1f} s: {args.servers} analysis servers "
              f"({', '.join(s.address for s in cluster.slots)}), store {store}"
              + (f" ({cluster.postgres.dsn})" if cluster.postgres else ""), flush=True)
        print(f"cameras and subscribers connect to {args.listen} (server name pvad-server, CA {ca}); "
              f"certificates in {cluster.certs}; Ctrl-C stops everything", flush=True)
        cluster.supervise(lambda: stopping["now"])
    finally:
        log.info("stopping the cluster")
        cluster.stop()
    return 0


def _cmd_down(args: argparse.Namespace) -> int:
    from pvad.errors import PvadError

    state_file = Path(args.workdir) / "cluster.json"
    try:
        state = json.loads(state_file.read_text())
    except FileNotFoundError:
        raise PvadError(f"{state_file}: no cluster runs from {args.workdir}") from None
    pid = state["pid"]
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        state_file.unlink(missing_ok=True)
        raise PvadError(f"the cluster's supervisor (pid {pid}) is gone; removed the stale {state_file}") from None
    deadline = time.monotonic() + args.timeout
    while time.monotonic() < deadline and state_file.exists():
        time.sleep(0.2)
    if state_file.exists():
        print(f"the cluster (pid {pid}) is still stopping after {args.timeout:.0f} s", file=sys.stderr)
        return 1
    print("cluster stopped")
    return 0


def _cmd_haproxy_config(args: argparse.Namespace) -> int:
    """The HAProxy config for servers on other machines (README, Production: several servers)."""
    from pvad.cluster.haproxy import Backend, Timing, haproxy_config
    from pvad.errors import ConfigError

    backends = []
    for i, spec in enumerate(args.server, 1):
        address, sep, health = spec.rpartition(",")
        if not sep or not health.isdigit():
            raise ConfigError(f"--server {spec!r}: expected HOST:PORT,HEALTH_PORT")
        backends.append(Backend(f"server-{i}", address, int(health)))
    print(haproxy_config(listen=args.listen, backends=backends, ca=Path(args.ca), frontend_pem=Path(args.frontend_pem),
                         proxy_pem=Path(args.proxy_pem), timing=Timing(hash_balance_factor=args.hash_balance_factor or None)),
          end="")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    c = sub.add_parser("cluster", help="N analysis servers behind HAProxy (and PostgreSQL) on this machine")
    s = c.add_subparsers(dest="cluster_command", required=True, metavar="ACTION")

    up = s.add_parser("up", help="start PostgreSQL, N servers and HAProxy; Ctrl-C or SIGTERM stops them all")
    up.add_argument("--servers", type=int, default=3)
    up.add_argument("--workdir", default=".pvad/cluster", help="certificates, data, configs and logs (default %(default)s)")
    up.add_argument("--listen", default="127.0.0.1:50051", help="HAProxy's address for cameras and subscribers")
    up.add_argument("--config", help=f"server config template (default {DEFAULT_TEMPLATE.relative_to(DEFAULT_TEMPLATE.parents[1])}); "
                                     "the cluster sets listen, tls, health, the store and trusted_proxies itself")
    up.add_argument("--store", choices=("postgres", "sqlite"), default="postgres",
                    help="postgres (default): one database for every server; sqlite: a file per server")
    up.add_argument("--camera", action="append", help="camera id to make a certificate for (repeatable; default cam-1)")
    up.add_argument("--subscriber", action="append", help="subscriber id to make a certificate for (default demo)")
    up.set_defaults(func=_cmd_up)

    down = s.add_parser("down", help="stop the cluster `pvad cluster up` runs from --workdir")
    down.add_argument("--workdir", default=".pvad/cluster")
    down.add_argument("--timeout", type=float, default=60.0)
    down.set_defaults(func=_cmd_down)

    hc = s.add_parser("haproxy-config", help="print an HAProxy config for servers on other machines")
    hc.add_argument("--server", action="append", required=True, metavar="HOST:PORT,HEALTH_PORT",
                    help="an analysis server's gRPC address and its health.listen port (repeatable)")
    hc.add_argument("--listen", default="0.0.0.0:50051", help="where cameras and subscribers connect")
    hc.add_argument("--ca", required=True, help="the CA of cameras, subscribers and servers")
    hc.add_argument("--frontend-pem", required=True, help="certificate + key HAProxy shows clients (SAN pvad-server)")
    hc.add_argument("--proxy-pem", required=True, help="proxy/<id> certificate + key HAProxy shows the servers")
    hc.add_argument("--hash-balance-factor", type=int, default=110,
                    help="bounded loads: at most this %% of the mean streams per server (0: plain consistent hashing, "
                         "on which two HAProxies always agree)")
    hc.set_defaults(func=_cmd_haproxy_config)
