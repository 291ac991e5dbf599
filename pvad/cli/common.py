"""Helpers shared by the subcommand modules."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def bench_source(args: argparse.Namespace) -> Path:
    from pvad import samples

    return Path(args.source) if args.source else samples.default_video()


def print_result(result: dict, as_json: bool) -> None:
    if as_json:
        print(json.dumps(result), flush=True)
    else:
        for k, v in result.items():
            print(f"{k:28s} {v}")
