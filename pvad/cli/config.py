"""`pvad config check`: validate config files, every error with its field path."""

from __future__ import annotations

import argparse
import logging
import sys

from pvad.errors import PvadError

log = logging.getLogger("pvad")


def _cmd_config_check(args: argparse.Namespace) -> int:
    from pvad.config import load_config

    bad = 0
    for f in args.files:
        try:
            cfg = load_config(f, args.kind)
        except PvadError as err:
            print(f"FAIL {err}", file=sys.stderr)
            bad += 1
        else:
            print(f"ok   {f} ({type(cfg).__name__})")
    return 1 if bad else 0


def register(sub: argparse._SubParsersAction) -> None:
    c = sub.add_parser("config", help="configuration tools")
    csub = c.add_subparsers(dest="config_command", required=True, metavar="ACTION")
    cc = csub.add_parser("check", help="validate config files; every error with its field path")
    cc.add_argument("files", nargs="+")
    cc.add_argument("--kind", choices=["server", "camera", "subscriber", "demo", "train-autoencoder", "train-classifier",
                                         "train-anonymizer"])
    cc.set_defaults(func=_cmd_config_check)

