"""Tests for models/: autoencoder shapes and ids, checkpoints, backbones, two-stream classifier."""

from __future__ import annotations

import logging
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from models.nets import backbones as bb
from models.checkpoint import (
    ModelCard,
    load_checkpoint,
    load_model,
    register_architecture,
    save_checkpoint,
)
from models.nets.autoencoder import (
    INPUT_SIZE,
    LATENT_SHAPE,
    Autoencoder,
    autoencoder_card,
    encoder_id,
    load_autoencoder,
    untrained_autoencoder,
)
from models.nets.two_stream import TwoStreamClassifier, load_classifier, two_stream_card
from pvad.errors import ModelLoadError

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def ae() -> Autoencoder:
    return untrained_autoencoder(0).eval()


@pytest.fixture(scope="module")
def frames() -> torch.Tensor:
    return torch.rand(2, 3, *INPUT_SIZE, generator=torch.Generator().manual_seed(1))


# --------------------------------------------------------------------------- autoencoder


def test_encoder_latent_shape(ae: Autoencoder) -> None:
    with torch.inference_mode():
        z = ae.encoder(torch.rand(1, 3, *INPUT_SIZE))
    assert tuple(z.shape) == (1, *LATENT_SHAPE) == (1, 16, 30, 40)
    assert (z < 0).any(), "last encoder layer is linear, so latents can be negative"


def test_decoder_shape_and_range(ae: Autoencoder) -> None:
    z = torch.randn(2, *LATENT_SHAPE) * 50  # large values push the sigmoid to its ends
    with torch.inference_mode():
        x = ae.decoder(z)
    assert tuple(x.shape) == (2, 3, 240, 320)
    assert x.min() >= 0.0 and x.max() <= 1.0


def test_encoder_rejects_wrong_channels(ae: Autoencoder) -> None:
    with pytest.raises(ValueError, match="N×3×H×W"):
        ae.encoder(torch.rand(1, 1, *INPUT_SIZE))


def test_encoder_id_stable_and_sensitive() -> None:
    a, b, c = untrained_autoencoder(0), untrained_autoencoder(0), untrained_autoencoder(1)
    assert encoder_id(a.encoder) == encoder_id(b.encoder)
    assert len(encoder_id(a.encoder)) == 16
    assert encoder_id(a.encoder) != encoder_id(c.encoder)
    before = encoder_id(b.encoder)
    with torch.no_grad():
        b.encoder.layers[0].weight[0, 0, 0, 0] += 1e-3
    assert encoder_id(b.encoder) != before
    # the decoder is not part of the id
    with torch.no_grad():
        a.decoder.layers[0].bias.zero_()
    assert encoder_id(a.encoder) == encoder_id(untrained_autoencoder(0).encoder)


def test_encoder_id_ignores_memory_format() -> None:
    a = untrained_autoencoder(3)
    nchw = Autoencoder(channels_last=False)
    nchw.load_state_dict(a.state_dict())
    assert encoder_id(a.encoder) == encoder_id(nchw.encoder)


def test_untrained_autoencoder_leaves_global_rng_alone() -> None:
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    untrained_autoencoder(7)
    assert torch.equal(torch.rand(3), expected)


def test_encoder_id_same_in_another_process() -> None:
    code = (
        "from models.nets.autoencoder import untrained_autoencoder, encoder_id;"
        "print(encoder_id(untrained_autoencoder(5).encoder))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True, timeout=60
    ).stdout.strip()
    assert out == encoder_id(untrained_autoencoder(5).encoder)


def test_load_autoencoder_untrained() -> None:
    model, card = load_autoencoder(None, seed=4)
    assert not model.training
    assert card.trained is False and card.provenance == "untrained: random init, seed 4"
    assert card.input_size == (240, 320) and card.channel_order == "RGB"
    assert encoder_id(model.encoder) == encoder_id(untrained_autoencoder(4).encoder)


# --------------------------------------------------------------------------- checkpoints


def test_checkpoint_round_trip(tmp_path: Path, ae: Autoencoder, frames: torch.Tensor) -> None:
    card = autoencoder_card(trained=True, provenance="unit test", epsilon=3.0, delta=1e-5)
    card.metrics["mse"] = 0.01
    path = save_checkpoint(tmp_path / "sub" / "ae.pt", ae, card)
    model, loaded = load_autoencoder(path)
    assert loaded == card
    assert loaded.extra == {"epsilon": 3.0, "delta": 1e-5}
    assert not model.training
    with torch.inference_mode():
        assert torch.equal(model(frames), ae(frames))
    assert encoder_id(model.encoder) == encoder_id(ae.encoder)


@pytest.mark.parametrize("what", ["missing", "garbage", "wrong-format", "bad-card"])
def test_load_checkpoint_errors_name_the_file(tmp_path: Path, what: str) -> None:
    path = tmp_path / f"{what}.pt"
    if what == "garbage":
        path.write_bytes(b"this is not a torch file")
    elif what == "wrong-format":
        torch.save({"format": "something-else", "state_dict": {}}, path)
    elif what == "bad-card":
        torch.save({"format": "pvad-checkpoint-v1", "card": {"architecture": 1}, "state_dict": {}}, path)
    with pytest.raises(ModelLoadError) as info:
        load_checkpoint(path)
    assert str(path) in str(info.value)


def test_load_model_mismatched_weights(tmp_path: Path) -> None:
    clf = TwoStreamClassifier(backbone="tiny", streams=1, bag=False, hidden=32)
    card = autoencoder_card(trained=True, provenance="lies: two-stream weights")
    path = save_checkpoint(tmp_path / "wrong.pt", clf, card)
    with pytest.raises(ModelLoadError, match="do not match"):
        load_model(path)


def test_unknown_architecture_lists_known(tmp_path: Path, ae: Autoencoder) -> None:
    card = autoencoder_card(trained=False, provenance="x").model_copy(update={"architecture": "nope"})
    path = save_checkpoint(tmp_path / "nope.pt", ae, card)
    with pytest.raises(ModelLoadError, match="autoencoder-g22"):
        load_model(path)


def test_duplicate_architecture_rejected() -> None:
    with pytest.raises(ValueError, match="already registered"):
        register_architecture("two-stream")(lambda: torch.nn.Identity())


def test_model_card_forbids_extra_fields_and_checks_std() -> None:
    fields = autoencoder_card(trained=False, provenance="x").model_dump()
    with pytest.raises(ValueError):
        ModelCard(**fields, epsilon=1.0)
    with pytest.raises(ValueError, match="std"):
        ModelCard(**{**fields, "std": (1.0, 0.0, 1.0)})


# --------------------------------------------------------------------------- backbones


def test_backbone_registry_errors() -> None:
    with pytest.raises(ValueError) as info:
        bb.create_backbone("resnet9000")
    for name in ("resnet50", "resnet18", "mobilenet_v3_small", "tiny"):
        assert name in str(info.value)
    with pytest.raises(ValueError, match="already registered"):
        bb.register_backbone("tiny")(bb.tiny)


@pytest.mark.parametrize(
    ("name", "features"),
    [("tiny", 16), ("small_cnn", 256), ("resnet18", 512), ("mobilenet_v3_small", 576), ("resnet50", 2048)],
)
def test_backbone_pooled_features(name: str, features: int) -> None:
    net = bb.create_backbone(name, pretrained=False).eval()
    assert net.num_features == features and net.name == name and net.pretrained_loaded is False
    with torch.inference_mode():
        out = net(torch.rand(2, 3, 64, 64))
        fmap = net.forward_features(torch.rand(1, 3, 64, 64))
    assert tuple(out.shape) == (2, features)
    assert fmap.shape[1] == features
    assert any(m is net.last_conv for m in net.features.modules())


@pytest.fixture()
def hub_dir(tmp_path: Path) -> Iterator[Path]:
    old = torch.hub.get_dir()
    torch.hub.set_dir(str(tmp_path / "hub"))
    yield tmp_path / "hub"
    torch.hub.set_dir(old)


def test_pretrained_missing_offline_warns_and_keeps_random(
    hub_dir: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(bb, "_reachable", lambda url: False)
    with caplog.at_level(logging.WARNING, logger="models.nets.backbones"):
        net = bb.create_backbone("resnet18", pretrained=True)
    assert net.pretrained_loaded is False
    expected = hub_dir / "checkpoints" / "resnet18-f37072fd.pth"
    assert str(expected) in caplog.text


def test_pretrained_download_failure_is_not_fatal(hub_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(weights: object) -> dict:
        raise ConnectionResetError("network went away")

    monkeypatch.setattr(bb, "_reachable", lambda url: True)
    monkeypatch.setattr(bb, "_fetch_state_dict", boom)
    assert bb.create_backbone("mobilenet_v3_small", pretrained=True).pretrained_loaded is False


def test_pretrained_loads_from_hub_cache(hub_dir: Path) -> None:
    import torchvision

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(99)
        reference = torchvision.models.resnet18(weights=None)
    cached = bb.weights_cache_path(torchvision.models.ResNet18_Weights.IMAGENET1K_V1)
    cached.parent.mkdir(parents=True)
    torch.save(reference.state_dict(), cached)
    net = bb.create_backbone("resnet18", pretrained=True)
    assert net.pretrained_loaded is True
    assert torch.equal(net.last_conv[1].conv2.weight, reference.layer4[1].conv2.weight)


# --------------------------------------------------------------------------- two-stream


def _inputs(streams: int, bag: bool, n: int = 3) -> dict[str, torch.Tensor]:
    kw = {"frame": torch.randn(n, 3, 32, 48)}
    if streams == 2:
        kw["flow"] = torch.randn(n, 3, 32, 48)
    if bag:
        kw["bag"] = torch.randint(0, 5, (n, 80)).float()
    return kw


@pytest.mark.parametrize("streams", [1, 2])
@pytest.mark.parametrize("bag", [False, True])
def test_two_stream_variants(streams: int, bag: bool) -> None:
    model = TwoStreamClassifier(backbone="tiny", streams=streams, bag=bag, hidden=32).eval()
    assert (model.flow_stream is not None) == (streams == 2)
    kw = _inputs(streams, bag)
    logits = model(**kw)
    assert tuple(logits.shape) == (3,)
    proba = model.predict_proba(**kw)
    assert not proba.requires_grad
    assert torch.allclose(proba, torch.sigmoid(logits.detach()))
    # every required input is checked
    for name in [k for k in kw if k != "frame"]:
        with pytest.raises(ValueError):
            model(**{k: v for k, v in kw.items() if k != name})
    # unused inputs are refused, and shapes must agree
    extra = _inputs(2, True)
    for name in ("flow", "bag"):
        if name not in kw:
            with pytest.raises(ValueError):
                model(**kw, **{name: extra[name]})
    with pytest.raises(ValueError):
        model(**{**kw, "frame": kw["frame"][:, :1]})


def test_two_stream_shape_mismatch_and_args() -> None:
    model = TwoStreamClassifier(backbone="tiny", streams=2, bag=True, hidden=32)
    kw = _inputs(2, True)
    with pytest.raises(ValueError, match="flow shape"):
        model(**{**kw, "flow": kw["flow"][:2]})
    with pytest.raises(ValueError, match="bag"):
        model(**{**kw, "bag": kw["bag"][:, :79]})
    with pytest.raises(ValueError, match="non-negative"):
        model(**{**kw, "bag": -kw["bag"] - 1})
    with pytest.raises(ValueError, match="streams"):
        TwoStreamClassifier(backbone="tiny", streams=3, bag=False)
    with pytest.raises(TypeError):
        TwoStreamClassifier("tiny", 1, False)  # type: ignore[misc]


def test_avgmax_pooling_concatenates_mean_and_max(tmp_path: Path) -> None:
    model = TwoStreamClassifier(backbone="tiny", streams=2, bag=False, hidden=8, pool="avgmax").eval()
    assert model.head[0].in_features == 2 * 2 * model.frame_stream.num_features
    x = torch.zeros(2, 3, 32, 48)
    x[1, :, 10:14, 20:24] = 3.0  # a small bright patch: the max sees it at full strength, the mean diluted
    with torch.inference_mode():
        fmap = model.frame_stream.forward_features(x)
        pooled = model._pooled(model.frame_stream, x)
    n = model.frame_stream.num_features
    assert torch.equal(pooled[:, :n], fmap.mean(dim=(2, 3))) and torch.equal(pooled[:, n:], fmap.amax(dim=(2, 3)))
    assert (pooled[1, n:] - pooled[0, n:]).abs().max() > (pooled[1, :n] - pooled[0, :n]).abs().max()
    # the pooling travels in the card; a card written before the field existed means "avg"
    card = two_stream_card(trained=True, provenance="unit test", **model.arch_kwargs)
    path = save_checkpoint(tmp_path / "clf.pt", model, card)
    loaded, loaded_card = load_classifier(path, backbone=None, streams=None, bag=None, hidden=None, pretrained=False, seed=0)
    assert loaded.pool == "avgmax" and loaded_card.arch_kwargs["pool"] == "avgmax"
    old = TwoStreamClassifier(backbone="tiny", streams=1, bag=False, hidden=8)
    kwargs = {k: v for k, v in old.arch_kwargs.items() if k != "pool"}
    path = save_checkpoint(tmp_path / "old.pt", old, two_stream_card(trained=True, provenance="old", **kwargs))
    assert load_classifier(path, backbone=None, streams=None, bag=None, hidden=None, pretrained=False, seed=0)[0].pool == "avg"
    with pytest.raises(ValueError, match="pool"):
        TwoStreamClassifier(backbone="tiny", streams=1, bag=False, pool="median")


def test_load_classifier_untrained_is_seeded() -> None:
    kw = dict(backbone="tiny", streams=2, bag=True, hidden=32, pretrained=False)
    a, card = load_classifier(None, seed=3, **kw)
    b, _ = load_classifier(None, seed=3, **kw)
    assert not a.training and card.trained is False
    assert card.provenance == "untrained: random init, seed 3"
    assert card.mean == bb.IMAGENET_MEAN and card.arch_kwargs["streams"] == 2
    inputs = _inputs(2, True)
    assert torch.equal(a(**inputs), b(**inputs))


def test_classifier_round_trip_and_mismatch(tmp_path: Path) -> None:
    model = TwoStreamClassifier(backbone="tiny", streams=2, bag=True, hidden=32).eval()
    card = two_stream_card(trained=True, provenance="unit test", pretrained=True, **model.arch_kwargs)
    assert "pretrained" not in card.arch_kwargs
    path = save_checkpoint(tmp_path / "clf.pt", model, card)
    loaded, loaded_card = load_classifier(path, backbone="tiny", streams=2, bag=True, hidden=64, pretrained=True, seed=0)
    assert loaded_card == card and loaded.hidden == 32  # the file's card wins over `hidden`
    inputs = _inputs(2, True)
    assert torch.equal(loaded(**inputs), model(**inputs))
    for field, value in [("streams", 1), ("bag", False), ("backbone", "resnet18")]:
        kw = dict(backbone="tiny", streams=2, bag=True) | {field: value}
        with pytest.raises(ModelLoadError, match=field):
            load_classifier(path, hidden=32, pretrained=False, seed=0, **kw)


def test_load_classifier_rejects_autoencoder_file(tmp_path: Path, ae: Autoencoder) -> None:
    path = save_checkpoint(tmp_path / "ae.pt", ae, autoencoder_card(trained=False, provenance="x"))
    with pytest.raises(ModelLoadError, match="two-stream"):
        load_classifier(path, backbone="tiny", streams=1, bag=False, hidden=32, pretrained=False, seed=0)
