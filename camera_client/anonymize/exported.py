"""Run an encoder exported by `pvad export` (models/export.py): ONNX through onnxruntime, which
needs no PyTorch on the camera, or TorchScript. The file carries the checkpoint's card and encoder
id, so the server decodes these latents with the same checkpoint's decoder."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from pvad.errors import ModelLoadError

ONNX_INPUT, ONNX_OUTPUT = "frame", "latent"


class ExportedEncoder:
    """Runs an exported encoder: N x 3 x 240 x 320 float32 RGB in [0, 1] -> N x 16 x 30 x 40."""

    def __init__(self, path: Path, *, providers: list[str] | None = None) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise ModelLoadError(f"anonymizer.exported: no such file {self.path}; make one with "
                                 f"`pvad export --model CHECKPOINT --format onnx --out {self.path}`")
        if self.path.suffix == ".onnx":
            self._session, self.encoder_id, self.card, self.providers = _open_onnx(self.path, providers)
            self.format = "onnx"
        else:
            import torch  # TorchScript needs it; ONNX does not

            extra = {"card.json": "", "encoder_id": ""}
            self._module = torch.jit.load(str(self.path), _extra_files=extra).eval()
            text = {k: v.decode() if isinstance(v, bytes) else v for k, v in extra.items()}
            self.card, self.encoder_id = json.loads(text["card.json"] or "{}"), text["encoder_id"]
            self.format, self.providers = "torchscript", ["torch"]
        if not self.encoder_id:
            raise ModelLoadError(f"{self.path}: no pvad encoder id inside; export it with `pvad export`")

    def __call__(self, frames: np.ndarray) -> np.ndarray:
        if self.format == "onnx":
            dtype = np.float16 if self._session.get_inputs()[0].type == "tensor(float16)" else np.float32
            out = self._session.run(None, {ONNX_INPUT: np.ascontiguousarray(frames, dtype)})[0]
            return out.astype(np.float32, copy=False)
        import torch

        with torch.inference_mode():
            x = torch.from_numpy(frames)
            if next(self._module.parameters(), torch.zeros(1)).dtype == torch.float16:
                x = x.half()
            return self._module(x).float().numpy()


def _open_onnx(path: Path, providers: list[str] | None):
    try:
        import onnxruntime as ort
    except ImportError:
        raise ModelLoadError("runtime onnxruntime needs it installed: pip install onnxruntime "
                             "(onnxruntime-gpu, or NVIDIA's Jetson wheel, for CUDA/TensorRT)") from None
    available = ort.get_available_providers()
    wanted = providers or [p for p in ("TensorrtExecutionProvider", "CUDAExecutionProvider") if p in available] + [
        "CPUExecutionProvider"]
    missing = [p for p in wanted if p not in available]
    if missing:
        raise ModelLoadError(f"onnxruntime has no {', '.join(missing)}; available: {', '.join(available)}")
    session = ort.InferenceSession(str(path), providers=wanted)
    meta = session.get_modelmeta().custom_metadata_map
    return session, meta.get("pvad_encoder_id", ""), json.loads(meta.get("pvad_card", "{}")), session.get_providers()
