"""`pvad protos build|check`: the generated gRPC code in pvad/v1."""

from __future__ import annotations

import argparse
import logging
import sys

log = logging.getLogger("pvad")


def _cmd_protos(args: argparse.Namespace) -> int:
    from pvad import protos

    if args.check:
        bad = protos.stale()
        for name in bad:
            print(f"stale: {name} (run `pvad protos build`)", file=sys.stderr)
        return 1 if bad else 0
    for p in protos.build():
        print(p)
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    c = sub.add_parser("protos", help="generated gRPC code in pvad/v1")
    psub = c.add_subparsers(dest="protos_command", required=True, metavar="ACTION")
    psub.add_parser("build", help="regenerate pvad/v1 from protos/").set_defaults(func=_cmd_protos, check=False)
    psub.add_parser("check", help="fail if pvad/v1 is stale").set_defaults(func=_cmd_protos, check=True)

