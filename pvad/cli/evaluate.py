"""`pvad eval privacy|anonymizers|detection|ablation`: the evaluations in models/eval/."""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from pvad.cli.common import print_result
from pvad.errors import ConfigError

log = logging.getLogger("pvad")


def _server_or_reference_analysis(args: argparse.Namespace):
    """``--server-config``'s analysis settings, else ``models.eval.oneclass.reference_analysis()``."""
    from models.eval.oneclass import reference_analysis
    from pvad.config import load_config

    return load_config(args.server_config, "server").analysis if args.server_config else reference_analysis()


def _oneclass_analysis(args: argparse.Namespace):
    """The analysis settings of a one-class evaluation: a server config's, else the defaults (CPU, and the
    shipped classifier when the fusion uses one); ``--fusion`` and ``--checkpoint`` replace theirs."""
    from pvad.config import SHIPPED_CLASSIFIER, ClassifierConfig

    analysis = _server_or_reference_analysis(args)
    norm = analysis.normality.model_copy(update={"enabled": True, **({"fusion": args.fusion} if args.fusion else {})})
    update = {"normality": norm}
    checkpoint = args.checkpoint or (None if args.server_config else SHIPPED_CLASSIFIER)
    if checkpoint and norm.fusion != "normality":
        update["classifier"] = ClassifierConfig(checkpoint=Path(checkpoint), pretrained="never")
    return analysis.model_copy(update=update)


def _cmd_eval_oneclass(args: argparse.Namespace) -> int:
    from models.eval.oneclass import evaluate_oneclass
    from pvad.config import ScoringConfig

    scoring = ScoringConfig(tau=args.tau, nu=args.nu, ub=args.ub, lb=args.lb)
    report = evaluate_oneclass(Path(args.data), anonymizer=args.anonymizer, analysis=_oneclass_analysis(args),
                               tune=args.tune.split(","), out_dir=Path(args.out), progress=not args.no_progress,
                               scoring=scoring)
    if args.streamed:
        from models.eval.oneclass import evaluate_streamed

        report.update(evaluate_streamed(Path(args.data), anonymizer=args.anonymizer, analysis=_oneclass_analysis(args)))
        report["streamed_minus_offline"] = round(report["streamed_fl_auc"] - report["fl_auc"], 5)
    print_result(report, args.json)
    return 0


def _cmd_eval_false_alarms(args: argparse.Namespace) -> int:
    from models.eval.oneclass import evaluate_false_alarms

    analysis = _server_or_reference_analysis(args)
    report = evaluate_false_alarms([Path(v) for v in args.videos], anonymizer=args.anonymizer, analysis=analysis,
                                   learn_fraction=args.learn_fraction, holdout=args.holdout,
                                   oneclass=Path(args.oneclass) if args.oneclass else None, progress=not args.no_progress)
    print_result(report, args.json)
    return 0


def _cmd_eval_detection(args: argparse.Namespace) -> int:
    from models.data.oneclass import is_oneclass_dataset

    if is_oneclass_dataset(Path(args.data)):
        return _cmd_eval_oneclass(args)
    if args.anonymizer != "none" or args.fusion or args.server_config:
        raise ConfigError("--anonymizer, --fusion and --server-config are for one-class datasets (Ped2 layout); "
                          f"{args.data} is a UCF-Crime-layout dataset")
    from models.eval.detection import (
        evaluate_detection,
        plot_gradcam,
        plot_roc,
        plot_timelines,
    )
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
    print_result({**report.metrics, "plots": plots}, args.json)
    return 0


def _cmd_eval_ablation(args: argparse.Namespace) -> int:
    from models.eval.ablation import markdown_table, run_ablation
    from models.eval.detection import plot_roc

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


def _cmd_eval_privacy(args: argparse.Namespace) -> int:
    from models.eval.privacy_report import evaluate_privacy
    from pvad.config import SHIPPED_AUTOENCODER, SHIPPED_DP_AUTOENCODER

    if args.checkpoint:
        checkpoints = [None if c == "untrained" else Path(c) for c in args.checkpoint]
    else:
        checkpoints = [p for p in (SHIPPED_AUTOENCODER, SHIPPED_DP_AUTOENCODER) if p.is_file()]
    attack = "none" if args.no_attack else args.attack
    whitebox = None
    if attack == "whitebox":
        whitebox = _whitebox_config(args)
    elif args.attack_config or args.attack_steps is not None or args.attack_seconds is not None:
        raise ConfigError("--attack-config, --attack-steps and --attack-seconds are for --attack whitebox")
    result = evaluate_privacy(checkpoints, [Path(f) for f in args.files], attack=attack,
                              out_dir=Path(args.out) if args.out else None, seed=args.seed,
                              attack_epochs=args.attack_epochs, whitebox=whitebox,
                              latent_noise=tuple(args.latent_noise) if args.latent_noise else None,
                              progress=not args.no_progress)
    if args.json:
        print(json.dumps(result, default=str), flush=True)
    else:
        for label, r in result.items():
            att = r.get("attack") or {}
            print(f"{label:12s} SSIM {r['ssim']:.3f}  PSNR {r['psnr']:.2f} dB  MSE {r['mse']:.4f}  "
                  f"faces {r['faces_before']['total']} -> {r['faces_after']['total']}  reid_top1 {r['reid_top1']}  "
                  f"eps {r['epsilon']} at delta {r['delta']}"
                  + (f"  attacker SSIM {att.get('attack_ssim', float('nan')):.3f}" if att else "")
                  + (f"  attacker faces {att['attack_faces_after']['total']}  attacker reid_top1 {att.get('attack_reid_top1')}"
                     if att and "attack_faces_after" in att and isinstance(att["attack_faces_after"], dict) else ""))
        if args.out:
            print(f"plots and privacy.json in {args.out}")
    return 0


def _cmd_eval_anonymizers(args: argparse.Namespace) -> int:
    from models.eval.anonymizers import evaluate_anonymizers, format_table

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


def _whitebox_config(args: argparse.Namespace):
    """The white-box attack's config from --attack-config/--attack-steps/--attack-seconds."""
    from models.eval.whitebox_config import WhiteboxAttackConfig
    from pvad.config import load_config, validate_config

    overrides = {k: v for k, v in (("steps", args.attack_steps), ("seconds", args.attack_seconds)) if v is not None}
    base = load_config(args.attack_config, "attack-whitebox").model_dump() if args.attack_config else {}
    return validate_config({**base, **overrides}, WhiteboxAttackConfig,
                           origin=args.attack_config or "--attack-steps/--attack-seconds")


def _cmd_eval_tradeoff(args: argparse.Namespace) -> int:
    from models.data.oneclass import is_oneclass_dataset
    from models.eval.tradeoff import evaluate_tradeoff, markdown_table

    if not is_oneclass_dataset(Path(args.data)):
        raise ConfigError(f"--data {args.data}: not a one-class dataset (Ped2/Avenue/ShanghaiTech layout)")
    if not args.whitebox and (args.attack_config or args.attack_steps is not None or args.attack_seconds is not None):
        raise ConfigError("--attack-config, --attack-steps and --attack-seconds need --whitebox")
    result = evaluate_tradeoff(Path(args.data), [Path(f) for f in args.files], modes=args.modes,
                               whitebox=_whitebox_config(args) if args.whitebox else None, out_dir=Path(args.out),
                               every_n=args.every_n, max_frames_per_video=args.max_frames_per_video,
                               progress=not args.no_progress)
    if args.json:
        print(json.dumps(result, default=str), flush=True)
    else:
        print(markdown_table(result))
        print(f"\ntradeoff.json, tradeoff.md and tradeoff.png in {args.out}")
    return 0


def _add_whitebox_args(parser: argparse.ArgumentParser) -> None:
    """The white-box attack's options, read by ``_whitebox_config``."""
    parser.add_argument("--attack-config", help="YAML of the white-box attack (e.g. configs/attack-whitebox-gpu.yaml)")
    parser.add_argument("--attack-steps", type=int, help="white-box attack: training steps at most (overrides the config)")
    parser.add_argument("--attack-seconds", type=float,
                        help="white-box attack: training seconds at most (overrides the config)")


def register(sub: argparse._SubParsersAction) -> None:
    c = sub.add_parser("eval", help="evaluations")
    esub = c.add_subparsers(dest="eval_command", required=True, metavar="WHAT")
    e = esub.add_parser("privacy", help="what the server sees vs the original: quality, faces, re-identification, attack")
    e.add_argument("files", nargs="+", help="images and/or videos")
    e.add_argument("--checkpoint", action="append",
                   help="autoencoder checkpoint, or 'untrained' (repeatable; default: every shipped pair)")
    e.add_argument("--attack", choices=("quick", "whitebox", "none"), default="quick",
                   help="quick: a small decoder of our design on 64 public frames; whitebox: the attacker holds the "
                   "encoder and trains a larger decoder on every public frame (models/eval/whitebox.py, cached)")
    e.add_argument("--no-attack", action="store_true", help="same as --attack none")
    e.add_argument("--attack-epochs", type=int, default=3, help="epochs of the quick attack")
    _add_whitebox_args(e)
    e.add_argument("--no-progress", action="store_true")
    e.add_argument("--seed", type=int, default=0)
    e.add_argument("--latent-noise", nargs=3, type=float, metavar=("CLIP", "SIGMA", "DELTA"),
                   help="also evaluate each model with the camera's inference-time latent noise")
    e.add_argument("--out", help="directory for privacy.json and the plots")
    e.add_argument("--json", action="store_true")
    e.set_defaults(func=_cmd_eval_privacy)
    e = esub.add_parser("tradeoff", help="one privacy-utility table: Ped2 AUC, faces, re-id, white-box attacker, "
                        "bytes and ms for every camera anonymizer")
    e.add_argument("files", nargs="+", help="face photos and/or clips for the privacy columns (e.g. "
                   "../shared/data/la3d/vispr ../shared/data/intel_sample_videos/face-demographics-walking.gif)")
    e.add_argument("--data", required=True, help="one-class dataset for the AUC column (e.g. ../shared/data/ucsd_ped2)")
    e.add_argument("--modes", nargs="+", help="anonymizers (default: models.eval.tradeoff.DEFAULT_MODES)")
    e.add_argument("--whitebox", action="store_true", help="run (or reuse from its cache) the white-box attacker "
                   "against every latent-sending encoder")
    _add_whitebox_args(e)
    e.add_argument("--every-n", type=int, default=10, help="every n-th frame of a clip for the privacy columns")
    e.add_argument("--max-frames-per-video", type=int, default=8)
    e.add_argument("--out", default="runs/tradeoff")
    e.add_argument("--json", action="store_true")
    e.add_argument("--no-progress", action="store_true")
    e.set_defaults(func=_cmd_eval_tradeoff)
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
    e.add_argument("--data", required=True, help="dataset root: UCF-Crime layout (e.g. from `pvad synth`) or a "
                   "one-class benchmark (UCSD Ped2 frames + ped2.mat, official UCSD, Avenue, ShanghaiTech layouts)")
    e.add_argument("--anonymizer", default="none", help="one-class data: the camera's anonymizer the frames go "
                   "through (none, dp-encoder, learned, blur:person, adaptive-blur, ...)")
    e.add_argument("--server-config", help="one-class data: take the analysis settings (normality, classifier) from "
                   "this server config")
    e.add_argument("--fusion", choices=["normality", "classifier", "max", "mean"],
                   help="one-class data: how σ_t is formed (default: the config's, normality)")
    e.add_argument("--streamed", action="store_true", help="one-class data: also run the real path (server on "
                   "loopback with mTLS, camera client, `pvad learn`) and report its FL-AUC beside the offline one")
    e.add_argument("--tune", default="01,02,03,04", help="one-class data: the tuning videos, reported apart")
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
    f = esub.add_parser("false-alarms", help="alarms per hour on normal footage the camera never learnt from")
    f.add_argument("videos", nargs="*", help="normal video files: learn the first part, score the rest")
    f.add_argument("--oneclass", help="a one-class dataset: learn its training videos but the last --holdout, score those")
    f.add_argument("--holdout", type=int, default=4)
    f.add_argument("--learn-fraction", type=float, default=0.5)
    f.add_argument("--anonymizer", default="none")
    f.add_argument("--server-config", help="take the analysis settings from this server config")
    f.add_argument("--json", action="store_true")
    f.add_argument("--no-progress", action="store_true")
    f.set_defaults(func=_cmd_eval_false_alarms)
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

