"""`pvad train autoencoder|anonymizer|classifier`: the trainers in models/train/."""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

log = logging.getLogger("pvad")


def _cmd_train_autoencoder(args: argparse.Namespace) -> int:
    from models.train.autoencoder import train_autoencoder
    from pvad.config import load_config

    cfg = load_config(args.config, "train-autoencoder")
    if args.resume:
        cfg = cfg.model_copy(update={"resume": True})
    result = train_autoencoder(cfg, progress=not args.no_progress)
    card = result.card
    print(json.dumps({"checkpoint": str(result.checkpoint), "encoder_id": card.extra.get("encoder_id"),
                      "epsilon": card.extra.get("epsilon"), "delta": card.extra.get("delta"), **card.metrics}))
    return 0


def _cmd_train_anonymizer(args: argparse.Namespace) -> int:
    from models.train.anonymizer import train_anonymizer
    from pvad.config import load_config

    cfg = load_config(args.config, "train-anonymizer")
    if args.resume:
        cfg = cfg.model_copy(update={"resume": True})
    result = train_anonymizer(cfg, progress=not args.no_progress)
    print(json.dumps({"checkpoint": str(result.checkpoint), **result.card.metrics}))
    return 0


def _cmd_train_classifier(args: argparse.Namespace) -> int:
    from models.train.classifier import train_classifier
    from pvad.config import load_config

    cfg = load_config(args.config, "train-classifier")
    updates = {k: v for k, v in (("resume", True if args.resume else None),
                                 ("out", Path(args.out) if args.out else None),
                                 ("data", Path(args.data) if args.data else None)) if v is not None}
    if updates:
        cfg = cfg.model_copy(update=updates)
    result = train_classifier(cfg, progress=not args.no_progress)
    if result is not None:  # rank 0
        print(json.dumps({"checkpoint": str(result.out), "variant": result.variant, **result.metrics,
                          "epoch_seconds_median": result.epoch_seconds, **result.samples}))
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    c = sub.add_parser("train", help="train the networks")
    tsub = c.add_subparsers(dest="train_command", required=True, metavar="MODEL")
    t = tsub.add_parser("autoencoder", help="the camera/server autoencoder, with or without DP (Opacus)")
    t.add_argument("--config", required=True, help="a train-autoencoder config, e.g. configs/train-autoencoder-dp.yaml")
    t.add_argument("--resume", action="store_true", help="continue from <out stem>.last.pt")
    t.add_argument("--no-progress", action="store_true", help="no progress bar")
    t.set_defaults(func=_cmd_train_autoencoder)
    t = tsub.add_parser("anonymizer", help="the learned camera anonymizer, adversarially (De Coninck et al.)")
    t.add_argument("--config", required=True, help="a train-anonymizer config, e.g. configs/train-anonymizer.yaml")
    t.add_argument("--resume", action="store_true", help="continue from <out stem>.last.pt")
    t.add_argument("--no-progress", action="store_true", help="no progress bar")
    t.set_defaults(func=_cmd_train_anonymizer)
    t = tsub.add_parser("classifier", help="the two-stream anomaly classifier (P §3.3 recipe; torchrun for DDP)")
    t.add_argument("--config", required=True, help="a train-classifier config, e.g. configs/train-classifier-synth.yaml")
    t.add_argument("--data", help="dataset root (overrides the config's `data`)")
    t.add_argument("--out", help="checkpoint path (overrides the config's `out`)")
    t.add_argument("--resume", action="store_true", help="continue from <out stem>.last.pt")
    t.add_argument("--no-progress", action="store_true")
    t.set_defaults(func=_cmd_train_classifier)

