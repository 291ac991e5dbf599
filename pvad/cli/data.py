"""Datasets: `pvad data index` and `pvad synth`."""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from pvad.cli.common import print_result

log = logging.getLogger("pvad")


def _cmd_data_index(args: argparse.Namespace) -> int:
    from models.data import oneclass
    from models.data.vad import format_summary, load_dataset

    if oneclass.is_oneclass_dataset(Path(args.dir)):
        one = oneclass.load_oneclass_dataset(Path(args.dir))
        print(json.dumps(one.summary()) if args.json else oneclass.format_summary(one), flush=True)
        return 0
    ds = load_dataset(Path(args.dir), annotations=args.annotations, verify_frames=not args.no_verify,
                      annotation_dirs=[Path(d) for d in args.annotation_dir or []])
    if args.json:
        print(json.dumps({**ds.summary(), "problem_list": ds.problems}), flush=True)
    else:
        print(format_summary(ds, max_problems=args.problems))
    return 0


def _cmd_synth(args: argparse.Namespace) -> int:
    from models.data.synth import SynthParams, make_benchmark

    params = SynthParams(seed=args.seed, videos=args.videos, frames=args.frames, fps=args.fps,
                         test_fraction=args.test_fraction)
    result = make_benchmark(Path(args.out), params)
    print_result(result, args.json)
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    c = sub.add_parser("data", help="anomaly-detection datasets (UCF-Crime layout, or one-class: Ped2/Avenue/ShanghaiTech)")
    dsub = c.add_subparsers(dest="data_command", required=True, metavar="ACTION")
    d = dsub.add_parser("index", help="per-split/per-class videos, frames, hard/soft frames, and what is missing")
    d.add_argument("dir")
    d.add_argument("--annotations", choices=("auto", "temporal", "vatic", "liu2019"), default="auto")
    d.add_argument("--annotation-dir", action="append", metavar="DIR",
                   help="also look here for Anomaly_Train.txt, the temporal file and Liu 2019 JSONs (repeatable)")
    d.add_argument("--no-verify", action="store_true", help="trust the header frame counts (faster)")
    d.add_argument("--problems", type=int, default=50, metavar="N", help="problems to print (0: all)")
    d.add_argument("--json", action="store_true")
    d.set_defaults(func=_cmd_data_index)

    c = sub.add_parser("synth", help="write a synthetic surveillance anomaly benchmark in the UCF-Crime layout")
    c.add_argument("--seed", type=int, default=0)
    c.add_argument("--videos", type=int, default=40)
    c.add_argument("--out", required=True)
    c.add_argument("--frames", type=int, default=250)
    c.add_argument("--fps", type=float, default=25.0)
    c.add_argument("--test-fraction", type=float, default=0.3)
    c.add_argument("--json", action="store_true")
    c.set_defaults(func=_cmd_synth)
