"""A diagnostic for the classifier issue: how separable are HARD frames with *pretrained* features?

The two-stream CNN trained from scratch on the synthetic benchmark stays near chance on held-out
scenes (no ImageNet weights offline). This probe asks whether person-aware pretrained features make
the task learnable: the frozen COCO YOLO-Fastest trunk (the feature map before each detection
head, global mean and max pooled), plus flow statistics over the whole frame and over the detector's
person map. Simple classifiers (logistic regression, gradient-boosted trees) are trained on the
train set and scored on a held-out set by frame-level AUC (HARD frames positive), also per kind.

    python -m models.eval.probe_features --train data/synth-train --heldout data/synth-heldout [--json]

Frames and flow come from the classifier's `FeatureCache` (same flow, same 10 fps camera
spacing), sampled uniformly at `--fps`. Needs the YOLO-Fastest files (../shared/data).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import cv2
import numpy as np
import torch
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.preprocessing import StandardScaler
from tqdm import tqdm

from models.data.features import FeatureCache
from models.data.sampling import evaluation_targets, uniform_indices
from models.data.vad import load_dataset
from models.nets.darknet import DarknetYoloTorch
from pvad.config import FlowConfig
from pvad.samples import YOLO_FASTEST

PERSON = 0


def trunk_features(net: DarknetYoloTorch, frames_rgb: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
    """Pooled trunk features (N x D) and the person probability map of each head (N x h x w)."""
    x = torch.from_numpy(frames_rgb).permute(0, 3, 1, 2).float().div(255.0)
    x = net.prepare(x).contiguous(memory_format=torch.channels_last)
    heads = [i for i, d in enumerate(net.defs) if d["type"] == "yolo"]
    with torch.inference_mode():
        outs, layers = net.run(x)
    pooled = []
    for i in heads:  # the map before each head's last 1x1 convolution
        pooled += [layers[i - 2].mean((2, 3)), layers[i - 2].amax((2, 3))]
    person = [(o[:, :, 4].sigmoid() * o[:, :, 5 + PERSON].sigmoid()).amax(1).numpy() for o in outs]
    return torch.cat(pooled, 1).numpy(), person


def flow_statistics(flow_u8: np.ndarray, person: list[np.ndarray], thresh: float = 0.3) -> np.ndarray:
    """Per frame: magnitude mean, max, p99, p95, std, share above 0.2 and 0.5 of full scale; then the
    mean and max magnitude where each head sees a person (probability > `thresh`)."""
    mag = flow_u8[..., 2].astype(np.float32) / 255.0
    n, hgt, wid = mag.shape
    m = mag.reshape(n, -1)
    cols = [m.mean(1), m.max(1), np.percentile(m, 99, 1), np.percentile(m, 95, 1), m.std(1),
            (m > 0.2).mean(1), (m > 0.5).mean(1)]
    for p in person:
        w = np.stack([cv2.resize(q, (wid, hgt), interpolation=cv2.INTER_NEAREST) for q in p]) > thresh
        cols += [(mag * w).reshape(n, -1).sum(1) / (w.reshape(n, -1).sum(1) + 1), (mag * w).reshape(n, -1).max(1)]
    return np.stack(cols, 1)


def collect(root: Path, cache: FeatureCache, net: DarknetYoloTorch, fps: float, split: str | None,
            batch: int = 32) -> dict[str, np.ndarray]:
    videos = load_dataset(root).videos
    if split:
        videos = [v for v in videos if v.split == split]
    feats, stats, ys, kinds = [], [], [], []
    for v in tqdm(videos, desc=f"probe features ({root.name})", unit="video"):
        idx = uniform_indices(v.n_frames, v.fps, fps)
        f = cache.get(v, idx)
        for a in range(0, len(idx), batch):
            pooled, person = trunk_features(net, f.frame[a:a + batch])
            feats.append(pooled)
            stats.append(flow_statistics(f.flow[a:a + batch], person))
        ys.append(evaluation_targets(v.labels[idx]))
        kinds += [v.category] * len(idx)
    return {"trunk": np.concatenate(feats), "flow": np.concatenate(stats), "y": np.concatenate(ys),
            "kind": np.array(kinds)}


def auc_by_kind(y: np.ndarray, kinds: np.ndarray, p: np.ndarray) -> dict[str, float]:
    """Each kind's HARD frames against every normal frame."""
    out = {}
    for k in sorted(set(kinds[y == 1])):
        pos = (y == 1) & (kinds == k)
        out[str(k)] = round(float(roc_auc_score(np.r_[np.ones(pos.sum()), np.zeros((y == 0).sum())],
                                                np.r_[p[pos], p[y == 0]])), 3)
    return out


def probe(train: Path, heldout: Path, *, cache_dir: Path, variant: str = "yolo-fastest-1.1-xl",
          fps: float = 5.0) -> dict:
    net = DarknetYoloTorch(YOLO_FASTEST / f"{variant}.cfg", YOLO_FASTEST / f"{variant}.weights")
    cache = FeatureCache(cache_dir, flow=FlowConfig(), camera_fps=10.0)
    tr = collect(train, cache, net, fps, split="train")
    te = collect(heldout, cache, net, fps, split=None)
    result: dict = {"detector": variant, "train_frames": len(tr["y"]), "heldout_frames": len(te["y"]),
                    "heldout_hard_share": round(float(te["y"].mean()), 3), "probes": {}}
    inputs = {"flow statistics": ("flow",), "trunk": ("trunk",), "trunk + flow": ("trunk", "flow")}
    models = {"logistic": lambda: LogisticRegression(C=0.1, max_iter=2000, class_weight="balanced"),
              "gbdt": lambda: HistGradientBoostingClassifier(max_iter=300, learning_rate=0.05, random_state=0)}
    for name, keys in inputs.items():
        a, b = np.hstack([tr[k] for k in keys]), np.hstack([te[k] for k in keys])
        scale = StandardScaler().fit(a)
        for mname, make in models.items():
            clf = make().fit(scale.transform(a), tr["y"])
            p = clf.predict_proba(scale.transform(b))[:, 1]
            result["probes"][f"{name} / {mname}"] = {"fl_auc": round(float(roc_auc_score(te["y"], p)), 3),
                                                     "by_kind": auc_by_kind(te["y"], te["kind"], p)}
    return result


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m models.eval.probe_features", description=__doc__.split("\n\n")[0])
    ap.add_argument("--train", required=True, help="UCF-Crime-layout folder (its train split is used)")
    ap.add_argument("--heldout", required=True, help="UCF-Crime-layout folder (every video is used)")
    ap.add_argument("--variant", default="yolo-fastest-1.1-xl")
    ap.add_argument("--fps", type=float, default=5.0)
    ap.add_argument("--cache-dir", default=".pvad/cache/probe")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    r = probe(Path(args.train), Path(args.heldout), cache_dir=Path(args.cache_dir), variant=args.variant, fps=args.fps)
    if args.json:
        print(json.dumps(r))
    else:
        for k, v in r["probes"].items():
            print(f"{k:32s} held-out FL-AUC {v['fl_auc']:.3f}  {v['by_kind']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
