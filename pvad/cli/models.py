"""`pvad models show`: a checkpoint's card."""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

log = logging.getLogger("pvad")


def _cmd_models_show(args: argparse.Namespace) -> int:
    from models.checkpoint import load_checkpoint

    _, card = load_checkpoint(Path(args.file))
    print(json.dumps(card.model_dump(mode="json"), indent=2))
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    c = sub.add_parser("models", help="model checkpoints")
    msub = c.add_subparsers(dest="models_command", required=True, metavar="ACTION")
    ms = msub.add_parser("show", help="print a checkpoint's card")
    ms.add_argument("file")
    ms.set_defaults(func=_cmd_models_show)

