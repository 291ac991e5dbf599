"""`pvad eval tradeoff`: one privacy–utility table for every camera anonymizer on the same real data.

Per anonymizer (a row):

- utility: frame-level AUC on a one-class dataset (UCSD Ped2) through that anonymizer, with the
  per-camera normality model fitted on that anonymizer's view of the training videos
  (``models.eval.oneclass.evaluate_oneclass``), on all test videos and on the tuning / other split;
- privacy, on face photos and clips (``models.eval.anonymizers.evaluate_anonymizers``): faces
  found in what the server sees / faces in the originals, faces of the originals still found,
  re-identification top-1 (dlib embeddings, LFW distractors), SSIM;
- for encoders whose latent is sent: the white-box attacker (``models.eval.whitebox``), who holds
  the encoder and trains its own decoder on public frames: its SSIM, faces it makes findable and
  its re-identification top-1, with the same face detectors as the other columns;
- cost on the camera: bytes per frame on the wire and ms per frame.

Writes ``tradeoff.json``, ``tradeoff.md`` and ``tradeoff.png`` (Ped2 AUC against the share of
faces still found, one labelled point per anonymizer, like TeD-SPAD Fig. 3).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from models.eval.anonymizers import default_mode_configs, evaluate_anonymizers
from models.eval.plots import save_figure
from models.eval.whitebox_config import WhiteboxAttackConfig

logger = logging.getLogger(__name__)

DEFAULT_MODES = ("none", "blur", "pixelate", "blur:person", "pixelate:person", "adaptive-blur", "adaptive-pixelate",
                 "mask", "edge", "learned", "dp-encoder", "dp-encoder:hardened")


def evaluate_tradeoff(data: Path, face_files: Sequence[Path], *, modes: Sequence[str] | None = None,
                      whitebox: WhiteboxAttackConfig | None = None, out_dir: Path | None = None,
                      every_n: int = 10, max_frames_per_video: int = 8, progress: bool = True) -> dict[str, Any]:
    """The table (see the module doc). ``whitebox=None`` leaves the attacker's columns empty;
    modes whose config cannot be built (e.g. weights not there) get an ``error`` row."""
    from models.data.frames import collect_sources, read_frames
    from models.eval.faces import available_face_detectors, optional_face_embedder
    from models.eval.oneclass import evaluate_oneclass
    from models.eval.privacy import detect_faces

    wanted = list(modes or DEFAULT_MODES)
    configs = default_mode_configs(wanted)
    privacy = evaluate_anonymizers(face_files, modes=wanted, every_n=every_n, max_frames_per_video=max_frames_per_video,
                                   out_dir=Path(out_dir) / "anonymizers" if out_dir else None, progress=progress)
    sources = collect_sources([Path(f) for f in face_files])
    if whitebox is not None:  # the attacker's columns: the same frames and face detectors as evaluate_anonymizers'
        frames = read_frames(sources, every_n=every_n, max_frames_per_source=max_frames_per_video).frames
        detectors = available_face_detectors()
        before = detect_faces(detectors, frames)
        embedder = optional_face_embedder()
    rows: dict[str, dict[str, Any]] = {}
    for key in wanted:
        p = privacy["modes"].get(key, {})
        cfg = configs.get(key)
        if isinstance(cfg, str) or "error" in p:
            rows[key] = {"error": cfg if isinstance(cfg, str) else p["error"]}
            continue
        row: dict[str, Any] = {
            "payload": p.get("payload"), "bytes_per_frame": p.get("bytes_per_frame"),
            "camera_ms_per_frame": p.get("ms_per_frame"), "ssim": p.get("ssim"),
            "faces_before": p.get("faces_before"), "faces_after": p.get("faces_after"),
            "faces_kept": p.get("faces_kept"), "reid_top1": p.get("reid_top1"),
            "faces_found_share": (p["faces_after"] / p["faces_before"]) if p.get("faces_before") else None,
        }
        report = evaluate_oneclass(Path(data), anonymizer=key, progress=progress)
        auc = report["fl_auc_by_mode"]["normality"]
        row.update(auc=report["fl_auc"], auc_tune=auc["tune"], auc_rest=auc["rest"], dataset=report["dataset"],
                   tune_videos=report["tune_videos"])
        if whitebox is not None and p.get("payload") == "latent" and getattr(cfg, "checkpoint", None):
            from models.eval.whitebox import evaluate_whitebox, load_target

            wb = evaluate_whitebox(load_target(cfg.checkpoint), frames, whitebox, detectors=detectors,
                                   embedder=embedder, exclude=[s.path for s in sources], out_dir=out_dir,
                                   progress=progress, before=before)
            attacked = wb["attack_faces_after"]["total"]
            row.update(attack_ssim=wb["attack_ssim"], attack_faces_after=attacked,
                       attack_faces_share=attacked / row["faces_before"] if row["faces_before"] else None,
                       attack_reid_top1=wb["attack_reid_top1"], attack_budget=wb["budget"])
        rows[key] = row
        logger.info("tradeoff %s: %s", key, {k: v for k, v in row.items() if not isinstance(v, (dict, list))})
    result = {"meta": {**privacy["meta"], "data": str(data), "whitebox": whitebox.model_dump(mode="json") if whitebox else None},
              "modes": rows}
    if out_dir is not None:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        (out / "tradeoff.json").write_text(json.dumps(result, indent=1, default=str) + "\n")
        (out / "tradeoff.md").write_text(markdown_table(result) + "\n")
        result["plot"] = str(plot_tradeoff(rows, out / "tradeoff.png"))
    return result


def _fmt(v: Any, spec: str = ".3f") -> str:
    return "–" if v is None else format(v, spec) if isinstance(v, float) else str(v)


def markdown_table(result: dict[str, Any]) -> str:
    """The table as Markdown, one row per anonymizer."""
    meta = result["meta"]
    head = ("| anonymizer | Ped2 AUC (all / tune / rest) | faces found / in originals | faces of originals kept "
            "| re-id top-1 | SSIM | attacker SSIM | attacker faces | attacker re-id | bytes/frame | camera ms/frame |")
    lines = [head, "|" + "|".join(["---"] * 11) + "|"]
    for key, r in result["modes"].items():
        if "error" in r:
            lines.append(f"| {key} | error: {r['error']} |" + " |" * 9)
            continue
        lines.append(
            f"| {key} | {_fmt(r['auc'])} / {_fmt(r['auc_tune'])} / {_fmt(r['auc_rest'])} "
            f"| {r['faces_after']} / {r['faces_before']} | {r['faces_kept']} | {_fmt(r['reid_top1'], '.2f')} "
            f"| {_fmt(r['ssim'])} | {_fmt(r.get('attack_ssim'))} | {_fmt(r.get('attack_faces_after'))} "
            f"| {_fmt(r.get('attack_reid_top1'), '.2f')} | {r['bytes_per_frame']} | {_fmt(r['camera_ms_per_frame'], '.2f')} |")
    lines.append("")
    lines.append(f"Faces on {meta['frames']} frames of {', '.join(meta['sources'])} (detectors: "
                 f"{', '.join(meta['face_detectors'])}, union); Ped2 AUC: normality model fitted through each "
                 f"anonymizer; tune = the videos the settings were chosen on, rest = the others.")
    return "\n".join(lines)


def plot_tradeoff(rows: dict[str, dict[str, Any]], path: Path) -> Path:
    """Ped2 AUC (utility) against two leaks: faces found / faces in the originals (left) and SSIM of
    what the server sees to the original (right). Red crosses: the white-box attacker's
    reconstructions of a latent-sending encoder, joined to the encoder's own point."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(13, 5.5), sharey=True)
    panels = (("faces_found_share", "attack_faces_share",
               "faces found in what the server sees / faces in the originals"),
              ("ssim", "attack_ssim", "SSIM of what the server sees to the original"))
    for ax, (key, attack_key, label) in zip(axes, panels):
        for mode, r in rows.items():
            if "error" in r or r.get(key) is None:
                continue
            ax.scatter(r[key], r["auc"], s=40, marker="s" if r.get("payload") == "latent" else "o")
            ax.annotate(mode, (r[key], r["auc"]), fontsize=8, xytext=(4, 3), textcoords="offset points")
            attack = r.get(attack_key)
            if attack is not None:
                ax.plot([r[key], attack], [r["auc"], r["auc"]], color="red", lw=0.8, alpha=0.6)
                ax.scatter(attack, r["auc"], s=50, marker="x", color="red")
        ax.set_xlabel(f"{label}\n(lower = more private; red ×: white-box attacker)")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("Ped2 frame AUC through the anonymizer")
    fig.suptitle("privacy–utility trade-off of the camera anonymizers")
    return save_figure(fig, path, plt)
