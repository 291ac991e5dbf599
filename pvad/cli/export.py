"""`pvad export`: the camera-side encoder as ONNX or TorchScript."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from pvad.cli.common import bench_source, print_result

log = logging.getLogger("pvad")


def _cmd_export(args: argparse.Namespace) -> int:
    import cv2
    import numpy as np

    from camera_client.capture import iter_frames
    from models.export import export_encoder
    from pvad.config import CaptureConfig

    source = bench_source(args)
    frames = np.stack([cv2.cvtColor(f.bgr, cv2.COLOR_BGR2RGB)
                       for f in iter_frames(CaptureConfig(source=str(source), target_fps=10, max_frames=args.frames))])
    result = export_encoder(Path(args.model), fmt=args.format, out=Path(args.out), fp16=args.fp16, frames=frames)
    print_result(result, args.json)
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    c = sub.add_parser("export", help="export the camera-side encoder (ONNX / TorchScript), checked against PyTorch")
    c.add_argument("--model", required=True, help="autoencoder checkpoint (with its card)")
    c.add_argument("--format", required=True, choices=["onnx", "torchscript"])
    c.add_argument("--fp16", action="store_true", help="half-precision weights")
    c.add_argument("--out", required=True)
    c.add_argument("--frames", type=int, default=16, help="real frames to check the export on")
    c.add_argument("--source", help="video for those frames (default: the demo's sample video)")
    c.add_argument("--json", action="store_true")
    c.set_defaults(func=_cmd_export)

