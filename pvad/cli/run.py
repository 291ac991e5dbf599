"""Running the system: `pvad server`, `pvad camera`, `pvad alarms`, `pvad demo`."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import signal
import sys
from pathlib import Path

log = logging.getLogger("pvad")


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


def register(sub: argparse._SubParsersAction) -> None:
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

