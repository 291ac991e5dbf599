"""`pvad certs`: a development CA and certificates for server, cameras and subscribers."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

log = logging.getLogger("pvad")


def _cmd_certs(args: argparse.Namespace) -> int:
    from pvad.certs import issue_cert, make_dev_pki

    if args.proxy and not args.camera and not args.subscriber:  # add proxies to an existing PKI, nothing else
        paths = {f"proxy/{p}": issue_cert(Path(args.out), role="proxy", name=p, days=args.days) for p in args.proxy}
    else:
        paths = make_dev_pki(Path(args.out), cameras=args.camera or ["cam-1"], subscribers=args.subscriber or ["demo"],
                             proxies=args.proxy or [], days=args.days)
    for who, p in paths.items():
        print(f"{who:24s} cert={p.cert} key={p.key}")
    print(f"{'CA':24s} {next(iter(paths.values())).ca}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    c = sub.add_parser("certs", help="make a development CA and server/camera/subscriber/proxy certificates")
    c.add_argument("--out", required=True, help="directory for the PEM files")
    c.add_argument("--camera", action="append", help="camera id (repeatable; default cam-1)")
    c.add_argument("--subscriber", action="append", help="subscriber id (repeatable; default demo)")
    c.add_argument("--proxy", action="append", metavar="ID",
                   help="a proxy/<ID> client certificate for a load balancer in front of the servers (repeatable; "
                        "alone, it only adds the proxy certificates to the CA in --out)")
    c.add_argument("--days", type=int, default=365)
    c.set_defaults(func=_cmd_certs)

