"""Export the camera-side network (the dp-encoder) to ONNX or TorchScript, with its card, checked
against PyTorch on real frames.

The exported file carries the checkpoint's card (JSON) and the encoder id: in ONNX as metadata
properties `pvad_card` and `pvad_encoder_id`, in TorchScript as the extra files `card.json` and
`encoder_id`. A camera running the export sends latents under the same encoder id, so the server
decodes them with the decoder of the same checkpoint.
"""

from __future__ import annotations

import copy
import json
import logging
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from camera_client.anonymize.exported import ONNX_INPUT, ONNX_OUTPUT, ExportedEncoder
from models.checkpoint import load_model
from models.eval.image_metrics import ssim
from models.nets.autoencoder import ARCHITECTURE, encoder_id
from pvad.errors import ModelLoadError

log = logging.getLogger(__name__)

FORMATS = ("onnx", "torchscript")


def _load_encoder(model_path: Path):
    model, card = load_model(model_path)  # ModelLoadError for a file without a valid card
    if card.architecture != ARCHITECTURE:
        raise ModelLoadError(f"{model_path}: architecture {card.architecture!r} has no camera-side network to export; "
                             f"export an autoencoder ({ARCHITECTURE}) checkpoint")
    return model, card


def _export_onnx(encoder: torch.nn.Module, example: torch.Tensor, out: Path, card_json: str, eid: str) -> None:
    try:
        import onnx
    except ImportError:
        raise ModelLoadError("ONNX export needs onnx and onnxruntime: pip install 'pvad[export]'") from None
    torch.onnx.export(encoder, (example,), str(out), input_names=[ONNX_INPUT], output_names=[ONNX_OUTPUT],
                      dynamic_axes={ONNX_INPUT: {0: "n"}, ONNX_OUTPUT: {0: "n"}}, dynamo=False)
    proto = onnx.load(str(out))
    for key, value in (("pvad_card", card_json), ("pvad_encoder_id", eid)):
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(proto, str(out))


def _export_torchscript(encoder: torch.nn.Module, example: torch.Tensor, out: Path, card_json: str, eid: str) -> None:
    traced = torch.jit.trace(encoder, example, check_trace=False)
    torch.jit.save(traced, str(out), _extra_files={"card.json": card_json, "encoder_id": eid})


def export_encoder(model_path: Path, *, fmt: str, out: Path, fp16: bool = False,
                   frames: np.ndarray | None = None) -> dict:
    """Export, reload, and compare with the PyTorch encoder on `frames` (N x 240 x 320 x 3 uint8 RGB)."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown export format {fmt!r}; known: {', '.join(FORMATS)}")
    model, card = _load_encoder(model_path)
    encoder = model.encoder.eval()  # the camera's PyTorch path (channels_last), the reference
    eid = encoder_id(encoder)
    card_json = json.dumps(card.model_dump(mode="json"))
    h, w = card.input_size
    example = torch.rand(1, 3, h, w)
    target = copy.deepcopy(encoder).to(memory_format=torch.contiguous_format)  # exporters trace NCHW
    if fp16:
        target = target.half()
        example = example.half()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with torch.inference_mode(False), torch.no_grad():
        (_export_onnx if fmt == "onnx" else _export_torchscript)(target, example, out, card_json, eid)
    exported = ExportedEncoder(out)
    if frames is None:
        frames = (np.random.default_rng(0).random((8, h, w, 3)) * 255).astype(np.uint8)
    x = np.ascontiguousarray(frames.transpose(0, 3, 1, 2), np.float32) / 255.0
    with torch.inference_mode():
        z_torch = np.concatenate([encoder(torch.from_numpy(x[i:i + 1])).numpy() for i in range(len(x))])
        z_export = np.concatenate([exported(x[i:i + 1]) for i in range(len(x))])
        dec = model.decoder.eval()
        r_torch = dec(torch.from_numpy(z_torch)).permute(0, 2, 3, 1).clamp(0, 1).numpy()
        r_export = dec(torch.from_numpy(z_export)).permute(0, 2, 3, 1).clamp(0, 1).numpy()
    return {
        "format": fmt,
        "fp16": fp16,
        "out": str(out),
        "bytes": out.stat().st_size,
        "encoder_id": eid,
        "providers": exported.providers,
        "frames": len(x),
        "max_abs_diff": float(np.abs(z_torch - z_export).max()),
        "ssim_vs_torch": float(statistics.fmean(ssim(a, b) for a, b in zip(r_torch, r_export))),
        "ms_per_frame_torch": _ms(lambda f: encoder(torch.from_numpy(f).contiguous(memory_format=torch.channels_last)), x),
        "ms_per_frame_export": _ms(exported, x),
    }


def _ms(fn, x: np.ndarray) -> float:
    with torch.inference_mode():
        fn(x[:1])  # warm-up
        times = []
        for i in range(len(x)):
            t0 = time.perf_counter()
            fn(x[i:i + 1])
            times.append(1000.0 * (time.perf_counter() - t0))
    return round(statistics.median(times), 3)
