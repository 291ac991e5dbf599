"""The learned anonymizer's training pieces (De Coninck et al.): the utility teacher's targets and loss,
the adversary and anonymizer steps, crops, and the frame/tensor helpers the trainer and its evaluation share."""

from __future__ import annotations

import logging

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from models.nets.darknet import DarknetYoloTorch
from models.nets.learned_anonymizer import UNetLite

logger = logging.getLogger(__name__)

PERSON = 0  # COCO class index


def teacher_targets(utility: DarknetYoloTorch, frames: torch.Tensor) -> torch.Tensor:
    """What the loss needs of the detector's outputs: ``N×K×6`` (tx, ty, tw, th, obj logit, person logit),
    K = all anchor-cells of all [yolo] layers."""
    return torch.cat([o[:, :, [0, 1, 2, 3, 4, 5 + PERSON]].permute(0, 1, 3, 4, 2).reshape(len(o), -1, 6)
                      for o in utility(utility.prepare(frames))], 1)


def utility_loss(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """Keep the detector's objectness, person score and boxes on the anonymized frame as on the original.

    Both ``N×K×6`` (see ``teacher_targets``). Weighted BCE of objectness and person (targets: the
    teacher's probabilities; weight 0.05 + teacher objectness, so cells with something in them
    dominate but false positives elsewhere still cost), plus L1 on the box offsets weighted by the
    teacher's objectness. 0 when the student equals the teacher up to the BCE's entropy term,
    which is subtracted so that the loss is a divergence (≥ 0, = 0 at the teacher).
    """
    t_obj, t_per = teacher[..., 4].sigmoid(), (teacher[..., 4].sigmoid() * teacher[..., 5].sigmoid())
    s_obj = student[..., 4]
    s_per_prob = student[..., 4].sigmoid() * student[..., 5].sigmoid()
    w = 0.05 + t_obj
    bce_obj = F.binary_cross_entropy_with_logits(s_obj, t_obj, reduction="none") \
        - F.binary_cross_entropy_with_logits(teacher[..., 4], t_obj, reduction="none")
    eps = 1e-6
    s_per = s_per_prob.clamp(eps, 1 - eps)
    t_p = t_per.clamp(eps, 1 - eps)
    bce_per = -(t_p * torch.log(s_per) + (1 - t_p) * torch.log(1 - s_per)) \
        + (t_p * torch.log(t_p) + (1 - t_p) * torch.log(1 - t_p))
    box = (student[..., :4] - teacher[..., :4]).abs().sum(-1)
    return ((w * (bce_obj + bce_per)).sum() + (t_obj * box).sum()) / w.sum()


def detector_outputs(utility: DarknetYoloTorch, frames: torch.Tensor) -> torch.Tensor:
    return teacher_targets(utility, frames)


# --------------------------------------------------------------------------- steps


def random_crop(x: torch.Tensor, crop: tuple[int, int], gen: torch.Generator | None = None) -> tuple[slice, slice]:
    """Slices of one random ``crop`` window (same for the whole batch)."""
    h, w = x.shape[-2:]
    ch, cw = min(crop[0], h), min(crop[1], w)
    y0 = int(torch.randint(0, h - ch + 1, (1,), generator=gen))
    x0 = int(torch.randint(0, w - cw + 1, (1,), generator=gen))
    return slice(y0, y0 + ch), slice(x0, x0 + cw)


def adversary_step(anonymizer: nn.Module, adversary: nn.Module, opt: torch.optim.Optimizer, x: torch.Tensor,
                   window: tuple[slice, slice]) -> float:
    """One deobfuscator update: minimise MSE(D(A(x)), x) on the crop ``window``. Returns the loss."""
    ys, xs = window
    with torch.no_grad():
        a = anonymizer(x)[..., ys, xs]
    opt.zero_grad(set_to_none=True)
    loss = F.mse_loss(adversary(a), x[..., ys, xs])
    loss.backward()
    opt.step()
    return loss.item()


def anonymizer_step(anonymizer: nn.Module, adversary: nn.Module, utility: nn.Module | None,
                    opt: torch.optim.Optimizer, x: torch.Tensor, teacher: torch.Tensor | None,
                    window: tuple[slice, slice], privacy_weight: float) -> tuple[float, float]:
    """One anonymizer update: minimise ``L_util - privacy_weight · MSE(D(A(x)), x)``; D stays fixed.

    Returns ``(utility loss, the adversary's reconstruction MSE)`` before the update. With
    ``utility=None`` only the privacy term is used.
    """
    ys, xs = window
    adversary.requires_grad_(False)
    try:
        opt.zero_grad(set_to_none=True)
        a = anonymizer(x)
        priv = F.mse_loss(adversary(a[..., ys, xs]), x[..., ys, xs])
        util = utility_loss(detector_outputs(utility, a), teacher) if utility is not None else a.new_zeros(())
        (util - privacy_weight * priv).backward()
        opt.step()
    finally:
        adversary.requires_grad_(True)
    return util.item(), priv.item()


def identity_step(anonymizer: nn.Module, opt: torch.optim.Optimizer, x: torch.Tensor) -> float:
    opt.zero_grad(set_to_none=True)
    loss = F.l1_loss(anonymizer(x), x)
    loss.backward()
    opt.step()
    return loss.item()


def build_adversary(width: int, blocks: int) -> UNetLite:
    return UNetLite(width=width, blocks=blocks, full_res_skip=True)


# --------------------------------------------------------------------------- data helpers


def to_tensor(frames: np.ndarray) -> torch.Tensor:
    """``N×H×W×3`` uint8 RGB → float ``N×3×H×W`` in [0, 1]."""
    return torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float().div(255.0)


def to_u8(x: torch.Tensor) -> np.ndarray:
    return x.detach().clamp(0, 1).mul(255).round().to(torch.uint8).permute(0, 2, 3, 1).contiguous().cpu().numpy()


@torch.no_grad()
def anonymize(model: nn.Module, frames: np.ndarray, batch_size: int = 8, device: torch.device | None = None) -> np.ndarray:
    """``N×H×W×3`` uint8 RGB → the anonymized frames, same layout."""
    device = device or torch.device("cpu")
    out = [to_u8(model(to_tensor(frames[i:i + batch_size]).to(device))) for i in range(0, len(frames), batch_size)]
    return np.concatenate(out) if out else frames.copy()


def jpeg_roundtrip(frames_rgb: np.ndarray, quality: int = 90) -> np.ndarray:
    """What the server decodes from the camera's JPEG (RGB in, RGB out)."""
    out = []
    for f in frames_rgb:
        _ok, buf = cv2.imencode(".jpg", cv2.cvtColor(f, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
        out.append(cv2.cvtColor(cv2.imdecode(buf, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB))
    return np.stack(out)


# --------------------------------------------------------------------------- evaluation
