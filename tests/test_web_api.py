"""The operator dashboard over HTTP (httpx against the real uvicorn task on port 0): login and roles,
the no-raw-frame rules, the audit trail, acknowledgements, and the SSE stream (resume after a restart,
per-user camera limits, clean shutdown)."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import stat
import tempfile
import time

import cv2
import httpx
import numpy as np
import pytest
from conftest import client_tls, exchange, run
from web_support import (
    ALARM_PATTERN,
    PASSWORD,
    PatternAnalyzer,
    SseReader,
    logged_in,
    login,
    make_users,
    web_config,
)

pytest.importorskip("fastapi")
pytest.importorskip("argon2")

from analysis_server.service import start_server  # noqa: E402
from analysis_server.web.views import encode_jpeg  # noqa: E402
from camera_client.anonymize import create_anonymizer  # noqa: E402
from camera_client.client import make_frame  # noqa: E402
from pvad.config import BlurAnonymizer  # noqa: E402
from pvad.v1 import pvad_pb2  # noqa: E402

rng = np.random.default_rng(7)
SOURCE = (rng.random((240, 320, 3)) * 255).astype(np.uint8)  # BGR, what the camera captured


@pytest.fixture(scope="module")
def users_file(tmp_path_factory):
    return make_users(tmp_path_factory.mktemp("users") / "users.json")


def base(srv) -> str:
    return f"http://127.0.0.1:{srv.web_port}"


def latents(encoder, seqs, camera="cam-1", frame=SOURCE):
    return [make_frame(camera, s, time.time_ns(), encoder(frame)) for s in seqs]


def test_login_cookie_roles_and_audit(pki, tmp_path, analyzer, encoder, users_file):
    async def scenario():
        srv = await start_server(web_config(pki, tmp_path, users_file), analyzer=analyzer)
        address = f"127.0.0.1:{srv.port}"
        try:
            async with httpx.AsyncClient(base_url=base(srv), timeout=10) as anon:
                assert (await anon.get("/api/me")).status_code == 401
                assert (await anon.get("/api/stream")).status_code == 401
                assert (await anon.get("/api/cameras/cam-1/view.jpg")).status_code == 401
                assert (await login(anon, "olga", "wrong password")).status_code == 401
                assert (await login(anon, "nobody", PASSWORD)).status_code == 401
                forged = httpx.AsyncClient(base_url=base(srv), cookies={"pvad_session": "cm9vdA.9999999999.xxxx"})
                assert (await forged.get("/api/me")).status_code == 401
                await forged.aclose()
                ok = await login(anon, "olga")
                assert ok.status_code == 200
                cookie = ok.headers["set-cookie"].lower()
                assert "httponly" in cookie and "samesite=strict" in cookie
                assert (await anon.get("/api/me")).json()["role"] == "operator"
                cross = await anon.post("/api/login", json={"user": "olga", "password": PASSWORD},
                                        headers={"Origin": "http://evil.example"})
                assert cross.status_code == 403
            await exchange(address, client_tls(pki, "camera/cam-1"), latents(encoder, range(1, 4)))
            acks = await exchange(address, client_tls(pki, "camera/cam-1"), [])
            assert acks == []
            ev = srv.hub.log.append(camera_id="cam-1", kind=pvad_pb2.ALARM_RAISED, seq=3, score=0.6, confidence=0.9)
            viewer, operator, admin = [await logged_in(base(srv), u) for u in ("vic", "olga", "root")]
            try:
                assert (await viewer.get("/api/cameras/cam-1/view.jpg")).status_code == 403
                assert (await viewer.post(f"/api/alarms/{ev.event_id}/ack", json={})).status_code == 403
                assert (await viewer.get("/api/audit")).status_code == 403
                assert (await viewer.get("/api/alarms")).status_code == 200  # a viewer sees alarms
                assert (await operator.get("/api/audit")).status_code == 403
                r = await operator.get("/api/cameras/cam-1/view.jpg")
                assert r.status_code == 200 and r.headers["content-type"] == "image/jpeg"
                assert r.headers["cache-control"] == "no-store"
                assert (await operator.get("/api/cameras/cam-9/view.jpg")).status_code == 404
                assert (await operator.post(f"/api/alarms/{ev.event_id}/ack", json={"note": "seen"})).status_code == 200
                rows = (await admin.get("/api/audit")).json()["rows"]
                metrics = srv.metrics.registry.get_sample_value
                return rows, metrics("pvad_web_logins_total", {"outcome": "refused"}), \
                    metrics("pvad_web_views_total", {"outcome": "forbidden"})
            finally:
                for c in (viewer, operator, admin):
                    await c.aclose()
        finally:
            await srv.stop(0)

    rows, refused, forbidden = run(scenario())
    actions = [(r["user"], r["action"]) for r in rows]
    assert ("olga", "login-failed") in actions and ("nobody", "login-failed") in actions
    assert ("olga", "login") in actions and ("vic", "login") in actions
    assert ("olga", "view") in actions and ("olga", "ack") in actions
    assert not any(a == "view" and u == "vic" for u, a in actions)
    assert refused == 2 and forbidden == 1


def test_users_file_changes_apply_to_open_sessions(pki, tmp_path, analyzer, users_file):
    from analysis_server.web.auth import add_user, remove_user

    own = tmp_path / "users.json"
    own.write_bytes(users_file.read_bytes())

    async def scenario():
        srv = await start_server(web_config(pki, tmp_path, own), analyzer=analyzer)
        try:
            client = await logged_in(base(srv), "olga")
            before = (await client.get("/api/me")).status_code
            remove_user(own, "olga")
            after = (await client.get("/api/me")).status_code
            add_user(own, "olga", PASSWORD, "operator")  # the same password again: a new hash, old cookies die
            again = (await client.get("/api/me")).status_code
            await client.aclose()
            return before, after, again
        finally:
            await srv.stop(0)

    assert run(scenario()) == (200, 401, 401)
    assert stat.S_IMODE(os.stat(own).st_mode) == 0o600


def test_served_image_is_the_decoder_output_never_the_source_and_nothing_is_written(
        pki, tmp_path, analyzer, encoder, users_file, monkeypatch):
    import torch

    workdir = tmp_path / "cwd"
    workdir.mkdir()
    monkeypatch.chdir(workdir)
    t_start = time.time()
    lat = encoder(SOURCE)  # the known latent

    async def scenario():
        srv = await start_server(web_config(pki, tmp_path, users_file), analyzer=analyzer)
        try:
            await exchange(f"127.0.0.1:{srv.port}", client_tls(pki, "camera/cam-1"), [make_frame("cam-1", 1, 0, lat)])
            op = await logged_in(base(srv), "olga")
            first = await op.get("/api/cameras/cam-1/view.jpg")
            second = await op.get("/api/cameras/cam-1/view.jpg")
            await op.aclose()
            return first, second
        finally:
            await srv.stop(0)

    first, second = run(scenario())
    assert first.status_code == 200 and first.content == second.content
    # the decoder half alone on the same latent, outside the server
    from pvad.codec import decode_latent

    z = torch.from_numpy(decode_latent(lat, expected_shape=(16, 30, 40))[None])
    with torch.inference_mode():
        rgb = analyzer.decoders.decoders[lat.encoder_id](z).float().clamp(0, 1).mul(255).round().to(torch.uint8)
    decoded = rgb[0].permute(1, 2, 0).numpy()
    assert first.content == encode_jpeg(decoded)
    source_rgb = cv2.cvtColor(SOURCE, cv2.COLOR_BGR2RGB)
    assert first.content != encode_jpeg(source_rgb)
    served = cv2.cvtColor(cv2.imdecode(np.frombuffer(first.content, np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    assert served.shape == (240, 320, 3)
    err_decoder = np.abs(served.astype(float) - decoded).mean()
    err_source = np.abs(served.astype(float) - source_rgb).mean()
    assert err_decoder < 3.0 < 20.0 < err_source
    # no image file anywhere this test could have written one
    magic = (b"\xff\xd8\xff", b"\x89PNG")
    for root in (tmp_path, workdir, tempfile.gettempdir()):
        for dirpath, _, names in os.walk(root):
            for n in names:
                p = os.path.join(dirpath, n)
                try:
                    if os.path.getmtime(p) >= t_start and os.path.isfile(p):
                        with open(p, "rb") as f:
                            assert not f.read(4).startswith(magic), f"image file written: {p}"
                except OSError:
                    continue


def test_none_camera_never_gets_a_view_whatever_accept_allows(pki, tmp_path, analyzer, users_file):
    raw = pvad_pb2.Image(anonymizer="none", jpeg=cv2.imencode(".jpg", SOURCE)[1].tobytes())
    blur = create_anonymizer(BlurAnonymizer())(SOURCE)
    cfg = web_config(pki, tmp_path, users_file, accept=["dp-encoder", "blur", "none"])

    async def scenario():
        srv = await start_server(cfg, analyzer=analyzer)
        address = f"127.0.0.1:{srv.port}"
        try:
            acks_raw = await exchange(address, client_tls(pki, "camera/cam-2"), [make_frame("cam-2", 1, 0, raw)])
            await exchange(address, client_tls(pki, "camera/cam-1"), [make_frame("cam-1", 1, 0, blur)])
            admin = await logged_in(base(srv), "root")
            raw_view = await admin.get("/api/cameras/cam-2/view.jpg")
            blur_view = await admin.get("/api/cameras/cam-1/view.jpg")
            cams = {c["camera"]: c for c in (await admin.get("/api/cameras")).json()["cameras"]}
            await admin.aclose()
            assert srv.ingest.live.cameras["cam-2"].payload is None  # the raw frame is not even kept for a view
            return acks_raw, raw_view, blur_view, cams
        finally:
            await srv.stop(0)

    acks_raw, raw_view, blur_view, cams = run(scenario())
    assert acks_raw[0].outcome == pvad_pb2.ACCEPTED  # the server analyses raw frames here...
    assert raw_view.status_code == 403 and "none" in raw_view.json()["detail"]  # ...and never shows one
    assert blur_view.status_code == 200
    sent_blur = cv2.imdecode(np.frombuffer(blur.jpeg, np.uint8), cv2.IMREAD_COLOR)
    got = cv2.imdecode(np.frombuffer(blur_view.content, np.uint8), cv2.IMREAD_COLOR)
    assert np.abs(got.astype(float) - sent_blur).mean() < 3.0  # the received anonymized image
    assert cams["cam-2"]["anonymizer"] == "none" and cams["cam-1"]["anonymizer"] == "blur"


def test_audit_and_acks_are_append_only(pki, tmp_path, analyzer, users_file):
    async def scenario():
        srv = await start_server(web_config(pki, tmp_path, users_file), analyzer=analyzer)
        try:
            ev = srv.hub.log.append(camera_id="cam-1", kind=pvad_pb2.ALARM_RAISED, seq=1, score=0.6, confidence=0.9)
            op = await logged_in(base(srv), "olga")
            assert (await op.post(f"/api/alarms/{ev.event_id}/ack", json={"note": "n"})).status_code == 200
            await op.aclose()
        finally:
            await srv.stop(0)

    run(scenario())
    db = sqlite3.connect(tmp_path / "events.sqlite")
    n = db.execute("SELECT COUNT(*) FROM audit").fetchone()[0]
    assert n >= 2  # login and ack
    for sql in ("UPDATE audit SET user = 'mallory'", "DELETE FROM audit", "UPDATE acks SET user = 'mallory'",
                "DELETE FROM acks"):
        with pytest.raises(sqlite3.DatabaseError, match="append-only"):
            db.execute(sql)
    assert db.execute("SELECT COUNT(*) FROM audit").fetchone()[0] == n
    assert db.execute("SELECT user FROM acks").fetchall() == [("olga",)]


def test_ack_round_trip_reaches_every_tab_and_is_stored(pki, tmp_path, analyzer, encoder, users_file):
    async def scenario():
        fake = PatternAnalyzer(analyzer, ALARM_PATTERN)
        srv = await start_server(web_config(pki, tmp_path, users_file), analyzer=fake)
        address = f"127.0.0.1:{srv.port}"
        try:
            olga, vic = await logged_in(base(srv), "olga"), await logged_in(base(srv), "vic")
            async with SseReader(olga) as tab1, SseReader(vic) as tab2:
                await exchange(address, client_tls(pki, "camera/cam-1"), latents(encoder, range(1, 6)))
                await tab1.wait_for(lambda t: len(t.of("alarm")) == 2)
                raised, cleared = tab1.of("alarm")
                assert raised["kind"] == "raised" and raised["ack"] is None and cleared["kind"] == "cleared"
                t0 = time.perf_counter()
                r = await olga.post(f"/api/alarms/{raised['id']}/ack", json={"note": "on my way"})
                assert r.status_code == 200
                await asyncio.gather(*(t.wait_for(lambda t: t.of("ack"), 1.0) for t in (tab1, tab2)))
                seen_in = time.perf_counter() - t0
                again = await olga.post(f"/api/alarms/{raised['id']}/ack", json={})
                not_raised = await olga.post(f"/api/alarms/{cleared['id']}/ack", json={})
                unknown = await olga.post("/api/alarms/9999/ack", json={})
                listed = (await vic.get("/api/alarms")).json()
                acks = [t.of("ack") for t in (tab1, tab2)]
                score_events = tab2.of("score")
            await olga.aclose()
            await vic.aclose()
            return seen_in, acks, again, not_raised, unknown, listed, raised, score_events, srv.hub.log.audit_rows()
        finally:
            await srv.stop(0)

    seen_in, acks, again, not_raised, unknown, listed, raised, scores, audit = run(scenario())
    assert seen_in < 1.0
    for tab in acks:
        assert [(a["event_id"], a["user"], a["note"]) for a in tab] == [(raised["id"], "olga", "on my way")]
    assert again.status_code == 409 and again.json()["ack"]["user"] == "olga"
    assert not_raised.status_code == 400 and unknown.status_code == 404
    by_id = {a["id"]: a for a in listed["alarms"]}
    assert by_id[raised["id"]]["ack"]["user"] == "olga"
    assert [s["seq"] for s in scores] == [1, 2, 3, 4, 5] and scores[-1]["frames"] == 5
    assert [(r.user, r.action, r.event_id) for r in audit if r.action == "ack"] == [("olga", "ack", raised["id"])]


def test_sse_resumes_after_a_server_restart_with_each_event_once(pki, tmp_path, analyzer, encoder, users_file):
    cfg = web_config(pki, tmp_path, users_file)

    async def scenario():
        cam = client_tls(pki, "camera/cam-1")
        srv = await start_server(cfg, analyzer=PatternAnalyzer(analyzer, ALARM_PATTERN))
        client = await logged_in(base(srv), "olga")
        async with SseReader(client, after=0) as tab:
            await exchange(f"127.0.0.1:{srv.port}", cam, latents(encoder, range(1, 17)))  # 4 alarm events
            await tab.wait_for(lambda t: len(t.alarm_ids()) == 4)
            await srv.stop(0)  # the server goes away with the tab open
            await asyncio.wait_for(tab.ended.wait(), 3)
        before = tab.alarm_ids()
        await client.aclose()
        # a new server on the same event log; alarms happen while nobody watches
        srv = await start_server(cfg, analyzer=PatternAnalyzer(analyzer, ALARM_PATTERN))
        try:
            await exchange(f"127.0.0.1:{srv.port}", cam, latents(encoder, range(17, 41)))  # 6 more
            client = await logged_in(base(srv), "olga")
            async with SseReader(client, last_event_id=before[-1], after=0) as tab2:
                await tab2.wait_for(lambda t: len(t.alarm_ids()) >= 6)
                await asyncio.sleep(0.3)
            await client.aclose()
            return before, tab2.alarm_ids(), [e.event_id for e in srv.hub.log.since(0)]
        finally:
            await srv.stop(0)

    before, after, logged = run(scenario())
    assert len(logged) == 10
    assert sorted(before + after) == logged  # every id exactly once, none missing
    assert len(set(before + after)) == len(before + after)


def test_session_cookie_survives_a_restart(pki, tmp_path, analyzer, users_file):
    cfg = web_config(pki, tmp_path, users_file)

    async def scenario():
        srv = await start_server(cfg, analyzer=analyzer)
        client = await logged_in(base(srv), "olga")
        cookies = dict(client.cookies)
        await client.aclose()
        await srv.stop(0)
        srv = await start_server(cfg, analyzer=analyzer)
        try:
            async with httpx.AsyncClient(base_url=base(srv), cookies=cookies) as again:
                return (await again.get("/api/me")).status_code
        finally:
            await srv.stop(0)

    assert run(scenario()) == 200


def test_user_limited_to_one_camera_gets_no_event_of_another(pki, tmp_path, analyzer, encoder, users_file):
    async def scenario():
        srv = await start_server(web_config(pki, tmp_path, users_file), analyzer=PatternAnalyzer(analyzer, ALARM_PATTERN))
        address = f"127.0.0.1:{srv.port}"
        try:
            alice, olga = await logged_in(base(srv), "alice"), await logged_in(base(srv), "olga")
            async with SseReader(alice, after=0) as limited, SseReader(olga, after=0) as everyone:
                await asyncio.gather(
                    exchange(address, client_tls(pki, "camera/cam-2"), latents(encoder, range(1, 101), camera="cam-2")),
                    exchange(address, client_tls(pki, "camera/cam-1"), latents(encoder, range(1, 11))),
                )
                await everyone.wait_for(lambda t: len(t.of("score")) == 110, 20)
                await limited.wait_for(lambda t: len(t.of("score")) == 10)
                await asyncio.sleep(0.6)  # a state event or two more
                cam2_alarm = next(d for d in everyone.of("alarm") if d["camera"] == "cam-2")
                view = await alice.get("/api/cameras/cam-2/view.jpg")
                ack = await alice.post(f"/api/alarms/{cam2_alarm['id']}/ack", json={})
                listed = (await alice.get("/api/alarms")).json()["alarms"]
                cams = (await alice.get("/api/cameras")).json()["cameras"]
                own_view = await alice.get("/api/cameras/cam-1/view.jpg")
            await alice.aclose()
            await olga.aclose()
            return limited.events, everyone.events, view, ack, listed, cams, own_view
        finally:
            await srv.stop(0)

    limited, everyone, view, ack, listed, cams, own_view = run(scenario())

    def cameras_in(events):
        out = []
        for kind, _, d in events:
            out += [c["camera"] for c in d["cameras"]] if kind == "state" else [d["camera"]]
        return out

    assert cameras_in(everyone).count("cam-2") >= 100  # cam-2's 100 scores and its alarms went out...
    assert "cam-2" not in cameras_in(limited)  # ...to the user who may see it only
    assert cameras_in(limited).count("cam-1") >= 10
    assert view.status_code == 403 and ack.status_code == 404
    assert own_view.status_code == 200
    assert {a["camera"] for a in listed} == {"cam-1"}
    assert [c["camera"] for c in cams] == ["cam-1"]


def test_camera_state_goes_offline_after_twice_its_interval_plus_one_second():
    from analysis_server.validate import Payload
    from analysis_server.web.live import LiveCameras

    now = [100.0]
    live = LiveCameras(clock=lambda: now[0])
    for k in range(10):  # 5 frames/s, every other seq missing
        now[0] = 100.0 + 0.2 * k
        live.received(Payload("cam-a", 2 * k, 0, image=np.zeros((2, 2, 3), np.uint8), anonymizer="blur"))
    state = live.describe()[0]
    assert state["state"] == "scoring" and state["fps"] == pytest.approx(5.0) and state["drops"] == 9
    assert state["offline_after_s"] == pytest.approx(1.4)
    now[0] += 1.35
    assert live.describe()[0]["state"] == "scoring"
    now[0] += 0.1
    assert live.describe()[0]["state"] == "offline" and live.describe()[0]["fps"] == 0.0
    assert live.describe(["cam-z"])[0]["state"] == "offline"


def test_open_streams_end_at_once_on_stop(pki, tmp_path, analyzer, users_file):
    async def scenario():
        srv = await start_server(web_config(pki, tmp_path, users_file), analyzer=analyzer)
        clients = [await logged_in(base(srv), u) for u in ("olga", "vic", "root")]
        readers = [SseReader(c) for c in clients]
        for r in readers:
            await r.__aenter__()
        assert srv.web.ctx.streams.open == 3
        t0 = time.perf_counter()
        await srv.stop(5.0)
        stopped = time.perf_counter() - t0
        await asyncio.wait_for(asyncio.gather(*(r.ended.wait() for r in readers)), 2)
        for r, c in zip(readers, clients):
            await r.__aexit__(None, None, None)
            await c.aclose()
        return stopped

    assert run(scenario()) < 1.5


def test_web_listen_off_loopback_needs_tls():
    from pvad.config import WebConfig

    with pytest.raises(ValueError, match="web.tls"):
        WebConfig(enabled=True, listen="0.0.0.0:8080")
    WebConfig(enabled=True, listen="[::1]:8080")
    WebConfig(enabled=False, listen="0.0.0.0:8080")
