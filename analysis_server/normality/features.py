"""What the normality model measures per frame, on the frames the server sees (decoded latents or
received anonymized images; never raw frames unless the camera sends them).

``MotionGrid``: the 320x240 frame cut into square cells; per cell (``motion.features``) the mean, the
maximum and the 90th percentile of the optical-flow magnitude (pixels per frame, from the flow the
server already computes between a camera's consecutive frames) and the fraction of foreground pixels
of a per-camera MOG2 background model. On UCSD Ped2's tuning videos these four ranked anomalous frames
best among the grid features tried (orientation histograms, gradient histograms and smaller cells did
worse, README; so did the mean speed of foreground pixels and the 98th percentile, in exploratory runs).

For a camera that sends the dp-encoder's latent, each cell also gets the latent's own motion: the
mean of |z_t - z_(t-1)| per latent channel over the cell (``latent_diff``; the latent is a 30x40 grid
of 8-px cells), which keeps what the decoder's blurry reconstruction loses.
"""

from __future__ import annotations

import cv2
import numpy as np

from pvad.config.normality import MotionGridConfig


class MotionGrid:
    def __init__(self, cfg: MotionGridConfig) -> None:
        self.cfg = cfg
        self.names = tuple(cfg.features)

    def __call__(self, flow: np.ndarray, foreground: np.ndarray, latent_diff: np.ndarray | None = None) -> np.ndarray:
        """Per cell (row-major) the configured features (+ C latent-difference means when
        ``latent_diff``, C x h x w, is given): P x (F [+ C]) float32.

        ``flow`` is H x W x 2 (pixels), ``foreground`` H x W uint8 (0 or 255)."""
        c = self.cfg.cell
        h, w = foreground.shape
        rows, cols = h // c, w // c
        mag = cv2.magnitude(np.ascontiguousarray(flow[..., 0]), np.ascontiguousarray(flow[..., 1]))
        cells = mag[: rows * c, : cols * c].reshape(rows, c, cols, c)
        out = np.empty((rows * cols, len(self.names)), np.float32)
        for j, name in enumerate(self.names):
            if name == "mean":
                out[:, j] = cells.mean(axis=(1, 3)).reshape(-1)
            elif name == "max":
                out[:, j] = cells.max(axis=(1, 3)).reshape(-1)
            elif name == "p90":
                out[:, j] = np.percentile(cells.transpose(0, 2, 1, 3).reshape(rows * cols, c * c), 90, axis=1)
            else:  # fg
                fg = cv2.resize(foreground[: rows * c, : cols * c], (cols, rows), interpolation=cv2.INTER_AREA)
                out[:, j] = fg.reshape(-1).astype(np.float32) / 255.0
        if latent_diff is None or not self.cfg.latent_diff:
            return out
        ch, lh, lw = latent_diff.shape
        f = c * lh // h  # latent cells per grid cell along each side
        pooled = latent_diff[:, : rows * f, : cols * f].reshape(ch, rows, f, cols, f).mean(axis=(2, 4))
        return np.concatenate([out, pooled.reshape(ch, -1).T.astype(np.float32)], axis=1)
