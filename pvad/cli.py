"""The `pvad` command line. Subcommands are thin: they parse, load config, and call library code."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import signal
import sys
from pathlib import Path

from pvad.errors import ConfigError, PvadError
from pvad.logs import setup_logging

log = logging.getLogger("pvad")


def _cmd_certs(args: argparse.Namespace) -> int:
    from pvad.certs import make_dev_pki

    paths = make_dev_pki(Path(args.out), cameras=args.camera or ["cam-1"], subscribers=args.subscriber or ["demo"], days=args.days)
    for who, p in paths.items():
        print(f"{who:24s} cert={p.cert} key={p.key}")
    print(f"{'CA':24s} {next(iter(paths.values())).ca}")
    return 0


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


async def _serve(cfg) -> None:
    from analysis_server.service import start_server

    running = await start_server(cfg)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    print(f"listening on port {running.port}", flush=True)
    await stop.wait()
    log.info("shutting down (draining for up to %.0f s)", cfg.drain_s)
    await running.stop(grace=cfg.drain_s)


def _cmd_server(args: argparse.Namespace) -> int:
    from pvad.config import load_config

    asyncio.run(_serve(load_config(args.config, "server")))
    return 0


def _cmd_camera(args: argparse.Namespace) -> int:
    from camera_client.client import run_camera
    from pvad.config import load_config

    cfg = load_config(args.config, "camera")
    if args.max_frames:
        cfg = cfg.model_copy(update={"capture": cfg.capture.model_copy(update={"max_frames": args.max_frames})})

    def on_ack(ack, latency_ms: float) -> None:
        if args.verbose > 0:
            print(f"seq={ack.seq} σ={ack.confidence:.3f} s={ack.score:.3f} alarm={ack.alarm} {latency_ms:.0f} ms")

    report = asyncio.run(run_camera(cfg, on_ack=on_ack))
    st = report.stream
    print(json.dumps({"frames_captured": report.captured, "frames_acked": st.acked, "frames_lost": report.lost,
                      "frames_dropped": report.dropped, "frames_resent": st.resent, "reconnects": st.reconnects,
                      "frames_rejected": st.rejected_total, "rejected": st.rejected, "anonymizer": report.anonymizer,
                      "anonymizer_stats": report.anonymizer_stats}))
    return 0 if report.lost == 0 else 1


def _cmd_alarms(args: argparse.Namespace) -> int:
    from pvad.channel import secure_channel
    from pvad.config import load_config
    from pvad.subscriber import describe, follow_alarms

    cfg = load_config(args.config, "subscriber")

    async def run() -> None:
        async with secure_channel(cfg.server, cfg.tls) as channel:
            async for ev in follow_alarms(
                channel, camera_ids=cfg.camera_ids, after_event_id=args.after if args.after is not None else cfg.after_event_id,
                include_scores=args.scores or cfg.include_scores,
            ):
                if args.json:
                    from google.protobuf.json_format import MessageToDict

                    print(json.dumps(MessageToDict(ev)), flush=True)
                else:
                    print(describe(ev), flush=True)

    try:
        asyncio.run(run())
    except KeyboardInterrupt:
        pass
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from pvad.config import DemoConfig, load_config
    from pvad.demo import run_demo

    cfg = load_config(args.config, "demo") if args.config else DemoConfig()
    updates = {k: v for k, v in (("source", args.source), ("max_frames", args.max_frames)) if v is not None}
    if args.all_frames:
        updates["max_frames"] = None
    if args.workdir:
        updates["workdir"] = Path(args.workdir)
    cfg = cfg.model_copy(update=updates)
    out = sys.stderr if args.json else sys.stdout
    summary = asyncio.run(run_demo(cfg, out=out))
    if args.json:
        print(json.dumps(summary), flush=True)
    else:
        print("\nsummary:")
        for k, v in summary.items():
            print(f"  {k}: {v}")
    return 0 if summary["frames_acked"] == summary["frames_sent"] else 1


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


def _cmd_models_show(args: argparse.Namespace) -> int:
    from models.checkpoint import load_checkpoint

    _, card = load_checkpoint(Path(args.file))
    print(json.dumps(card.model_dump(mode="json"), indent=2))
    return 0


def _cmd_data_index(args: argparse.Namespace) -> int:
    from models.vad_data import format_summary, load_dataset

    ds = load_dataset(Path(args.dir), annotations=args.annotations, verify_frames=not args.no_verify,
                      annotation_dirs=[Path(d) for d in args.annotation_dir or []])
    if args.json:
        print(json.dumps({**ds.summary(), "problem_list": ds.problems}), flush=True)
    else:
        print(format_summary(ds, max_problems=args.problems))
    return 0


def _cmd_synth(args: argparse.Namespace) -> int:
    from models.synth import SynthParams, make_benchmark

    params = SynthParams(seed=args.seed, videos=args.videos, frames=args.frames, fps=args.fps,
                         test_fraction=args.test_fraction)
    result = make_benchmark(Path(args.out), params)
    _print_result(result, args.json)
    return 0


def _bench_source(args: argparse.Namespace) -> Path:
    from pvad import samples

    return Path(args.source) if args.source else samples.default_video()


def _print_result(result: dict, as_json: bool) -> None:
    if as_json:
        print(json.dumps(result), flush=True)
    else:
        for k, v in result.items():
            print(f"{k:28s} {v}")


def _cmd_bench_faults(args: argparse.Namespace) -> int:
    from pvad.bench.faults import bench_faults

    result = asyncio.run(bench_faults(Path(args.workdir), source=_bench_source(args), cameras=args.cameras,
                                      frames=args.frames, fps=args.fps, per_class=args.per_class, seed=args.seed))
    _print_result(result, args.json)
    ok = (result["frames_lost"] == 0 and result["alarms_missed"] == 0 and result["server_crashes"] == 0
          and result["malformed_rejected"] == result["malformed_sent"])
    return 0 if ok else 1


def _cmd_bench_load(args: argparse.Namespace) -> int:
    from pvad.bench.faults import bench_load

    result = asyncio.run(bench_load(Path(args.workdir), source=_bench_source(args), cameras=args.cameras,
                                    seconds=args.seconds, fps=args.fps))
    _print_result(result, args.json)
    return 0 if result["server_crashes"] == 0 else 1


def _cmd_train_autoencoder(args: argparse.Namespace) -> int:
    from models.train_autoencoder import train_autoencoder
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
    from models.train_anonymizer import train_anonymizer
    from pvad.config import load_config

    cfg = load_config(args.config, "train-anonymizer")
    if args.resume:
        cfg = cfg.model_copy(update={"resume": True})
    result = train_anonymizer(cfg, progress=not args.no_progress)
    print(json.dumps({"checkpoint": str(result.checkpoint), **result.card.metrics}))
    return 0


def _cmd_train_classifier(args: argparse.Namespace) -> int:
    from models.train_classifier import train_classifier
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


def _cmd_eval_detection(args: argparse.Namespace) -> int:
    from models.eval_detection import evaluate_detection, plot_gradcam, plot_roc, plot_timelines
    from pvad.config import SHIPPED_CLASSIFIER, ScoringConfig

    checkpoint = Path(args.checkpoint) if args.checkpoint else SHIPPED_CLASSIFIER
    if not checkpoint.is_file():
        raise ConfigError(f"no classifier checkpoint at {checkpoint}: pass --checkpoint FILE, or write that file with "
                          "`pvad train classifier --config configs/train-classifier-synth.yaml`")
    scoring = ScoringConfig(tau=args.tau, nu=args.nu, ub=args.ub, lb=args.lb)
    report = evaluate_detection(Path(args.data), checkpoint, split=args.split, annotations=args.annotations,
                                scoring=scoring, eval_fps=args.fps, cache_dir=Path(args.cache_dir),
                                autoencoder=Path(args.autoencoder) if args.autoencoder else None,
                                progress=not args.no_progress)
    out = Path(args.out)
    plots = {"roc": str(plot_roc({report.metrics.get("variant") or checkpoint.stem: report}, out / "roc.png")),
             "timelines": str(plot_timelines(report, out / "timelines.png"))}
    if args.gradcam:
        plots["gradcam"] = str(plot_gradcam(Path(args.data), checkpoint, report, out / "gradcam.png",
                                            frames=args.gradcam, annotations=args.annotations,
                                            cache_dir=Path(args.cache_dir), eval_fps=args.fps))
    _print_result({**report.metrics, "plots": plots}, args.json)
    return 0


def _cmd_eval_ablation(args: argparse.Namespace) -> int:
    from models.ablation import markdown_table, run_ablation
    from models.eval_detection import plot_roc

    rows, reports = run_ablation([Path(c) for c in args.configs], Path(args.data), split=args.split,
                                 retrain=args.retrain, eval_fps=args.fps, progress=not args.no_progress)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    table = markdown_table(rows)
    (out / "ablation.md").write_text(table + "\n")
    (out / "ablation.json").write_text(json.dumps(rows, indent=1) + "\n")
    roc = plot_roc(reports, out / "roc.png")
    if args.json:
        print(json.dumps({"rows": rows, "plots": {"roc": str(roc)}, "table": str(out / "ablation.md")}))
    else:
        print(table)
        print(f"\nwritten: {out / 'ablation.md'}, {out / 'ablation.json'}, {roc}")
    return 0


def _cmd_bench_train(args: argparse.Namespace) -> int:
    from models.train_autoencoder import bench_train_step

    result = bench_train_step(batch_size=args.batch_size, steps=args.steps, threads=args.threads)
    _print_result(result, args.json)
    return 0


def _cmd_bench_encoder(args: argparse.Namespace) -> int:
    from pvad.bench.encoder import bench_encoder

    result = bench_encoder(_bench_source(args), checkpoint=Path(args.checkpoint) if args.checkpoint else None,
                           frames=args.frames)
    _print_result(result, args.json)
    return 0


def _cmd_eval_privacy(args: argparse.Namespace) -> int:
    from models.eval_privacy import evaluate_privacy
    from pvad.config import SHIPPED_AUTOENCODER, SHIPPED_DP_AUTOENCODER

    if args.checkpoint:
        checkpoints = [None if c == "untrained" else Path(c) for c in args.checkpoint]
    else:
        checkpoints = [p for p in (SHIPPED_AUTOENCODER, SHIPPED_DP_AUTOENCODER) if p.is_file()]
    result = evaluate_privacy(checkpoints, [Path(f) for f in args.files], attack=not args.no_attack,
                              out_dir=Path(args.out) if args.out else None, seed=args.seed,
                              attack_epochs=args.attack_epochs,
                              latent_noise=tuple(args.latent_noise) if args.latent_noise else None)
    if args.json:
        print(json.dumps(result, default=str), flush=True)
    else:
        for label, r in result.items():
            att = r.get("attack") or {}
            print(f"{label:12s} SSIM {r['ssim']:.3f}  PSNR {r['psnr']:.2f} dB  MSE {r['mse']:.4f}  "
                  f"faces {r['faces_before']['total']} -> {r['faces_after']['total']}  reid_top1 {r['reid_top1']}  "
                  f"eps {r['epsilon']} at delta {r['delta']}"
                  + (f"  attacker SSIM {att.get('attack_ssim', float('nan')):.3f}" if att else ""))
        if args.out:
            print(f"plots and privacy.json in {args.out}")
    return 0


def _cmd_eval_anonymizers(args: argparse.Namespace) -> int:
    from models.eval_anonymizers import evaluate_anonymizers, format_table

    result = evaluate_anonymizers([Path(f) for f in args.files], modes=args.modes, out_dir=Path(args.out) if args.out else None,
                                  every_n=args.every_n, max_frames_per_video=args.max_frames_per_video,
                                  threads=args.threads, repeats=args.repeats, progress=not args.no_progress)
    if args.json:
        print(json.dumps(result, default=str), flush=True)
    else:
        print(format_table(result))
        if args.out:
            print(f"anonymizers.json, tradeoff.png and examples.png in {args.out}")
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    from camera_client.capture import iter_frames
    from models.export import export_encoder
    from pvad.config import CaptureConfig

    import cv2
    import numpy as np

    source = _bench_source(args)
    frames = np.stack([cv2.cvtColor(f.bgr, cv2.COLOR_BGR2RGB)
                       for f in iter_frames(CaptureConfig(source=str(source), target_fps=10, max_frames=args.frames))])
    result = export_encoder(Path(args.model), fmt=args.format, out=Path(args.out), fp16=args.fp16, frames=frames)
    _print_result(result, args.json)
    return 0


def _cmd_bench_edge(args: argparse.Namespace) -> int:
    from pvad.bench.edge import bench_edge

    _print_result(bench_edge(_bench_source(args), frames=args.frames), args.json)
    return 0


def _cmd_bench_e2e(args: argparse.Namespace) -> int:
    from pvad.bench.e2e import bench_e2e

    result = asyncio.run(bench_e2e(Path(args.workdir), source=_bench_source(args), cameras=args.cameras, fps=args.fps,
                                   seconds=args.seconds, profile=args.profile, precision=args.precision,
                                   encoder_precision=args.encoder_precision, max_batch=args.max_batch))
    _print_result(result, args.json)
    return 0


def _cmd_bench_server(args: argparse.Namespace) -> int:
    from pvad.bench.server import bench_server

    result = bench_server(source=_bench_source(args), cameras=args.cameras, frames=args.frames,
                          batches=tuple(args.batch or (1, 4, 8)), precision=args.precision, only=args.profile)
    _print_result(result, args.json)
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="pvad", description="Privacy-preserving video anomaly detection, edge to cloud.")
    p.add_argument("-v", "--verbose", action="count", default=0, help="more logging (-vv: debug)")
    p.add_argument("-q", "--quiet", action="store_true", help="warnings and errors only")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    c = sub.add_parser("certs", help="make a development CA and server/camera/subscriber certificates")
    c.add_argument("--out", required=True, help="directory for the PEM files")
    c.add_argument("--camera", action="append", help="camera id (repeatable; default cam-1)")
    c.add_argument("--subscriber", action="append", help="subscriber id (repeatable; default demo)")
    c.add_argument("--days", type=int, default=365)
    c.set_defaults(func=_cmd_certs)

    c = sub.add_parser("server", help="run the analysis server")
    c.add_argument("--config", required=True)
    c.set_defaults(func=_cmd_server)

    c = sub.add_parser("camera", help="run a camera client")
    c.add_argument("--config", required=True)
    c.add_argument("--max-frames", type=int)
    c.set_defaults(func=_cmd_camera)

    c = sub.add_parser("alarms", help="follow the alarm stream")
    c.add_argument("--config", required=True, help="subscriber config")
    c.add_argument("--after", type=int, help="resume after this event id")
    c.add_argument("--scores", action="store_true", help="also print every per-frame score")
    c.add_argument("--json", action="store_true", help="one JSON object per event")
    c.set_defaults(func=_cmd_alarms)

    c = sub.add_parser("demo", help="server + camera + subscriber on this machine over mTLS")
    c.add_argument("--config", help="demo config (default: built-in defaults, see configs/demo.yaml)")
    c.add_argument("--source", help="video file, device index or RTSP URL (default: a bundled sample video)")
    c.add_argument("--max-frames", type=int, help="stop after N frames (default 300)")
    c.add_argument("--all-frames", action="store_true", help="stream the whole source")
    c.add_argument("--workdir", help="where certificates and the event log go")
    c.add_argument("--json", action="store_true", help="events to stderr, one JSON summary line to stdout")
    c.set_defaults(func=_cmd_demo)

    c = sub.add_parser("config", help="configuration tools")
    csub = c.add_subparsers(dest="config_command", required=True, metavar="ACTION")
    cc = csub.add_parser("check", help="validate config files; every error with its field path")
    cc.add_argument("files", nargs="+")
    cc.add_argument("--kind", choices=["server", "camera", "subscriber", "demo", "train-autoencoder", "train-classifier",
                                         "train-anonymizer"])
    cc.set_defaults(func=_cmd_config_check)

    c = sub.add_parser("protos", help="generated gRPC code in pvad/v1")
    psub = c.add_subparsers(dest="protos_command", required=True, metavar="ACTION")
    psub.add_parser("build", help="regenerate pvad/v1 from protos/").set_defaults(func=_cmd_protos, check=False)
    psub.add_parser("check", help="fail if pvad/v1 is stale").set_defaults(func=_cmd_protos, check=True)

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

    c = sub.add_parser("export", help="export the camera-side encoder (ONNX / TorchScript), checked against PyTorch")
    c.add_argument("--model", required=True, help="autoencoder checkpoint (with its card)")
    c.add_argument("--format", required=True, choices=["onnx", "torchscript"])
    c.add_argument("--fp16", action="store_true", help="half-precision weights")
    c.add_argument("--out", required=True)
    c.add_argument("--frames", type=int, default=16, help="real frames to check the export on")
    c.add_argument("--source", help="video for those frames (default: the demo's sample video)")
    c.add_argument("--json", action="store_true")
    c.set_defaults(func=_cmd_export)

    c = sub.add_parser("eval", help="evaluations")
    esub = c.add_subparsers(dest="eval_command", required=True, metavar="WHAT")
    e = esub.add_parser("privacy", help="what the server sees vs the original: quality, faces, re-identification, attack")
    e.add_argument("files", nargs="+", help="images and/or videos")
    e.add_argument("--checkpoint", action="append",
                   help="autoencoder checkpoint, or 'untrained' (repeatable; default: every shipped pair)")
    e.add_argument("--no-attack", action="store_true", help="skip the interception attack (the slow part)")
    e.add_argument("--attack-epochs", type=int, default=3)
    e.add_argument("--seed", type=int, default=0)
    e.add_argument("--latent-noise", nargs=3, type=float, metavar=("CLIP", "SIGMA", "DELTA"),
                   help="also evaluate each model with the camera's inference-time latent noise")
    e.add_argument("--out", help="directory for privacy.json and the plots")
    e.add_argument("--json", action="store_true")
    e.set_defaults(func=_cmd_eval_privacy)
    e = esub.add_parser("anonymizers", help="every camera anonymizer: ms/frame, memory, bytes, person AP, faces, SSIM/NMI")
    e.add_argument("files", nargs="+", help="images and/or videos (sampled frames)")
    e.add_argument("--modes", nargs="+", help="anonymizers to evaluate (default: every registered one + "
                   "blur:person, pixelate:person)")
    e.add_argument("--every-n", type=int, default=10, help="take every n-th video frame")
    e.add_argument("--max-frames-per-video", type=int, default=8)
    e.add_argument("--threads", type=int, default=1, help="OpenCV and torch threads while measuring")
    e.add_argument("--repeats", type=int, default=3, help="timed calls per frame (the fastest counts)")
    e.add_argument("--no-progress", action="store_true")
    e.add_argument("--out", help="directory for anonymizers.json, tradeoff.png and examples.png")
    e.add_argument("--json", action="store_true")
    e.set_defaults(func=_cmd_eval_anonymizers)
    e = esub.add_parser("detection", help="FL-AUC, VL-F1/TPR/FPR with the SAS, ROC and timeline plots, Grad-CAM")
    e.add_argument("--data", required=True, help="dataset root (UCF-Crime layout, e.g. from `pvad synth`)")
    e.add_argument("--checkpoint", help="classifier checkpoint (default: the shipped one)")
    e.add_argument("--split", choices=["test", "train", "all"], default="test")
    e.add_argument("--annotations", choices=["auto", "temporal", "vatic", "liu2019"], default="auto")
    e.add_argument("--fps", type=float, default=10.0, help="frames per second of video scored (the camera rate)")
    e.add_argument("--tau", type=float, default=0.5)
    e.add_argument("--nu", type=float, default=2.0)
    e.add_argument("--ub", type=float, default=7.0)
    e.add_argument("--lb", type=float, default=-7.0)
    e.add_argument("--autoencoder", help="score reconstructions by this autoencoder instead of what the card says "
                   "(e.g. models/weights/autoencoder-dp-adagrad.pt: what a dp-encoder camera costs the detector)")
    e.add_argument("--gradcam", type=int, default=0, metavar="N", help="Grad-CAM overlays for N confident frames")
    e.add_argument("--out", default=".pvad/eval-detection", help="folder for the plots")
    e.add_argument("--cache-dir", default=".pvad/cache/classifier")
    e.add_argument("--json", action="store_true")
    e.add_argument("--no-progress", action="store_true")
    e.set_defaults(func=_cmd_eval_detection)
    a = esub.add_parser("ablation", help="train (unless done) and evaluate P Table 1 variants on held-out data")
    a.add_argument("configs", nargs="+", help="train-classifier configs, e.g. configs/ablation/*.yaml")
    a.add_argument("--data", required=True, help="held-out dataset root (e.g. `pvad synth --seed 2`)")
    a.add_argument("--split", choices=["test", "train", "all"], default="all")
    a.add_argument("--fps", type=float, default=10.0, help="frames per second of video scored (the camera rate)")
    a.add_argument("--retrain", action="store_true", help="train even when a variant's checkpoint exists")
    a.add_argument("--out", default=".pvad/ablation", help="folder for ablation.md, ablation.json and roc.png")
    a.add_argument("--no-progress", action="store_true")
    a.add_argument("--json", action="store_true")
    a.set_defaults(func=_cmd_eval_ablation)

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
    b.add_argument("--precision", choices=["fp32", "bf16", "fp16"], default="fp32")
    b.add_argument("--profile", action="append", choices=["paper", "cpu"], help="default: both")
    b.add_argument("--source")
    b.add_argument("--json", action="store_true")
    b.set_defaults(func=_cmd_bench_server)
    b = bsub.add_parser("e2e", help="capture-to-score latency p50/p95/p99 and throughput, camera processes over mTLS")
    b.add_argument("--cameras", type=int, default=4)
    b.add_argument("--fps", type=float, default=10.0, help="frames/s per camera (real time)")
    b.add_argument("--seconds", type=float, default=30.0)
    b.add_argument("--profile", choices=["paper", "cpu"], default="cpu")
    b.add_argument("--precision", choices=["fp32", "bf16", "fp16"], default="fp32", help="the server's networks")
    b.add_argument("--encoder-precision", choices=["fp32", "bf16", "fp16"], default="fp32", help="the cameras' encoder")
    b.add_argument("--max-batch", type=int, help="default: the number of cameras")
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
    b = bsub.add_parser("load", help="many camera processes against one server: throughput and memory growth")
    b.add_argument("--cameras", type=int, default=16)
    b.add_argument("--seconds", type=float, default=60.0)
    b.add_argument("--fps", type=float, default=10.0)
    b.add_argument("--source")
    b.add_argument("--workdir", default=".pvad/bench-load")
    b.add_argument("--json", action="store_true")
    b.set_defaults(func=_cmd_bench_load)

    c = sub.add_parser("models", help="model checkpoints")
    msub = c.add_subparsers(dest="models_command", required=True, metavar="ACTION")
    ms = msub.add_parser("show", help="print a checkpoint's card")
    ms.add_argument("file")
    ms.set_defaults(func=_cmd_models_show)

    c = sub.add_parser("data", help="anomaly-detection datasets (UCF-Crime layout)")
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
