"""A short real cluster: `pvad server` processes behind Debian's HAProxy (PostgreSQL when the server has the
store, else SQLite per server), camera processes, one server SIGKILLed and restarted: nothing is lost."""

from __future__ import annotations

import asyncio

import pytest
from conftest import INTEL_VIDEO

from pvad.cluster.haproxy import haproxy_binary
from pvad.cluster.local import postgres_supported
from pvad.cluster.processes import PG_BIN_DIRS


def _postgres_installed() -> bool:
    return any((d / "postgres").exists() for d in PG_BIN_DIRS)


@pytest.mark.skipif(haproxy_binary() is None, reason="needs Debian's haproxy (make services installs it as root)")
def test_kill_one_of_two_servers_loses_no_frame(tmp_path):
    import os
    import shutil
    import tempfile
    from pathlib import Path

    from pvad import samples
    from pvad.bench.cluster import bench_cluster

    store = "postgres" if postgres_supported() and _postgres_installed() else "sqlite"
    source = INTEL_VIDEO if INTEL_VIDEO.exists() else samples.default_video()
    # PostgreSQL runs as the postgres user when this is root: its folder must be reachable (pytest's is 0700)
    workdir = Path(tempfile.mkdtemp(prefix="pvad-cluster-")) if store == "postgres" else tmp_path
    os.chmod(workdir, 0o711)
    try:
        result = asyncio.run(asyncio.wait_for(
            bench_cluster(workdir / "cluster", source=source, servers=2, cameras=3, fps=4.0, hang_s=0.0, phase_s=3.0,
                          stream_age_s=3.0, camera_processes=1, store=store), 240))
    finally:
        if workdir != tmp_path:
            shutil.rmtree(workdir, ignore_errors=True)
    assert result["store"] == store
    assert result["camera_errors"] == []
    assert result["frames_captured"] > 0 and result["frames_lost"] == 0
    assert result["killed_cameras"] >= 1
    assert result["cameras_moved"] >= result["killed_cameras"]  # the killed server's cameras moved ...
    assert result["cameras_moved_not_from_killed"] == 0  # ... and no other camera did
    assert result["rehome_s_max"] is not None and result["rehome_s_max"] < 10
    assert sum(result["cameras_per_server_after_restart"]) == 3
    if store == "postgres":  # a shared, fenced store: a frame whose commit outlived its ack is not scored again
        assert result["frames_scored_twice"] == 0
        assert result["alarms_missed"] == 0 and result["alarms_in_order"]
