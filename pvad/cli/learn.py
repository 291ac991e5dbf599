"""`pvad learn`: fit a camera's normality model on the server from recorded normal footage, or reset it."""

from __future__ import annotations

import argparse
import asyncio
import json

from pvad.errors import ConfigError


def _cmd_learn(args: argparse.Namespace) -> int:
    from camera_client.learn import learn, reset
    from pvad.config import load_config

    cfg = load_config(args.config, "camera")
    if args.camera and args.camera != cfg.camera_id:
        raise ConfigError(f"--camera {args.camera}: {args.config} is camera {cfg.camera_id!r} (its certificate names it)")
    if args.reset:
        asyncio.run(reset(cfg))
        print(json.dumps({"camera_id": cfg.camera_id, "reset": True}))
        return 0
    if not args.source:
        raise ConfigError("pvad learn: give --source FILE|DIR (or --reset)")
    result = asyncio.run(learn(cfg, args.source))
    print(json.dumps(result) if args.json else
          f"camera {result['camera_id']}: learnt from {result['frames_acked']} frames of {result['sources']} source(s): "
          f"{result['model']}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    c = sub.add_parser("learn", help="teach the server a camera's normal activity from recorded footage (or --reset)")
    c.add_argument("--config", required=True, help="the camera's config (server address, certificate, anonymizer)")
    c.add_argument("--camera", help="camera id; must be the config's (a check)")
    c.add_argument("--source", action="append", metavar="FILE|DIR",
                   help="video file, frame folder, or folder of them (repeatable); streamed through the camera's anonymizer")
    c.add_argument("--reset", action="store_true", help="drop the camera's model; it learns again from live frames")
    c.add_argument("--json", action="store_true")
    c.set_defaults(func=_cmd_learn)
