"""`pvad bench ...`: benchmarks that print figures and ratios (pvad/bench/)."""

from __future__ import annotations

import argparse
import asyncio
import logging
from pathlib import Path

from pvad.cli.common import bench_source, print_result

log = logging.getLogger("pvad")


def _cmd_bench_faults(args: argparse.Namespace) -> int:
    from pvad.bench.faults import bench_faults

    result = asyncio.run(bench_faults(Path(args.workdir), source=bench_source(args), cameras=args.cameras,
                                      frames=args.frames, fps=args.fps, per_class=args.per_class, seed=args.seed))
    print_result(result, args.json)
    ok = (result["frames_lost"] == 0 and result["alarms_missed"] == 0 and result["server_crashes"] == 0
          and result["frames_scored_twice"] == 0 and result["malformed_rejected"] == result["malformed_sent"])
    return 0 if ok else 1


def _cmd_bench_cluster(args: argparse.Namespace) -> int:
    from pvad.bench.cluster import bench_cluster

    result = asyncio.run(bench_cluster(Path(args.workdir), source=bench_source(args), servers=args.servers,
                                       cameras=args.cameras, fps=args.fps, hang_s=args.hang_s, phase_s=args.phase_s,
                                       stream_age_s=args.stream_age_s, camera_processes=args.camera_processes,
                                       store=args.store, hash_balance_factor=args.hash_balance_factor))
    print_result(result, args.json)
    ok = result["frames_lost"] == 0 and not result["camera_errors"]
    if result["store"] == "postgres":
        ok = ok and result["frames_scored_twice"] == 0 and result.get("alarms_missed") == 0 \
            and result.get("stale_commits_after_resume", 0) == 0
    mqtt = result.get("mqtt")
    if mqtt:  # measured (own mosquitto, shared store): every database alarm reached the broker, one publisher at a time
        ok = ok and not mqtt["missing"] and not mqtt.get("not_in_database") \
            and mqtt.get("concurrent_publisher_connects", 0) == 0
    return 0 if ok else 1


def _cmd_bench_load(args: argparse.Namespace) -> int:
    from pvad.bench.faults import bench_load

    result = asyncio.run(bench_load(Path(args.workdir), source=bench_source(args), cameras=args.cameras,
                                    seconds=args.seconds, fps=args.fps))
    print_result(result, args.json)
    return 0 if result["server_crashes"] == 0 else 1


def _cmd_bench_train(args: argparse.Namespace) -> int:
    from models.train.autoencoder import bench_train_step

    result = bench_train_step(batch_size=args.batch_size, steps=args.steps, threads=args.threads)
    print_result(result, args.json)
    return 0


def _cmd_bench_encoder(args: argparse.Namespace) -> int:
    from pvad.bench.encoder import bench_encoder

    result = bench_encoder(bench_source(args), checkpoint=Path(args.checkpoint) if args.checkpoint else None,
                           frames=args.frames)
    print_result(result, args.json)
    return 0


def _cmd_bench_edge(args: argparse.Namespace) -> int:
    from pvad.bench.edge import bench_edge

    print_result(bench_edge(bench_source(args), frames=args.frames), args.json)
    return 0


def _cmd_bench_e2e(args: argparse.Namespace) -> int:
    from pvad.bench.e2e import bench_e2e

    result = asyncio.run(bench_e2e(Path(args.workdir), source=bench_source(args), cameras=args.cameras, fps=args.fps,
                                   seconds=args.seconds, profile=args.profile, precision=args.precision,
                                   encoder_precision=args.encoder_precision, max_batch=args.max_batch,
                                   in_flight=args.in_flight))
    print_result(result, args.json)
    return 0


def _cmd_bench_server(args: argparse.Namespace) -> int:
    from pvad.bench.server import bench_server, compare_precisions

    if args.compare_precisions:
        if args.int8 or args.precision != "fp32" or (args.batch and len(args.batch) > 1):
            raise SystemExit("--compare-precisions runs every precision itself, at one --batch (default 8)")
        result = compare_precisions(source=bench_source(args), cameras=args.cameras, frames=args.frames,
                                    batch=(args.batch or [8])[0], only=args.profile)
    else:
        result = bench_server(source=bench_source(args), cameras=args.cameras, frames=args.frames,
                              batches=tuple(args.batch or (1, 4, 8)), precision=args.precision,
                              quantization="int8" if args.int8 else "none", only=args.profile)
    print_result(result, args.json)
    return 0


def _cmd_bench_gpu(args: argparse.Namespace) -> int:
    from pvad.bench.gpu import NoCuda, bench_gpu

    try:
        result = bench_gpu(source=bench_source(args), device=args.device, precisions=tuple(args.precision or ("fp16", "bf16")),
                           e2e_cameras=args.e2e_cameras, budget_s=args.budget, workdir=Path(args.workdir))
    except NoCuda as e:
        log.error("%s", e)
        return 2
    print_result(result, args.json)
    return 0


def _cmd_bench_web(args: argparse.Namespace) -> int:
    from pvad.bench.web import bench_web

    result = asyncio.run(bench_web(Path(args.workdir), cameras=args.cameras, fps=args.fps, seconds=args.seconds,
                                   alarms=args.alarms, tiles=args.tiles, process=not args.no_process,
                                   screenshots=Path(args.screenshots) if args.screenshots else None))
    print_result(result, args.json)
    return 0 if all(result["targets"].values()) else 1


def register(sub: argparse._SubParsersAction) -> None:
    c = sub.add_parser("bench", help="benchmarks: figures and ratios")
    bsub = c.add_subparsers(dest="bench_command", required=True, metavar="BENCH")
    b = bsub.add_parser("train-autoencoder", help="DP / non-DP training step time and peak memory")
    b.add_argument("--batch-size", type=int, default=8)
    b.add_argument("--steps", type=int, default=3)
    b.add_argument("--threads", type=int)
    b.add_argument("--json", action="store_true")
    b.set_defaults(func=_cmd_bench_train)
    b = bsub.add_parser("server", help="server frames/s per profile and batch size, pipeline efficiency")
    b.add_argument("--cameras", type=int, default=8)
    b.add_argument("--frames", type=int, default=24, help="frames per camera")
    b.add_argument("--batch", type=int, action="append", help="max batch sizes (default 1, 4, 8)")
    b.add_argument("--precision", choices=["auto", "fp32", "bf16", "fp16"], default="fp32")
    b.add_argument("--int8", action="store_true", help="int8 classifier trunks (analysis.quantization), calibrated first")
    b.add_argument("--compare-precisions", action="store_true",
                   help="fp32, bf16 (where not emulated), each with and without int8: fps, error, auto vs the fastest")
    b.add_argument("--profile", action="append", choices=["paper", "cpu"], help="default: both")
    b.add_argument("--source")
    b.add_argument("--json", action="store_true")
    b.set_defaults(func=_cmd_bench_server)
    b = bsub.add_parser("gpu", help="paper profile on CUDA: networks per batch 1-64, server at 8-64 cameras, e2e "
                        "latency, classifier and DP training steps, in under 5 minutes")
    b.add_argument("--device", default="cuda", help="cuda (default), cuda:N, or cpu to run the same code on a CPU")
    b.add_argument("--precision", action="append", choices=["fp32", "bf16", "fp16"], help="default: fp16 and bf16")
    b.add_argument("--e2e-cameras", type=int, default=32, help="camera processes for the latency part (0: skip it)")
    b.add_argument("--budget", type=float, default=290.0, help="seconds; parts not started by then are skipped")
    b.add_argument("--source")
    b.add_argument("--workdir", default=".pvad/bench-gpu")
    b.add_argument("--json", action="store_true")
    b.set_defaults(func=_cmd_bench_gpu)
    b = bsub.add_parser("e2e", help="capture-to-score latency p50/p95/p99 and throughput, camera processes over mTLS")
    b.add_argument("--cameras", type=int, default=4)
    b.add_argument("--fps", type=float, default=10.0, help="frames/s per camera (real time)")
    b.add_argument("--seconds", type=float, default=30.0)
    b.add_argument("--profile", choices=["paper", "cpu"], default="cpu")
    b.add_argument("--precision", choices=["fp32", "bf16", "fp16"], default="fp32", help="the server's networks")
    b.add_argument("--encoder-precision", choices=["fp32", "bf16", "fp16"], default="fp32", help="the cameras' encoder")
    b.add_argument("--max-batch", type=int, help="default: the number of cameras")
    b.add_argument("--in-flight", type=int, default=4,
                   help="analysis.batching.max_in_flight_per_camera of the server (1 = one frame at a time)")
    b.add_argument("--source")
    b.add_argument("--workdir", default=".pvad/bench-e2e")
    b.add_argument("--json", action="store_true")
    b.set_defaults(func=_cmd_bench_e2e)
    b = bsub.add_parser("edge", help="camera-side ms/frame per stage and bytes/frame, for every anonymizer")
    b.add_argument("--frames", type=int, default=50)
    b.add_argument("--source")
    b.add_argument("--json", action="store_true")
    b.set_defaults(func=_cmd_bench_edge)
    b = bsub.add_parser("encoder", help="camera encoder ms/frame and wire bytes (f16, u8) vs JPEG q90")
    b.add_argument("--checkpoint", help="autoencoder checkpoint (default: the shipped DP one)")
    b.add_argument("--frames", type=int, default=50)
    b.add_argument("--source")
    b.add_argument("--json", action="store_true")
    b.set_defaults(func=_cmd_bench_encoder)
    b = bsub.add_parser("faults", help="server kills, cut connections, subscriber restarts, hostile floods")
    b.add_argument("--cameras", type=int, default=2)
    b.add_argument("--frames", type=int, default=150, help="frames per camera (at --fps, paced in real time)")
    b.add_argument("--fps", type=float, default=10.0)
    b.add_argument("--per-class", type=int, default=20, help="hostile messages per class")
    b.add_argument("--seed", type=int, default=0)
    b.add_argument("--source", help="video for the cameras (default: the demo's sample video)")
    b.add_argument("--workdir", default=".pvad/bench-faults")
    b.add_argument("--json", action="store_true", help="one JSON line")
    b.set_defaults(func=_cmd_bench_faults)
    b = bsub.add_parser("cluster", help="N servers behind HAProxy (+ PostgreSQL): SIGKILL one, SIGSTOP another, "
                        "restart; frames lost / scored twice, re-home and hang move times, balance")
    b.add_argument("--servers", type=int, default=3)
    b.add_argument("--cameras", type=int, default=24)
    b.add_argument("--fps", type=float, default=2.0, help="frames/s per camera (reduced: 2 cores run it all)")
    b.add_argument("--hang-s", type=float, default=10.0, help="SIGSTOP time of the second server (0: no hang)")
    b.add_argument("--phase-s", type=float, default=8.0, help="time given to each fault before it is measured")
    b.add_argument("--stream-age-s", type=float, default=20.0, help="limits.max_stream_age_s of the servers")
    b.add_argument("--camera-processes", type=int, default=6, help="the cameras are spread over this many processes")
    b.add_argument("--store", choices=["postgres", "sqlite"], default="postgres", help="default: %(default)s")
    b.add_argument("--hash-balance-factor", type=int, default=110,
                   help="HAProxy's bounded loads in %% of the mean (0: plain consistent hashing)")
    b.add_argument("--source")
    b.add_argument("--workdir", default=".pvad/bench-cluster")
    b.add_argument("--json", action="store_true")
    b.set_defaults(func=_cmd_bench_cluster)
    b = bsub.add_parser("load", help="many camera processes against one server: throughput and memory growth")
    b.add_argument("--cameras", type=int, default=16)
    b.add_argument("--seconds", type=float, default=60.0)
    b.add_argument("--fps", type=float, default=10.0)
    b.add_argument("--source")
    b.add_argument("--workdir", default=".pvad/bench-load")
    b.add_argument("--json", action="store_true")
    b.set_defaults(func=_cmd_bench_load)
    b = bsub.add_parser("web", help="operator dashboard targets in Debian's Chromium (delays, acks, tiles, SIGTERM)")
    b.add_argument("--cameras", type=int, default=3)
    b.add_argument("--fps", type=float, default=10.0, help="frames/s per camera (real time)")
    b.add_argument("--seconds", type=float, default=10.0, help="how long score delays are collected")
    b.add_argument("--alarms", type=int, default=5, help="alarms raised and acknowledged")
    b.add_argument("--tiles", type=int, default=8, help="cameras on the page for the tiles figure")
    b.add_argument("--no-process", action="store_true", help="skip the `pvad server` process (SIGKILL, SIGTERM)")
    b.add_argument("--screenshots", help="save the dashboard at 1280x800 and 390x844 here (dashboard-*.png)")
    b.add_argument("--workdir", default=".pvad/bench-web")
    b.add_argument("--json", action="store_true", help="one JSON line")
    b.set_defaults(func=_cmd_bench_web)

