"""`pvad export`: the exported encoder matches PyTorch, carries its card, and a camera running it
with onnxruntime sends latents the server accepts under the same encoder id."""

from __future__ import annotations

import numpy as np
import pytest

from models.checkpoint import save_checkpoint
from pvad.config import SHIPPED_DP_AUTOENCODER, DpEncoderAnonymizer
from pvad.errors import ModelLoadError

FRAMES = (np.random.default_rng(0).random((4, 240, 320, 3)) * 255).astype(np.uint8)


@pytest.mark.parametrize("fmt, suffix", [("onnx", ".onnx"), ("torchscript", ".pt")])
def test_export_matches_pytorch_and_carries_the_card(tmp_path, fmt, suffix):
    if fmt == "onnx":
        pytest.importorskip("onnx")
        pytest.importorskip("onnxruntime")
    from camera_client.anonymize.exported import ExportedEncoder
    from models.export import export_encoder

    out = tmp_path / f"encoder{suffix}"
    r = export_encoder(SHIPPED_DP_AUTOENCODER, fmt=fmt, out=out, frames=FRAMES)
    assert r["format"] == fmt and r["frames"] == 4
    assert r["max_abs_diff"] < 1e-4 and r["ssim_vs_torch"] > 0.9999
    assert r["ms_per_frame_torch"] > 0 and r["ms_per_frame_export"] > 0
    reloaded = ExportedEncoder(out)
    assert reloaded.encoder_id == r["encoder_id"]
    assert reloaded.card["architecture"] == "autoencoder-g22" and reloaded.card["trained"] is True


def test_export_refuses_a_file_without_a_card_and_unknown_formats(tmp_path):
    import torch

    from models.export import export_encoder

    bare = tmp_path / "bare.pt"
    torch.save({"weights": torch.zeros(3)}, bare)
    with pytest.raises(ModelLoadError, match="bare.pt"):
        export_encoder(bare, fmt="onnx", out=tmp_path / "x.onnx")
    with pytest.raises(ValueError, match="unknown export format"):
        export_encoder(SHIPPED_DP_AUTOENCODER, fmt="tflite", out=tmp_path / "x.tflite")


def test_export_refuses_a_non_autoencoder_checkpoint(tmp_path):
    from models.export import export_encoder
    from models.nets.two_stream import TwoStreamClassifier, two_stream_card

    model = TwoStreamClassifier(backbone="tiny", streams=1, bag=False, hidden=8)
    path = save_checkpoint(tmp_path / "cls.pt", model, two_stream_card(trained=False, provenance="test", **model.arch_kwargs))
    with pytest.raises(ModelLoadError, match="no camera-side network"):
        export_encoder(path, fmt="torchscript", out=tmp_path / "x.pt")


def test_camera_runtime_onnxruntime_matches_the_torch_encoder(tmp_path):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    from camera_client.anonymize import create_anonymizer
    from models.export import export_encoder
    from pvad.codec import decode_latent

    out = tmp_path / "enc.onnx"
    export_encoder(SHIPPED_DP_AUTOENCODER, fmt="onnx", out=out, frames=FRAMES[:1])
    onnx_cam = create_anonymizer(DpEncoderAnonymizer(runtime="onnxruntime", exported=out))
    torch_cam = create_anonymizer(DpEncoderAnonymizer())
    bgr = FRAMES[0][..., ::-1].copy()
    a, b = onnx_cam(bgr), torch_cam(bgr)
    assert a.encoder_id == b.encoder_id  # the server decodes both with the same decoder
    za, zb = decode_latent(a, expected_shape=(16, 30, 40)), decode_latent(b, expected_shape=(16, 30, 40))
    assert np.abs(za - zb).max() < 1e-2  # float16 on the wire


def test_onnxruntime_defaults_to_the_shipped_export_and_names_a_missing_file(tmp_path):
    pytest.importorskip("onnxruntime")
    from camera_client.anonymize import create_anonymizer
    from camera_client.anonymize.exported import ExportedEncoder
    from pvad.config import SHIPPED_DP_ENCODER_ONNX

    cam = create_anonymizer(DpEncoderAnonymizer(runtime="onnxruntime"))
    assert cam.encoder_id == create_anonymizer(DpEncoderAnonymizer()).encoder_id
    assert DpEncoderAnonymizer(runtime="onnxruntime").exported == SHIPPED_DP_ENCODER_ONNX
    with pytest.raises(ModelLoadError, match="nope.onnx"):
        create_anonymizer(DpEncoderAnonymizer(runtime="onnxruntime", exported=tmp_path / "nope.onnx"))
    with pytest.raises(ModelLoadError, match="CUDAExecutionProvider"):
        ExportedEncoder(SHIPPED_DP_ENCODER_ONNX, providers=["CUDAExecutionProvider"])


def test_demo_streams_with_the_onnx_encoder(tmp_path):
    pytest.importorskip("onnxruntime")
    from pvad.config import DemoConfig
    from pvad.demo import run_demo

    cfg = DemoConfig(workdir=tmp_path, max_frames=6, anonymizer=DpEncoderAnonymizer(runtime="onnxruntime"))
    import io

    summary = run_demo_sync(run_demo(cfg, out=io.StringIO()))
    assert summary["frames_acked"] == summary["frames_sent"] == 6 and summary["frames_rejected"] == 0


def run_demo_sync(coro):
    import asyncio

    return asyncio.run(coro)


def test_the_hardened_prefilter_encoder_exports_to_onnx_with_its_id(tmp_path):
    """AvgPool prefilter included: same latents as PyTorch, and the id that the server's decoder carries."""
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    from camera_client.anonymize.exported import ExportedEncoder
    from models.eval.whitebox import load_target
    from models.export import export_encoder
    from models.nets.autoencoder import encoder_id, load_autoencoder
    from pvad.config import SHIPPED_HARDENED_AUTOENCODER

    out = tmp_path / "hardened.onnx"
    r = export_encoder(SHIPPED_HARDENED_AUTOENCODER, fmt="onnx", out=out, frames=FRAMES[:2])
    assert r["max_abs_diff"] < 1e-4
    model, card = load_autoencoder(SHIPPED_HARDENED_AUTOENCODER)
    assert card.arch_kwargs == {"prefilter": 4} and ExportedEncoder(out).encoder_id == encoder_id(model.encoder)
    assert load_target(out).decoder is not None  # the white-box attack finds its shipped decoder by id


def test_an_encoder_whose_latent_the_decoder_cannot_take_is_named(tmp_path):
    import torch

    from models.eval.whitebox import load_target

    # a stand-in exported file: an ONNX encoder with a card whose latent is 16×60×80
    onnx = pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    conv = torch.nn.Conv2d(3, 16, 3, stride=4, padding=1).eval()
    path = tmp_path / "wrong.onnx"
    torch.onnx.export(conv, torch.zeros(1, 3, 240, 320), str(path), input_names=["frame"], output_names=["latent"],
                      dynamic_axes={"frame": {0: "n"}, "latent": {0: "n"}}, dynamo=False)
    proto = onnx.load(str(path))
    for key, value in (("pvad_card", '{"architecture": "autoencoder-g22", "trained": true}'), ("pvad_encoder_id", "x")):
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(proto, str(path))
    with pytest.raises(ModelLoadError, match=r"wrong.onnx: its latent is \(16, 60, 80\), the decoder takes \(16, 30, 40\)"):
        load_target(path, decoder_search=[])
