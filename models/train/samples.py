"""Training and validation samples of the two-stream classifier held in memory, and batched inference over them.

``SampleSet`` stacks the cached per-frame inputs (``models.data.features``) of many videos into
arrays allocated once; ``Batches`` turns index sets into model inputs (with flips while training);
``predict`` gives anomaly probabilities. The trainer, its calibration and ``pvad eval detection``
all use these, so a frame is fed to the model the same way in each.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from models.nets.two_stream import TwoStreamClassifier
from pvad.errors import ConfigError


@dataclass
class SampleSet:
    """Samples of many videos stacked: uint8 images, float bags, targets (0/1) and per-sample weights."""

    frame: np.ndarray
    flow: np.ndarray
    bag: np.ndarray
    target: np.ndarray  # float32 0/1
    weight: np.ndarray  # float32 class weight
    video: np.ndarray  # int32 index into `videos`
    videos: list[str] = field(default_factory=list)
    background: np.ndarray | None = None  # uint8 like frame, for foreground models only

    def __len__(self) -> int:
        return len(self.target)

    @staticmethod
    def stack(parts, class_weights: tuple[float, float], capacity: int | None = None) -> SampleSet:
        """From (video name, features, 0/1 targets per feature row, -1 rows dropped).

        ``parts`` may be a generator that loads one video at a time; with ``capacity`` (at least the
        number of feature rows to come) the arrays are allocated once and filled as it goes, so
        memory holds the stacked samples and one video, not every video twice over.
        """
        if capacity is None:
            parts = list(parts)
            capacity = sum(len(f) for _, f, _ in parts)
        out: dict[str, np.ndarray] = {}
        targets, vids, names = [], [], []
        n = 0
        for name, f, t in parts:
            if not len(f):
                continue
            m = t >= 0
            k = int(m.sum())
            if n + k > capacity:
                raise ValueError(f"SampleSet.stack: more than capacity={capacity} rows")
            arrays = {"frame": f.frame, "flow": f.flow, "bag": f.bag}
            if f.background is not None:
                arrays["background"] = f.background
            for key, a in arrays.items():
                if key not in out:
                    out[key] = np.empty((capacity, *a.shape[1:]), a.dtype)
                out[key][n:n + k] = a[m]
            targets.append(t[m].astype(np.float32))
            vids.append(np.full(k, len(names), np.int32))
            names.append(name)
            n += k
        if not names:
            raise ConfigError("no samples: every video of this split was empty or excluded")
        target = np.concatenate(targets)
        w = np.where(target > 0.5, class_weights[1], class_weights[0]).astype(np.float32)
        bg = out.get("background")
        return SampleSet(
            out["frame"][:n], out["flow"][:n], out["bag"][:n], target, w, np.concatenate(vids), names,
            bg[:n] if bg is not None else None,
        )


class Batches:
    """Turns sample indices into normalised model inputs (the server's preprocessing; the layouts,
    foreground included, are in ``models.nets.two_stream``)."""

    def __init__(self, model: TwoStreamClassifier, mean: tuple[float, ...], std: tuple[float, ...], device: torch.device):
        self.streams = model.streams
        self.bag = model.use_bag
        self.foreground = model.frame_input == "foreground"
        self.device = device
        self.mean = torch.tensor(mean, device=device).view(1, 3, 1, 1) * 255.0
        self.std = torch.tensor(std, device=device).view(1, 3, 1, 1) * 255.0

    def _img(self, arr: np.ndarray) -> torch.Tensor:
        x = torch.from_numpy(arr).to(self.device).permute(0, 3, 1, 2).float()
        return ((x - self.mean) / self.std).contiguous(memory_format=torch.channels_last)

    def _difference(self, frame_u8: np.ndarray, bg_u8: np.ndarray) -> torch.Tensor:
        x = torch.from_numpy(frame_u8).to(self.device).permute(0, 3, 1, 2).float()
        b = torch.from_numpy(bg_u8).to(self.device).permute(0, 3, 1, 2).float()
        return ((x - b) / self.std).contiguous(memory_format=torch.channels_last)

    def inputs(self, s: SampleSet, idx: np.ndarray, *, flip: np.ndarray | None = None):
        frame_u8 = s.frame[idx]
        flow_u8 = s.flow[idx] if self.streams == 2 else None
        bg_u8 = None
        if self.foreground:
            if s.background is None:
                raise ConfigError("this classifier's frame stream sees the foreground, but the features hold no "
                                  "background (FeatureCache needs the card's background settings)")
            bg_u8 = s.background[idx]
        if flip is not None and flip.any():
            frame_u8 = frame_u8.copy()
            frame_u8[flip] = frame_u8[flip][:, :, ::-1]
            if bg_u8 is not None:
                bg_u8 = bg_u8.copy()
                bg_u8[flip] = bg_u8[flip][:, :, ::-1]
            if flow_u8 is not None:
                flow_u8 = flow_u8.copy()
                mirrored = flow_u8[flip][:, :, ::-1].copy()
                mirrored[..., 0] = 255 - mirrored[..., 0]  # dx changes sign: 0.5 + dx/2c -> 0.5 - dx/2c
                flow_u8[flip] = mirrored
        frame = self._img(frame_u8) if bg_u8 is None else self._difference(frame_u8, bg_u8)
        flow = self._img(flow_u8) if flow_u8 is not None else None
        bag = torch.from_numpy(s.bag[idx]).to(self.device) if self.bag else None
        return frame, flow, bag

    def targets(self, s: SampleSet, idx: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.from_numpy(s.target[idx]).to(self.device), torch.from_numpy(s.weight[idx]).to(self.device)


@torch.no_grad()
def predict(model: TwoStreamClassifier, batches: Batches, s: SampleSet, idx: np.ndarray, batch_size: int = 32) -> np.ndarray:
    """Anomaly probabilities of samples ``idx`` (model in eval mode)."""
    model.eval()
    out = []
    for i in range(0, len(idx), batch_size):
        out.append(torch.sigmoid(model(*batches.inputs(s, idx[i:i + batch_size])).float()).cpu().numpy())
    return np.concatenate(out) if out else np.zeros(0, np.float32)
