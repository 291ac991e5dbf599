"""Classifier inputs per sampled video frame, computed once and cached on disk (P §3.1, §3.3).

For each sampled frame index ``t`` of a video the cache holds, exactly as the server would see them:

* ``frame``: the frame resized to 240×320 (``INTER_AREA``, like the camera), RGB uint8, passed
  through the autoencoder first when one is configured (G §5.4: the server only ever sees
  reconstructions of the private latents; latents go through float16 as on the wire);
* ``flow``: the flow image (``analysis_server.flow`` layout) between the frame ``step`` source
  frames earlier and ``t``, where ``step = round(video fps / camera fps)``: the flow the server
  computes between consecutive frames of a camera streaming at ``camera_fps``. Stored as uint8
  (flow image × 255; the quantisation error, ≤ 1/510, is far below the flow's own noise);
* ``bag``: the 80-class bag-of-objects of the detector on the (reconstructed) frame;
* ``labels``: the dataset's per-frame label (NORMAL / SOFT / HARD) at ``t``;
* ``background`` (only for a ``BackgroundConfig``): the camera's background at ``t``
  (``analysis_server.background``, RGB uint8 240×320), the model fed every ``step``-th source
  frame from the start, as a camera streaming at ``camera_fps`` would send them (and ``t`` itself
  when it falls between two), each (reconstructed) as the server sees it.

Entries are keyed by the video file (path, size, mtime), the sample indices and everything that
changes the features (flow settings, detector, autoencoder file, background model), so changing any of them
recomputes and nothing stale is ever read.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from analysis_server.background import CameraBackground
from analysis_server.flow import CameraFlow, FlowEstimator
from pvad.config import FRAME_HEIGHT, FRAME_WIDTH, BackgroundConfig, FlowConfig
from pvad.errors import ConfigError

log = logging.getLogger(__name__)

FEATURES_VERSION = 1


@dataclass
class Features:
    """Inputs of one video's sampled frames (layouts in the module docstring)."""

    index: np.ndarray  # (N,) int64 source frame indices
    frame: np.ndarray  # (N, 240, 320, 3) uint8 RGB
    flow: np.ndarray  # (N, 240, 320, 3) uint8, flow image * 255
    bag: np.ndarray  # (N, 80) float32 object counts (zeros without a detector)
    labels: np.ndarray  # (N,) uint8 NORMAL / SOFT / HARD
    background: np.ndarray | None = None  # (N, 240, 320, 3) uint8 RGB, with a BackgroundConfig only

    def __len__(self) -> int:
        return len(self.index)


def flow_step(video_fps: float, camera_fps: float) -> int:
    """Source frames between two frames a camera streaming at ``camera_fps`` would send (≥ 1)."""
    return max(1, round(video_fps / camera_fps))


def scan_frames(path: Path, accept, last: int):
    """Yield ``(index, BGR 240×320 frame)`` for each index ≤ ``last`` that ``accept(index)`` takes,
    reading sequentially (seeking is unreliable in mp4)."""
    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        raise ConfigError(f"{path}: OpenCV cannot open this video")
    i = 0
    try:
        while i <= last:
            if accept(i):
                ok, frame = cap.read()
                if not ok:
                    break
                yield i, cv2.resize(frame, (FRAME_WIDTH, FRAME_HEIGHT), interpolation=cv2.INTER_AREA)
            elif not cap.grab():
                break
            i += 1
    finally:
        cap.release()


def read_frames(path: Path, wanted: set[int]) -> dict[int, np.ndarray]:
    """The frames at ``wanted`` indices, BGR 240×320."""
    return dict(scan_frames(path, wanted.__contains__, max(wanted) if wanted else -1))


class FeatureCache:
    """Computes and caches ``Features`` for (video, sample indices) pairs."""

    def __init__(
        self,
        root: Path,
        *,
        flow: FlowConfig,
        camera_fps: float,
        detector=None,  # a DetectorConfig, or None when the model uses no bag
        autoencoder: Path | None = None,
        background: BackgroundConfig | None = None,
        device: str = "cpu",
    ) -> None:
        self.root = Path(root)
        self.flow_cfg = flow
        self.camera_fps = camera_fps
        self.detector_cfg = detector
        self.autoencoder_path = autoencoder
        self.background_cfg = background
        self.device = device
        self._detector = None
        self._ae = None
        self.hits = 0
        self.misses = 0
        spec = {
            "version": FEATURES_VERSION,
            "flow": flow.model_dump(mode="json"),
            "camera_fps": camera_fps,
            "detector": detector.model_dump(mode="json") if detector is not None else None,
            "autoencoder": _file_key(autoencoder) if autoencoder is not None else None,
        }
        if background is not None:  # only then: the keys of caches without one stay as they were
            spec["background"] = background.model_dump(mode="json")
        self.spec = spec
        self._spec_key = hashlib.sha1(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:12]

    # ------------------------------------------------------------------ lazily built networks

    def _get_detector(self):
        if self._detector is None and self.detector_cfg is not None:
            from analysis_server.detectors import create_detector

            self._detector = create_detector(self.detector_cfg)
        return self._detector

    def _get_autoencoder(self):
        if self._ae is None and self.autoencoder_path is not None:
            from models.nets.autoencoder import load_autoencoder

            self._ae, card = load_autoencoder(self.autoencoder_path)
            if not card.trained:
                log.warning("autoencoder %s is UNTRAINED: training frames will be noise", self.autoencoder_path)
            self._ae = self._ae.to(self.device).eval()
        return self._ae

    # ------------------------------------------------------------------ cache

    def path_for(self, video, indices: np.ndarray) -> Path:
        h = hashlib.sha1()
        h.update(json.dumps(_file_key(video.path)).encode())
        h.update(np.asarray(indices, np.int64).tobytes())
        return self.root / self._spec_key / f"{video.name}-{h.hexdigest()[:12]}.npz"

    def get(self, video, indices: np.ndarray) -> Features:
        """Features of ``video`` at ``indices`` (sorted, unique, < n_frames), from the cache when there."""
        indices = np.asarray(indices, np.int64)
        path = self.path_for(video, indices)
        if path.is_file():
            try:
                with np.load(path) as z:
                    feats = Features(z["index"], z["frame"], z["flow"], z["bag"], z["labels"],
                                     z["background"] if self.background_cfg is not None else None)
                self.hits += 1
                return feats
            except (OSError, ValueError, KeyError) as err:  # a torn or foreign file: recompute
                log.warning("feature cache %s unreadable (%s); recomputing", path, err)
        feats = self.compute(video, indices)
        _atomic_savez(path, feats)
        self.misses += 1
        return feats

    # ------------------------------------------------------------------ computation

    def compute(self, video, indices: np.ndarray) -> Features:
        step = flow_step(video.fps, self.camera_fps)
        wanted = set(int(i) for i in indices) | {max(0, int(i) - step) for i in indices}
        frames = read_frames(video.path, wanted)
        kept = np.array([i for i in indices if int(i) in frames], np.int64)
        if len(kept) < len(indices):
            log.warning(
                "%s: %d of %d sampled frames could not be read (video shorter than its frame count)",
                video.path, len(indices) - len(kept), len(indices),
            )
        needed = sorted({int(i) for i in kept} | {max(0, int(i) - step) for i in kept})
        rgb = {i: cv2.cvtColor(frames[i], cv2.COLOR_BGR2RGB) for i in needed if i in frames}
        rgb = self._reconstruct(rgb)
        estimator = FlowEstimator(self.flow_cfg)
        flows = np.empty((len(kept), FRAME_HEIGHT, FRAME_WIDTH, 3), np.uint8)
        for j, i in enumerate(kept):
            prev = max(0, int(i) - step)
            state = CameraFlow(estimator)
            if prev != i and prev in rgb:
                state.next(rgb[prev])  # the camera's previous frame
            flows[j] = np.round(state.next(rgb[int(i)]) * 255.0).astype(np.uint8)
        frame_arr = np.stack([rgb[int(i)] for i in kept]) if len(kept) else np.zeros((0, FRAME_HEIGHT, FRAME_WIDTH, 3), np.uint8)
        bags = self._bags(frame_arr)
        backgrounds = self._backgrounds(video.path, kept, step) if self.background_cfg is not None else None
        return Features(kept, frame_arr, flows, bags, np.asarray(video.labels, np.uint8)[kept], backgrounds)

    def _backgrounds(self, path: Path, kept: np.ndarray, step: int) -> np.ndarray:
        """The camera's background at each of ``kept`` (layout in the module docstring)."""
        out = np.empty((len(kept), FRAME_HEIGHT, FRAME_WIDTH, 3), np.uint8)
        if not len(kept):
            return out
        where = {int(i): j for j, i in enumerate(kept)}
        model = CameraBackground(self.background_cfg)
        frames = scan_frames(path, lambda i: i % step == 0 or i in where, int(kept[-1]))
        while chunk := [(i, cv2.cvtColor(f, cv2.COLOR_BGR2RGB)) for i, f in itertools.islice(frames, 32)]:
            rgb = self._reconstruct(dict(chunk))
            for i, _ in chunk:
                bg = model.next(rgb[i])
                if i in where:
                    out[where[i]] = bg
        return out

    def _reconstruct(self, rgb: dict[int, np.ndarray]) -> dict[int, np.ndarray]:
        ae = self._get_autoencoder()
        if ae is None or not rgb:
            return rgb
        import torch

        keys = sorted(rgb)
        out: dict[int, np.ndarray] = {}
        with torch.inference_mode():
            for s in range(0, len(keys), 16):
                chunk = keys[s:s + 16]
                x = torch.from_numpy(np.stack([rgb[k] for k in chunk])).to(self.device)
                x = x.permute(0, 3, 1, 2).float().div_(255.0).contiguous(memory_format=torch.channels_last)
                z = ae.encoder(x).half().float()  # the wire carries float16 latents
                y = ae.decoder(z).clamp_(0, 1).mul_(255).round_().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
                out.update(zip(chunk, y))
        return out

    def _bags(self, frames_rgb: np.ndarray) -> np.ndarray:
        from analysis_server.detectors import COCO_CLASSES, bag_of_objects

        det = self._get_detector()
        if det is None or len(frames_rgb) == 0:
            return np.zeros((len(frames_rgb), len(COCO_CLASSES)), np.float32)
        bags = []
        for s in range(0, len(frames_rgb), 8):
            bgr = [cv2.cvtColor(f, cv2.COLOR_RGB2BGR) for f in frames_rgb[s:s + 8]]
            bags.extend(bag_of_objects(d) for d in det.detect_batch(bgr))
        return np.stack(bags).astype(np.float32)


def _file_key(path: Path) -> list:
    st = Path(path).stat()
    return [str(Path(path).resolve()), st.st_size, int(st.st_mtime)]


def _atomic_savez(path: Path, feats: Features) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp.npz")
    os.close(fd)
    try:
        extra = {"background": feats.background} if feats.background is not None else {}
        np.savez(tmp, index=feats.index, frame=feats.frame, flow=feats.flow, bag=feats.bag, labels=feats.labels, **extra)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
