"""Shared pieces of every config section: the strict ``Section`` base, the frame geometry, the shipped weights."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict

# Frame geometry the paper's autoencoder is built for (G §3.3.1): 240 rows x 320 columns, RGB.
FRAME_HEIGHT = 240
FRAME_WIDTH = 320

# Trained autoencoder pairs that ship with pvad (made by `pvad train autoencoder` with
# configs/train-autoencoder-dp.yaml and configs/train-autoencoder.yaml; their cards say how).
SHIPPED_WEIGHTS = Path(__file__).resolve().parents[2] / "models" / "weights"
SHIPPED_DP_AUTOENCODER = SHIPPED_WEIGHTS / "autoencoder-dp-adagrad.pt"
SHIPPED_AUTOENCODER = SHIPPED_WEIGHTS / "autoencoder-adam.pt"
# The CPU-sized two-stream classifier trained on synthetic scenes, made by `pvad train classifier
# --config configs/train-classifier-synth.yaml`; its card says what it was and was not trained on.
SHIPPED_CLASSIFIER = SHIPPED_WEIGHTS / "classifier-synth.pt"
# The DP pair's encoder exported by `pvad export --format onnx` (for cameras without PyTorch).
SHIPPED_DP_ENCODER_ONNX = SHIPPED_WEIGHTS / "autoencoder-dp-adagrad.encoder.onnx"
# The hardened DP pair (configs/train-autoencoder-hardened.yaml): prefilter 4 and an adversarial
# phase against inversion on public frames; `pvad eval tradeoff` compares it with the others.
SHIPPED_HARDENED_AUTOENCODER = SHIPPED_WEIGHTS / "autoencoder-dp-hardened.pt"


def shipped_autoencoders() -> list[Path]:
    """Every autoencoder checkpoint in ``SHIPPED_WEIGHTS`` (not the ``*.last.pt`` training states), sorted."""
    return sorted(p for p in SHIPPED_WEIGHTS.glob("autoencoder*.pt") if not p.name.endswith(".last.pt"))


# The learned (adversarially trained) anonymizer, made by `pvad train anonymizer` (configs/train-anonymizer.yaml).
SHIPPED_LEARNED_ANONYMIZER = SHIPPED_WEIGHTS / "anonymizer-learned.pt"


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
