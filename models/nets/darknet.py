"""A Darknet YOLO (e.g. YOLO-Fastest-1.1) in PyTorch, read from its .cfg and .weights files.

Two users: the learned anonymizer's training (models/train/anonymizer.py), which needs a detector it
can differentiate through, and the server's `darknet` detector with `runtime: torch`, which runs it
batched on the server's device and precision (`decode_yolo` turns the raw outputs into boxes the way
OpenCV's Darknet importer does).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from pvad.errors import ModelLoadError


def _parse_darknet_cfg(path: Path) -> list[dict[str, Any]]:
    blocks: list[dict[str, Any]] = []
    for raw in Path(path).read_text().splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        if line.startswith("["):
            blocks.append({"type": line.strip("[]").strip()})
        elif "=" in line and blocks:
            k, v = line.split("=", 1)
            blocks[-1][k.strip()] = v.strip()
    if not blocks or blocks[0]["type"] not in ("net", "network"):
        raise ModelLoadError(f"{path}: not a Darknet cfg (no [net] section first)")
    return blocks


class DarknetYoloTorch(nn.Module):
    """A Darknet YOLO (conv/shortcut/route/maxpool/upsample/dropout/yolo layers, e.g.
    YOLO-Fastest-1.1) in PyTorch, weights read from the ``.weights`` file, frozen, eval mode.

    ``forward``: ``N×3×S×S`` RGB in [0, 1] (S from the cfg, 320) → one raw tensor per [yolo]
    layer, ``N×A×(5+C)×H×W`` (tx, ty, tw, th, objectness logit, class logits). Differentiable
    with respect to the input, which is what the anonymizer's utility loss needs.
    """

    def __init__(self, cfg: Path, weights: Path, *, fields: tuple[str, str] = ("cfg", "weights")) -> None:
        super().__init__()
        for what, path in zip(fields, (cfg, weights)):
            if not Path(path).is_file():
                raise ModelLoadError(f"{what}: no such file {path} (the YOLO-Fastest files of ../shared/data/weights)")
        blocks = _parse_darknet_cfg(cfg)
        net, self.defs = blocks[0], blocks[1:]
        self.input_size = (int(net["height"]), int(net["width"]))
        self.layers = nn.ModuleList()
        channels: list[int] = []
        c = int(net.get("channels", 3))
        for i, d in enumerate(self.defs):
            t, mod = d["type"], nn.Identity()
            if t == "convolutional":
                k, s = int(d["size"]), int(d.get("stride", 1))
                pad = k // 2 if int(d.get("pad", 0)) else int(d.get("padding", 0))
                groups, filters, bn = int(d.get("groups", 1)), int(d["filters"]), int(d.get("batch_normalize", 0))
                seq: list[nn.Module] = [nn.Conv2d(c, filters, k, s, pad, groups=groups, bias=not bn)]
                if bn:
                    seq.append(nn.BatchNorm2d(filters, eps=1e-5))
                act = d.get("activation", "linear")
                if act == "leaky":
                    seq.append(nn.LeakyReLU(0.1))
                elif act != "linear":
                    raise ModelLoadError(f"{cfg}: layer {i}: activation {act!r} not supported")
                mod, c = nn.Sequential(*seq), filters
            elif t == "shortcut":
                if d.get("activation", "linear") != "linear":
                    raise ModelLoadError(f"{cfg}: layer {i}: shortcut activation not supported")
            elif t == "route":
                d["_from"] = [j if j >= 0 else i + j for j in (int(v) for v in d["layers"].split(","))]
                c = sum(channels[j] for j in d["_from"])
            elif t == "maxpool":
                if int(d.get("stride", 1)) != 1:
                    raise ModelLoadError(f"{cfg}: layer {i}: maxpool with stride != 1 not supported")
            elif t == "yolo":
                a = [float(v) for v in d["anchors"].split(",")]
                d["_anchors"] = [(a[2 * m], a[2 * m + 1]) for m in (int(v) for v in d["mask"].split(","))]
                d["_classes"] = int(d["classes"])
            elif t not in ("upsample", "dropout"):
                raise ModelLoadError(f"{cfg}: layer {i}: type [{t}] not supported")
            self.layers.append(mod)
            channels.append(c)
        self._load_weights(Path(weights))
        self.eval()
        for p in self.parameters():
            p.requires_grad_(False)
        self.to(memory_format=torch.channels_last)

    def _load_weights(self, path: Path) -> None:
        with open(path, "rb") as fh:
            major, minor, _ = np.fromfile(fh, np.int32, 3)
            np.fromfile(fh, np.int64 if major * 10 + minor >= 2 else np.int32, 1)
            data = np.fromfile(fh, np.float32)
        pos = 0

        def take(t: torch.Tensor) -> None:
            nonlocal pos
            if pos + t.numel() > len(data):
                raise ModelLoadError(f"{path}: weights file too short for its cfg")
            t.copy_(torch.from_numpy(data[pos:pos + t.numel()]).view_as(t))
            pos += t.numel()

        with torch.no_grad():
            for d, mod in zip(self.defs, self.layers):
                if d["type"] != "convolutional":
                    continue
                if len(mod) > 1 and isinstance(mod[1], nn.BatchNorm2d):
                    for t in (mod[1].bias, mod[1].weight, mod[1].running_mean, mod[1].running_var):
                        take(t)
                else:
                    take(mod[0].bias)
                take(mod[0].weight)
        if pos != len(data):
            raise ModelLoadError(f"{path}: {len(data) - pos} weights left over; cfg and weights do not match")

    def train(self, mode: bool = True) -> DarknetYoloTorch:  # always frozen: BN uses its running statistics
        return super().train(False)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return self.run(x)[0]

    def run(self, x: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """``forward``'s outputs, and every layer's output in cfg order (for probing its features)."""
        outs: list[torch.Tensor] = []
        cache: list[torch.Tensor] = []
        for i, (d, mod) in enumerate(zip(self.defs, self.layers)):
            t = d["type"]
            if t == "convolutional":
                x = mod(x)
            elif t == "shortcut":
                x = x + cache[i + int(d["from"])]
            elif t == "route":
                x = torch.cat([cache[j] for j in d["_from"]], 1) if len(d["_from"]) > 1 else cache[d["_from"][0]]
            elif t == "maxpool":
                k = int(d["size"])
                x = F.max_pool2d(x, k, 1, k // 2)
            elif t == "upsample":
                x = F.interpolate(x, scale_factor=int(d.get("stride", 2)), mode="nearest")
            elif t == "yolo":
                n, _, h, w = x.shape
                outs.append(x.reshape(n, len(d["_anchors"]), 5 + d["_classes"], h, w))
            cache.append(x)
        return outs, cache

    def prepare(self, frames: torch.Tensor) -> torch.Tensor:
        """``N×3×240×320`` in [0, 1] → the detector's square input (stretched, as OpenCV's blobFromImage)."""
        return F.interpolate(frames, size=self.input_size, mode="bilinear", align_corners=False)


def decode_yolo(model: DarknetYoloTorch, outs: list[torch.Tensor]) -> torch.Tensor:
    """Raw [yolo] outputs → ``N×K×(4+C)``: box centre x, y, width, height relative to the input (as
    OpenCV's Darknet importer gives them), then per-class scores sigmoid(objectness)·sigmoid(class)."""
    h_in, w_in = model.input_size
    rows = []
    yolos = [d for d in model.defs if d["type"] == "yolo"]
    for d, o in zip(yolos, outs):
        o = o.float()
        n, a, _, h, w = o.shape
        gy, gx = torch.meshgrid(torch.arange(h, device=o.device), torch.arange(w, device=o.device), indexing="ij")
        anchors = torch.tensor(d["_anchors"], device=o.device, dtype=torch.float32).view(1, a, 2, 1, 1)
        xy = (torch.stack([gx, gy]).view(1, 1, 2, h, w) + o[:, :, 0:2].sigmoid()) / torch.tensor(
            [w, h], device=o.device, dtype=torch.float32).view(1, 1, 2, 1, 1)
        wh = o[:, :, 2:4].exp() * anchors / torch.tensor([w_in, h_in], device=o.device, dtype=torch.float32).view(1, 1, 2, 1, 1)
        scores = o[:, :, 4:5].sigmoid() * o[:, :, 5:].sigmoid()
        rows.append(torch.cat([xy, wh, scores], 2).permute(0, 1, 3, 4, 2).reshape(n, a * h * w, -1))
    return torch.cat(rows, 1)
