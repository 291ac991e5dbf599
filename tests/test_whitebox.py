"""The white-box inversion attack (models/eval/whitebox.py): it learns, it is cached and resumed,
its budget and inputs are checked, and `pvad eval privacy --attack whitebox --json` reports the
issue's keys. Tiny decoders and a few dozen steps on 2 cores."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from models.checkpoint import save_checkpoint
from models.data.public import skimage_photos
from models.eval.privacy import _to_tensor, quality
from models.eval.whitebox import invert, load_target, public_pool, train_attacker
from models.eval.whitebox_config import WhiteboxAttackConfig
from models.nets.autoencoder import autoencoder_card, untrained_autoencoder
from models.nets.inversion import InversionDecoder
from pvad.config import validate_config
from pvad.errors import ConfigError, ModelLoadError

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def photos() -> np.ndarray:
    return skimage_photos()


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("ae") / "ae.pt"
    model = untrained_autoencoder(3)
    save_checkpoint(path, model, autoencoder_card(trained=False, provenance="test: random init", epsilon=2.0,
                                                  delta=1e-4))
    return path


def tiny(tmp_path: Path, **kw) -> WhiteboxAttackConfig:
    base = dict(width=16, blocks=1, steps=40, seconds=600, batch_size=4, lr=3e-3, cache_dir=tmp_path / "cache")
    return WhiteboxAttackConfig(**{**base, **kw})


def test_attacker_beats_a_random_decoder_within_a_few_steps(tmp_path, photos, checkpoint):
    target = load_target(checkpoint)
    pool = photos[:4]
    cfg = tiny(tmp_path, steps=60)
    attacker, budget = train_attacker(target, pool, cfg, progress=False)
    assert budget.steps == 60 and budget.frames_seen == 240
    torch.manual_seed(1)
    random = InversionDecoder(width=16, blocks=1).eval()
    trained_err = quality(pool, invert(target, attacker, pool))["mse"]
    random_err = quality(pool, invert(target, random, pool))["mse"]
    assert trained_err < 0.5 * random_err, (trained_err, random_err)


def test_attacker_is_cached_per_encoder_and_resumed(tmp_path, photos, checkpoint):
    target = load_target(checkpoint)
    cfg = tiny(tmp_path, steps=5)
    _, first = train_attacker(target, photos, cfg, progress=False)
    assert Path(first.checkpoint).is_file() and target.encoder_id in Path(first.checkpoint).name
    again, second = train_attacker(target, photos, cfg, progress=False)
    assert second.steps == 5 and second.seconds == pytest.approx(first.seconds)  # reused, no new step
    _, longer = train_attacker(target, photos, tiny(tmp_path, steps=8), progress=False)
    assert longer.steps == 8 and longer.frames_seen == 32  # resumed from 5


def test_zero_budget_is_refused_naming_it():
    with pytest.raises(ConfigError, match="budget is zero"):
        validate_config({"steps": 0}, WhiteboxAttackConfig, origin="attack")
    with pytest.raises(ConfigError, match="budget is zero"):
        validate_config({"seconds": 0}, WhiteboxAttackConfig, origin="attack")


def test_bad_encoders_get_clear_messages(tmp_path, checkpoint):
    with pytest.raises(ModelLoadError, match="no such file"):
        load_target(tmp_path / "missing.pt")
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(ModelLoadError, match="junk.pt"):
        load_target(junk)
    onnx = pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    from models.export import export_encoder

    exported = tmp_path / "enc.onnx"
    export_encoder(checkpoint, fmt="onnx", out=exported)
    assert load_target(exported, decoder_search=[checkpoint]).decoder is not None
    proto = onnx.load(str(exported))
    keep = [p for p in proto.metadata_props if p.key != "pvad_card"]
    del proto.metadata_props[:]
    proto.metadata_props.extend(keep)
    bare = tmp_path / "bare.onnx"
    onnx.save(proto, str(bare))
    with pytest.raises(ModelLoadError, match="no pvad card"):
        load_target(bare)


def test_public_pool_leaves_out_the_evaluated_files_even_under_another_name(tmp_path, photos):
    folder = tmp_path / "public"
    folder.mkdir()
    for i in range(3):
        cv2.imwrite(str(folder / f"p{i}.png"), photos[i][..., ::-1])
    copy = tmp_path / "eval.png"
    copy.write_bytes((folder / "p1.png").read_bytes())
    frames, counts = public_pool(WhiteboxAttackConfig(public=[folder]), exclude=[copy])
    assert len(frames) == 2 and set(counts) == {"p0.png", "p2.png"}
    (folder / "broken.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    with pytest.raises(ConfigError, match="broken.jpg"):
        public_pool(WhiteboxAttackConfig(public=[folder]))


def test_eval_privacy_whitebox_json_reports_the_issue_keys(tmp_path, photos, checkpoint):
    image = tmp_path / "astronaut.png"
    cv2.imwrite(str(image), photos[0][..., ::-1])
    public = tmp_path / "public"
    public.mkdir()
    for i in range(1, 5):
        cv2.imwrite(str(public / f"p{i}.png"), photos[i][..., ::-1])
    config = tmp_path / "attack.yaml"
    config.write_text(f"kind: attack-whitebox\nwidth: 16\nblocks: 1\nbatch_size: 2\npublic: [{public}]\n"
                      f"cache_dir: {tmp_path / 'cache'}\n")
    out = subprocess.run([sys.executable, "-m", "pvad.cli", "eval", "privacy", str(image), "--checkpoint",
                          str(checkpoint), "--attack", "whitebox", "--attack-config", str(config), "--attack-steps", "3",
                          "--no-progress", "--json", "--out", str(tmp_path / "out")],
                         capture_output=True, text=True, cwd=REPO, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    row = next(iter(result.values()))
    for key in ("attack_ssim", "ours_ssim", "faces_before", "faces_after", "attack_faces_after", "reid_top1",
                "attack_reid_top1", "epsilon", "delta"):
        assert key in row, key
    assert row["epsilon"] == 2.0 and row["delta"] == 1e-4
    assert row["attack_budget"]["steps"] == 3 and row["attack_budget"]["frames_seen"] == 6
    assert row["attack_budget"]["pool_frames"] == 4 and row["attack_budget"]["seconds"] > 0
    assert Path(row["attack"]["grid"]).is_file()
    bad = subprocess.run([sys.executable, "-m", "pvad.cli", "eval", "privacy", str(image), "--attack-steps", "3"],
                         capture_output=True, text=True, cwd=REPO, timeout=120)
    assert bad.returncode != 0 and "--attack whitebox" in bad.stderr


def test_prefilter_encoder_keeps_nothing_finer_than_its_blocks():
    """Two frames with the same 4×4 block means give the same latent, whatever their detail."""
    model = untrained_autoencoder(0, prefilter=4).eval()
    x = _to_tensor(skimage_photos()[:1])
    detail = torch.tensor([[1.0, -1.0, 1.0, -1.0], [-1.0, 1.0, -1.0, 1.0]] * 2).repeat(60, 80) * 0.05
    with torch.no_grad():
        z1, z2 = model.encoder(x), model.encoder(x + detail)
        assert z1.shape == (1, 16, 30, 40)
        assert torch.allclose(z1, z2, atol=1e-5)
        assert not torch.allclose(untrained_autoencoder(0).encoder(x), untrained_autoencoder(0).encoder(x + detail),
                                  atol=1e-3)
