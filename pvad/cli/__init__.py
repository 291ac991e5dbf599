"""The `pvad` command line: one entry point, one module per command group (``pvad/cli/<group>.py``).

Subcommands are thin: they parse, load config, and call library code.
"""

from __future__ import annotations

import argparse
import sys

from pvad.cli import (
    bench,
    certs,
    cluster,
    config,
    data,
    evaluate,
    export,
    learn,
    models,
    protos,
    run,
    train,
    users,
)
from pvad.errors import PvadError
from pvad.logs import setup_logging

GROUPS = (certs, run, learn, config, protos, train, export, evaluate, bench, models, data, users, cluster)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="pvad", description="Privacy-preserving video anomaly detection, edge to cloud.")
    p.add_argument("-v", "--verbose", action="count", default=0, help="more logging (-vv: debug)")
    p.add_argument("-q", "--quiet", action="store_true", help="warnings and errors only")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    for group in GROUPS:
        group.register(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(-1 if args.quiet else args.verbose)
    try:
        return args.func(args)
    except PvadError as err:
        print(f"pvad: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
