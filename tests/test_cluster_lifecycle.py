"""A camera that arrives with stored state from a shared store (moved here, or this server restarted): flow
starts cold and the SAS is held for its first frame; counted in metrics. Needs PostgreSQL (pg_support)."""

from __future__ import annotations

import numpy as np
import pg_support
from conftest import client_tls, exchange, run, server_config

from analysis_server.service import cold_start_frames, start_server
from camera_client.client import make_frame
from pvad.config import BackgroundConfig, ServerConfig
from pvad.v1 import pvad_pb2


pg_cluster, pg = pg_support.pg_cluster, pg_support.pg  # a throw-away PostgreSQL (skips without one)


def _pg_config(pki, tmp_path, postgres, server_id: str) -> ServerConfig:
    cfg = server_config(pki, tmp_path)
    fields = {k: getattr(cfg, k) for k in cfg.model_fields_set if k not in ("event_log", "server_id")}
    return ServerConfig(**fields, postgres=postgres, server_id=server_id)


def test_sas_held_while_flow_is_cold_after_arrival(pki, tmp_path, analyzer, encoder, pg):
    rng = np.random.default_rng(3)
    frames = [(rng.random((240, 320, 3)) * 255).astype(np.uint8) for _ in range(6)]

    async def scenario():
        first = await start_server(_pg_config(pki, tmp_path, pg, "a"), analyzer=analyzer)  # the camera's first server
        try:
            acks_a = await exchange(f"127.0.0.1:{first.port}", client_tls(pki, "camera/cam-1"),
                                    [make_frame("cam-1", s, 0, encoder(frames[s])) for s in range(3)])
        finally:
            await first.stop(0)
        second = await start_server(_pg_config(pki, tmp_path, pg, "b"), analyzer=analyzer)  # same store: it arrives
        try:
            acks_b = await exchange(f"127.0.0.1:{second.port}", client_tls(pki, "camera/cam-1"),
                                    [make_frame("cam-1", s, 0, encoder(frames[s])) for s in range(3, 6)])
            fresh = await exchange(f"127.0.0.1:{second.port}", client_tls(pki, "camera/cam-2"),
                                   [make_frame("cam-2", 1, 0, encoder(frames[0]))])
            m = second.metrics
            counts = (m.camera_cold_starts._value.get(), m.frames_held_cold._value.get())
        finally:
            await second.stop(0)
        return acks_a, acks_b, fresh, counts

    acks_a, acks_b, fresh, counts = run(scenario())
    assert all(a.outcome == pvad_pb2.ACCEPTED for a in acks_a + acks_b + fresh)
    assert acks_b[0].score == acks_a[-1].score  # held: the stored SAS stands still on the cold frame
    assert acks_b[1].score != acks_b[0].score  # then it moves again
    assert counts == (1, 1)  # cam-1 arrived with stored state; cam-2 was new (nothing to hold against)


def test_no_hold_after_a_restart_on_one_sqlite_file(pki, tmp_path, analyzer, encoder):
    """One server, its own SQLite file: a restart keeps the old rule (the first frame is scored)."""
    rng = np.random.default_rng(4)
    frames = [(rng.random((240, 320, 3)) * 255).astype(np.uint8) for _ in range(4)]
    cfg = server_config(pki, tmp_path)

    async def scenario():
        out = []
        for seqs in ((0, 1), (2, 3)):
            srv = await start_server(cfg, analyzer=analyzer)
            try:
                out.append(await exchange(f"127.0.0.1:{srv.port}", client_tls(pki, "camera/cam-1"),
                                          [make_frame("cam-1", s, 0, encoder(frames[s])) for s in seqs]))
                held = srv.metrics.frames_held_cold._value.get()
            finally:
                await srv.stop(0)
        return out, held

    (first, second), held = run(scenario())
    assert held == 0 and second[0].score != first[-1].score


def test_cold_start_frames_follow_the_background():
    assert cold_start_frames(None) == 1
    assert cold_start_frames(BackgroundConfig(history=500)) == 25
    assert cold_start_frames(BackgroundConfig(history=100)) == 10
    assert cold_start_frames(BackgroundConfig(history=5)) == 1
