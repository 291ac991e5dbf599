"""`pvad bench e2e` end to end: a server process, camera processes and a subscriber on loopback."""

import asyncio

from pvad import samples
from pvad.bench.e2e import bench_e2e

TINY = {"device": "cpu", "detector": {"backend": "none"},
        "classifier": {"backbone": "tiny", "hidden": 16, "bag": False, "pretrained": "never"}}


def test_bench_e2e_measures_capture_to_score_latency(tmp_path):
    r = asyncio.run(bench_e2e(tmp_path, source=samples.default_video(), cameras=2, fps=5.0, seconds=4.0,
                              settle_s=0.5, analysis=TINY))
    assert r["profile"] == "custom" and r["camera_reports"] == 2 and r["server_crashes"] == 0
    assert r["frames_counted"] >= 10  # two cameras, about 3 s counted each at 5 fps
    lat = r["latency_ms"]
    assert 0 < lat["p50"] <= lat["p95"] <= lat["p99"] <= lat["max"] < 10_000
    assert r["frames_acked"] <= r["frames_captured"] and r["frames_acked"] > 0
    assert r["frames_lost"] == 0
    assert 0 < r["throughput_fps"] <= 2 * r["offered_fps"]
