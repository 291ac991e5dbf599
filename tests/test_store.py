"""The durable store on both engines (SQLite file, PostgreSQL): the fence, alarm ids that never become
visible out of order under concurrent writers, followers on other servers, a camera that moves between
servers sharing one PostgreSQL, one MQTT publisher among them, and a database that goes away mid-stream.

The PostgreSQL tests run a throw-away server (`pg_support`) and skip, with the reason, without one."""

from __future__ import annotations

import asyncio
import threading
import time

import grpc
import pg_support
import pytest
from conftest import client_tls, run, server_config
from pydantic import ValidationError
from test_server import _FixedAnalyzer, exchange, latent_frame

from analysis_server.alarms import AlarmHub
from analysis_server.service import start_server
from analysis_server.store import EventLog, FenceLost, open_store
from pvad.channel import secure_channel
from pvad.cluster.processes import free_port
from pvad.config import ServerConfig
from pvad.errors import ConfigError
from pvad.v1 import pvad_pb2, pvad_pb2_grpc

RAISED, CLEARED = pvad_pb2.ALARM_RAISED, pvad_pb2.ALARM_CLEARED
pg_cluster, pg = pg_support.pg_cluster, pg_support.pg  # the fixtures of a throw-away PostgreSQL


def pg_server_config(pki, tmp_path, postgres, *, server_id: str, **overrides) -> ServerConfig:
    """`conftest.server_config` with the PostgreSQL store instead of the SQLite event log."""
    cfg = server_config(pki, tmp_path, **overrides)
    fields = {k: getattr(cfg, k) for k in cfg.model_fields_set if k not in ("event_log", "server_id")}
    return ServerConfig(**fields, postgres=postgres, server_id=server_id)


@pytest.fixture(params=["sqlite", "postgres"])
def open_log(request, tmp_path):
    """A function that opens (again) one store of the parametrized engine."""
    opened = []
    if request.param == "sqlite":
        def make():
            opened.append(EventLog(tmp_path / "events.sqlite"))
            return opened[-1]
    else:
        postgres = request.getfixturevalue("pg")

        def make():
            from analysis_server.store.postgres import PostgresStore

            opened.append(PostgresStore(postgres, server_id=f"s{len(opened)}"))
            return opened[-1]
    yield make
    for store in opened:
        store.close()


# --------------------------------------------------------------------------- the store on both engines


def test_the_fence_refuses_a_stale_commit_and_writes_nothing_of_it(open_log):
    server_a, server_b = open_log(), open_log()  # two servers (or a stale one) on one store
    assert server_a.commit_frame(camera_id="c1", seq=10, accumulator=1.5, alarm=True) is None
    for stale_seq in (10, 7):  # the same frame again, and an older one
        with pytest.raises(FenceLost) as lost:
            server_b.commit_frame(camera_id="c1", seq=stale_seq, accumulator=-7.0, alarm=False,
                                  event_kind=CLEARED, score=0.1, confidence=0.0, normality_model=b"stale")
        assert (lost.value.seq, lost.value.stored_seq) == (stale_seq, 10)
    saved = server_a.load_camera("c1")
    assert (saved.last_seq, saved.accumulator, saved.alarm) == (10, 1.5, True)
    assert server_a.since(0) == [] and server_a.load_normality("c1") is None  # no event, no model from the loser
    ev = server_b.commit_frame(camera_id="c1", seq=11, accumulator=-1.0, alarm=False, event_kind=CLEARED, score=0.3)
    assert ev.event_id == 1 and server_a.load_camera("c1").last_seq == 11
    assert server_b.commit_frame(camera_id="c2", seq=3, accumulator=-7.0, alarm=False) is None  # a new camera: insert


def test_the_store_keeps_events_acks_audit_models_and_cursors_across_a_reopen(open_log):
    from analysis_server.store import AlreadyAcked, NotAckable

    log = open_log()
    a = log.append(camera_id="c1", kind=RAISED, seq=5, score=0.7, confidence=0.9)
    log.commit_frame(camera_id="c2", seq=6, accumulator=0.5, alarm=True, event_kind=RAISED, score=0.6,
                     confidence=0.8, normality_model=b"\x00model")
    log.commit_frame(camera_id="c2", seq=9, accumulator=-1.0, alarm=False, event_kind=CLEARED, score=0.4)
    ack, ev = log.ack(a.event_id, user="op", note="seen")
    with pytest.raises(AlreadyAcked):
        log.ack(a.event_id, user="other")
    with pytest.raises(NotAckable):
        log.ack(3, user="op")
    log.audit("op", "login")
    log.set_cursor("mqtt", 2)
    log.set_cursor("mqtt", 1)  # a late publisher cannot move it back
    log.close()
    again = open_log()
    assert again.last_id() == 3 and [e.seq for e in again.since(0)] == [5, 6, 9]
    assert [e.seq for e in again.since(a.event_id, ["c2"])] == [6, 9] and [e.seq for e in again.since(0, ["c1"])] == [5]
    assert [e.event_id for e in again.recent(2)] == [2, 3] and [e.seq for e in again.recent(5, ["c1"])] == [5]
    assert again.event(2).kind == RAISED and again.event(99) is None
    assert again.cameras() == ["c2"] and again.load_camera("c2").last_seq == 9
    assert again.load_normality("c2") == b"\x00model" and again.delete_normality("c2")
    assert again.load_normality("c2") is None
    assert again.acks_for([1, 2]) == {1: ack} and ev.event_id == 1
    assert [(r.action, r.event_id) for r in again.audit_rows()] == [("ack", 1), ("login", None)]
    assert again.cursor("mqtt") == 2 and again.cursor("other") == 0


def test_acks_and_audit_rows_cannot_be_changed(open_log):
    log = open_log()
    ev = log.append(camera_id="c1", kind=RAISED, seq=1, score=0.7, confidence=0.9)
    log.ack(ev.event_id, user="op")
    for sql in ("UPDATE audit SET action = 'x'", "DELETE FROM acks"):
        with pytest.raises(Exception, match="append-only"):
            if isinstance(log, EventLog):
                log._db.execute(sql)
            else:
                with log._pool.connection() as conn:
                    conn.execute(sql)


def test_subscribers_get_backlog_then_live_events_in_order(open_log):
    async def scenario():
        hub = AlarmHub(open_log())
        hub.start()
        try:
            await hub.publish_alarm(camera_id="c1", kind=RAISED, seq=1, score=0.6, confidence=1)
            got = []

            async def listen():
                async for ev in hub.subscribe(after_event_id=0, camera_ids=["c1"]):
                    got.append(ev)
                    if len(got) == 3:
                        return

            task = asyncio.create_task(listen())
            await asyncio.sleep(0.05)
            await hub.publish_alarm(camera_id="c2", kind=RAISED, seq=2, score=0.6, confidence=1)  # filtered out
            await hub.publish_alarm(camera_id="c1", kind=CLEARED, seq=3, score=0.4, confidence=0)
            await hub.publish_alarm(camera_id="c1", kind=RAISED, seq=4, score=0.6, confidence=1)
            await asyncio.wait_for(task, 5)
            return [(e.event_id, e.seq, e.kind) for e in got], hub.subscribers
        finally:
            await hub.stop()

    got, left = run(scenario())
    assert got == [(1, 1, RAISED), (3, 3, CLEARED), (4, 4, RAISED)]
    assert left == 0  # the subscriber is removed when it goes


# --------------------------------------------------------------------------- alarm ids under concurrent writers


def _slow_store(postgres, *, serialise: bool):
    """A PostgreSQL store whose every 4th alarm transaction dawdles 20 ms between its insert and its commit
    (the moment a later id can commit first); without `serialise`, the events lock is skipped (the control)."""
    from analysis_server.store.postgres import PostgresStore

    class Slow(PostgresStore):
        calls = 0

        def _insert_event(self, conn, row):
            ev = super()._insert_event(conn, row)
            Slow.calls += 1
            if Slow.calls % 4 == 0:
                time.sleep(0.02)
            return ev

        if not serialise:
            @staticmethod
            def _serialise_events(conn):
                pass

    return Slow(postgres, server_id="writer")


def _race(stores, *, cameras_per_store: int, events_per_camera: int):
    """Writers on every connection of `stores` commit alarm frames while a reader follows ``id > last``;
    returns (ids the reader saw, in order, ids in the table)."""
    done = threading.Event()
    seen: list[int] = []

    def reader():
        last = 0
        while True:
            finished = done.is_set()
            for ev in stores[0].since(last):
                seen.append(ev.event_id)
                last = ev.event_id
            if finished:
                return
            time.sleep(0.001)

    def writer(store, camera):
        for seq in range(1, events_per_camera + 1):
            store.commit_frame(camera_id=camera, seq=seq, accumulator=0.0, alarm=seq % 2 == 1,
                               event_kind=RAISED if seq % 2 else CLEARED, score=0.5, confidence=0.5)

    follower = threading.Thread(target=reader)
    follower.start()
    writers = [threading.Thread(target=writer, args=(store, f"{i}-{c}"))
               for i, store in enumerate(stores) for c in range(cameras_per_store)]
    for t in writers:
        t.start()
    for t in writers:
        t.join()
    done.set()
    follower.join()
    return seen, [e.event_id for e in stores[0].since(0, limit=100_000)]


def test_concurrent_alarm_writers_never_let_a_following_reader_skip_an_id(pg):
    stores = [_slow_store(pg, serialise=True), _slow_store(pg, serialise=True)]  # two servers, 4 connections each
    try:
        seen, table = _race(stores, cameras_per_store=4, events_per_camera=20)
    finally:
        for s in stores:
            s.close()
    assert len(table) == 160
    assert seen == table  # every id once, in order


def test_the_race_is_real_without_the_events_lock(pg):
    """The control: the same writers without serialised inserts let the reader skip ids."""
    stores = [_slow_store(pg, serialise=False), _slow_store(pg, serialise=False)]
    try:
        seen, table = _race(stores, cameras_per_store=4, events_per_camera=10)
    finally:
        for s in stores:
            s.close()
    assert len(table) == 80 and len(set(table) - set(seen)) > 0


def test_a_resuming_subscriber_on_another_server_sees_every_event_once_in_order(pg):
    """Writers on server A (threads, several connections) and on server B itself; a subscriber on B that
    drops and resumes from its last id every 7 events. B learns of A's events by LISTEN/NOTIFY only."""
    from analysis_server.store.postgres import PostgresStore

    async def scenario():
        a, b = PostgresStore(pg, server_id="a"), PostgresStore(pg, server_id="b")
        hub_b = AlarmHub(b)
        hub_b.start()
        total = 4 * 15 + 10

        def write_on_a(camera):
            for seq in range(1, 16):
                a.commit_frame(camera_id=camera, seq=seq, accumulator=0.0, alarm=bool(seq % 2),
                               event_kind=RAISED if seq % 2 else CLEARED, score=0.5, confidence=0.5)

        async def write_on_b():
            for seq in range(1, 11):
                ev = await asyncio.to_thread(b.commit_frame, camera_id="b-cam", seq=seq, accumulator=0.0,
                                             alarm=bool(seq % 2), event_kind=RAISED if seq % 2 else CLEARED)
                hub_b.announce(ev)  # as the service does after its own commit
                await asyncio.sleep(0.005)

        got: list[int] = []

        async def subscriber():
            last = 0
            while len(got) < total:
                gen = hub_b.subscribe(after_event_id=last)
                async for ev in gen:
                    got.append(ev.event_id)
                    last = ev.event_id
                    if len(got) % 7 == 0 or len(got) == total:
                        break
                await gen.aclose()

        try:
            follower = asyncio.create_task(subscriber())
            await asyncio.sleep(0.1)
            threads = [asyncio.to_thread(write_on_a, f"a-cam-{i}") for i in range(4)]
            await asyncio.gather(*threads, write_on_b())
            await asyncio.wait_for(follower, 10)
            return got, [e.event_id for e in b.since(0)], hub_b.followed
        finally:
            await hub_b.stop()
            a.close()
            b.close()

    got, table, followed = run(scenario())
    assert len(table) == 70 and got == table
    assert followed > 0  # woken by the other server's NOTIFY


# --------------------------------------------------------------------------- servers sharing one PostgreSQL


def test_a_camera_that_moves_to_another_server_keeps_its_seq_and_sas(pki, tmp_path, analyzer, encoder, pg):
    tls = client_tls(pki, "camera/cam-1")
    # 1.0 x4 raises the alarm on A (x: -5, -3, -1, 1); B goes on from there with 1.0s (x climbs to UB):
    # a B that started from a fresh SAS (x = -7) would score below 0.5 with no alarm
    cfg_a = pg_server_config(pki, tmp_path, pg, server_id="A")
    cfg_b = pg_server_config(pki, tmp_path, pg, server_id="B")

    async def scenario():
        a = await start_server(cfg_a, analyzer=_FixedAnalyzer(analyzer, [1.0] * 4))
        try:
            on_a = await exchange(f"127.0.0.1:{a.port}", tls, [latent_frame(encoder, s) for s in range(1, 5)])
        finally:
            await a.stop(0)
        b = await start_server(cfg_b, analyzer=_FixedAnalyzer(analyzer, [1.0] * 6))
        try:  # the camera resends 3 and 4 (say their acks were lost), then goes on
            on_b = await exchange(f"127.0.0.1:{b.port}", tls, [latent_frame(encoder, s) for s in range(3, 10)])
            return on_a, on_b, b.hub.log.since(0), b.hub.log.load_camera("cam-1")
        finally:
            await b.stop(0)

    on_a, on_b, events, saved = run(scenario())
    assert [a.outcome for a in on_a] == [pvad_pb2.ACCEPTED] * 4 and on_a[-1].alarm
    assert [a.outcome for a in on_b] == [pvad_pb2.DUPLICATE] * 2 + [pvad_pb2.ACCEPTED] * 5
    assert all(a.alarm and a.score >= on_a[-1].score for a in on_b[2:])  # the SAS went on from A's
    assert [(e.kind, e.seq) for e in events] == [(RAISED, 4)]  # raised once, on A; B did not raise it again
    assert saved.last_seq == 9 and saved.alarm and saved.accumulator > 1.0


def test_a_moved_camera_keeps_its_learned_normality_model(pki, tmp_path, pg):
    from test_normality import _image, _normality_server, _send, scene

    tls = client_tls(pki, "camera/cam-1")
    base = _normality_server(pki, tmp_path)
    cfg_a = pg_server_config(pki, tmp_path, pg, server_id="A", accept=base.accept, analysis=base.analysis)
    cfg_b = pg_server_config(pki, tmp_path, pg, server_id="B", accept=base.accept, analysis=base.analysis)

    async def scenario():
        a = await start_server(cfg_a)
        try:
            learnt, _ = await _send(f"127.0.0.1:{a.port}", tls, [_image(1 + t, scene(t), first=t == 0) for t in range(30)])
            scored_a, _ = await _send(f"127.0.0.1:{a.port}", tls, [_image(40 + t, scene(t)) for t in range(30, 34)])
        finally:
            await a.stop(0)
        b = await start_server(cfg_b)
        try:
            scored_b, _ = await _send(f"127.0.0.1:{b.port}", tls, [_image(50 + t, scene(t)) for t in range(34, 38)])
        finally:
            await b.stop(0)
        return learnt, scored_a, scored_b

    learnt, scored_a, scored_b = run(scenario())
    assert [a.phase for a in learnt] == [pvad_pb2.LEARNING] * 30
    assert {a.phase for a in scored_a} == {pvad_pb2.SCORING}
    assert [a.outcome for a in scored_b] == [pvad_pb2.ACCEPTED] * 4
    assert {a.phase for a in scored_b} == {pvad_pb2.SCORING}  # no second learning period on B


async def _stream(address, tls, frames):
    """One Ingest stream fed from the async iterator `frames`; returns [(ack, monotonic time)]."""
    async with secure_channel(address, tls) as ch:
        call = pvad_pb2_grpc.IngestStub(ch).Stream(frames, timeout=60)
        return [(a, time.monotonic()) async for a in call]


def test_a_stale_server_loses_the_fence_its_frames_are_duplicate_and_raise_nothing(pki, tmp_path, analyzer,
                                                                                    encoder, pg):
    """Server A holds cam-1's stream open while server B commits the camera further (A was hung, the camera
    moved). A's next frames pass A's own duplicate check but lose the fence: DUPLICATE, no score, no alarm."""
    from analysis_server.store.postgres import PostgresStore

    tls = client_tls(pki, "camera/cam-1")
    cfg_a = pg_server_config(pki, tmp_path, pg, server_id="A")

    async def scenario():
        a = await start_server(cfg_a, analyzer=_FixedAnalyzer(analyzer, [0.0] * 3 + [1.0] * 10))
        b = PostgresStore(pg, server_id="B")
        moved = asyncio.Event()
        scores: list[int] = []

        async def frames():
            for s in (1, 2, 3):
                yield latent_frame(encoder, s)
            await moved.wait()
            for s in range(4, 10):  # 4..7 were committed by B meanwhile; 8 and 9 were not
                yield latent_frame(encoder, s)

        async def watch_scores():
            async for ev in a.hub.subscribe(after_event_id=0, include_scores=True):
                if ev.kind == pvad_pb2.SCORE:
                    scores.append(ev.seq)

        watcher = asyncio.create_task(watch_scores())
        try:
            stream = asyncio.create_task(_stream(f"127.0.0.1:{a.port}", tls, frames()))
            while a.hub.log.load_camera("cam-1") is None or a.hub.log.load_camera("cam-1").last_seq < 3:
                await asyncio.sleep(0.02)
            b.commit_frame(camera_id="cam-1", seq=7, accumulator=-6.0, alarm=False)
            moved.set()
            acks = [a_ for a_, _ in await stream]
            await asyncio.sleep(0.1)
            return acks, a.hub.log.since(0), a.hub.log.load_camera("cam-1"), scores
        finally:
            watcher.cancel()
            await asyncio.gather(watcher, return_exceptions=True)
            await a.stop(0)
            b.close()

    acks, events, saved, scores = run(scenario())
    assert [a.outcome for a in acks[:3]] == [pvad_pb2.ACCEPTED] * 3
    assert [a.outcome for a in acks[3:7]] == [pvad_pb2.DUPLICATE] * 4
    assert all("not scored" in a.message for a in acks[3:7])
    assert [a.outcome for a in acks[7:]] == [pvad_pb2.ACCEPTED] * 2
    assert scores == [1, 2, 3, 8, 9]  # the fenced frames' scores were not published
    # A's four 1.0s on frames 4-7 would have raised the alarm from its own SAS (x = -7 + 2*4); they did not
    # count: frames 8 and 9 went on from B's stored state (x = -6 -> -4 -> -2), below the alarm
    assert events == [] and saved.last_seq == 9 and not saved.alarm and saved.accumulator == pytest.approx(-2.0)


def test_postgres_stopped_mid_stream_frames_wait_and_nothing_acked_is_lost(pki, tmp_path, analyzer, encoder, pg,
                                                                           pg_cluster):
    tls = client_tls(pki, "camera/cam-1")
    cfg = pg_server_config(pki, tmp_path, pg.model_copy(update={"connect_timeout_s": 1.0}), server_id="A")

    async def scenario():
        srv = await start_server(cfg, analyzer=_FixedAnalyzer(analyzer, [0.0] * 4 + [1.0] * 8))
        down = asyncio.Event()
        times = {}

        async def frames():
            for s in range(1, 5):
                yield latent_frame(encoder, s)
            await down.wait()
            for s in range(5, 13):  # the alarm is raised on frame 8, while the database is away
                yield latent_frame(encoder, s)

        try:
            stream = asyncio.create_task(_stream(f"127.0.0.1:{srv.port}", tls, frames()))
            while (st := srv.ingest.cameras.get("cam-1")) is None or st.last_seq < 4:
                await asyncio.sleep(0.02)
            await asyncio.to_thread(pg_cluster.stop, "fast")
            down.set()
            try:  # a new stream meanwhile is refused: the camera keeps its frames and reconnects
                await exchange(f"127.0.0.1:{srv.port}", client_tls(pki, "camera/cam-2"),
                               [latent_frame(encoder, 1, camera="cam-2")])
                times["new stream"] = "accepted"
            except grpc.aio.AioRpcError as err:
                times["new stream"] = err.code()
            await asyncio.sleep(1.0)
            times["up"] = time.monotonic()
            await asyncio.to_thread(pg_cluster.start)
            acks = await asyncio.wait_for(stream, 30)
            return acks, times, srv.hub.log.since(0), srv.hub.log.load_camera("cam-1")
        finally:
            if not pg_cluster.data.joinpath("postmaster.pid").exists():
                await asyncio.to_thread(pg_cluster.start)
            await srv.stop(0)

    acks, times, events, saved = run(scenario(), timeout=90)
    assert [a.seq for a, _ in acks] == list(range(1, 13))
    assert all(a.outcome == pvad_pb2.ACCEPTED for a, _ in acks)  # none refused while the database was away
    assert all(t >= times["up"] for a, t in acks if a.seq >= 5)  # none acknowledged before its commit
    assert saved.last_seq == 12 and saved.alarm
    assert [(e.kind, e.seq) for e in events] == [(RAISED, 8)]
    assert times["new stream"] == grpc.StatusCode.UNAVAILABLE


# --------------------------------------------------------------------------- configuration and start-up


def test_a_config_naming_both_stores_is_refused_with_both_fields(pki, tmp_path):
    from pvad.config import EventLogConfig, PostgresConfig

    with pytest.raises(ValidationError, match="event_log and postgres"):
        server_config(pki, tmp_path, event_log=EventLogConfig(path=tmp_path / "e.sqlite"),
                      postgres=PostgresConfig(dsn="host=127.0.0.1 dbname=pvad"))
    with pytest.raises(ValidationError, match="postgres.password_file"):
        PostgresConfig(dsn="host=127.0.0.1 dbname=pvad user=pvad password=hunter2")


def test_postgres_down_at_start_is_a_clear_error_naming_the_dsn(pki, tmp_path):
    cfg = pg_server_config(pki, tmp_path, {"dsn": f"host=127.0.0.1 port={free_port()} dbname=pvad user=pvad",
                                           "connect_timeout_s": 1.0}, server_id="A")
    pytest.importorskip("psycopg_pool")
    t0 = time.monotonic()
    with pytest.raises(ConfigError, match=r"postgres\.dsn: cannot reach .* within postgres\.connect_timeout_s = 1 s"):
        open_store(cfg)
    assert time.monotonic() - t0 < 5


def test_a_wrong_password_names_the_password_file(pg, tmp_path):
    wrong = tmp_path / "wrong"
    wrong.write_text("nope\n")
    with pytest.raises(ConfigError, match=r"postgres\.dsn \(and postgres\.password_file\)"):
        from analysis_server.store.postgres import PostgresStore

        PostgresStore(pg.model_copy(update={"password_file": wrong, "connect_timeout_s": 0.5}))


# --------------------------------------------------------------------------- one MQTT publisher among servers


def test_one_mqtt_publisher_among_servers_sharing_a_store_and_a_takeover(pki, tmp_path, analyzer, encoder, pg):
    """Two servers, one PostgreSQL, one broker: only the lease holder publishes, every camera's events (the
    other server's by NOTIFY), each once; when it stops, the other takes over from the stored cursor."""
    import shutil

    if shutil.which("mosquitto") is None:
        pytest.skip("needs mosquitto (Debian package `mosquitto`)")
    pytest.importorskip("paho.mqtt.client")
    from test_mqtt import Broker, Listener, _alarm_sigmas

    from pvad.config import MqttConfig

    broker = Broker(tmp_path)
    broker.start()
    listener = Listener(broker.port)
    mqtt = MqttConfig(port=broker.port, reconnect_max_s=1.0)
    cfg_a = pg_server_config(pki, tmp_path, pg, server_id="A", mqtt=mqtt)
    cfg_b = pg_server_config(pki, tmp_path, pg, server_id="B", mqtt=mqtt)

    async def until(pred, timeout=20.0):
        deadline = time.monotonic() + timeout
        while not pred():
            assert time.monotonic() < deadline, "timed out"
            await asyncio.sleep(0.05)

    async def scenario():
        a = await start_server(cfg_a, analyzer=_FixedAnalyzer(analyzer, _alarm_sigmas(2)))
        b = await start_server(cfg_b, analyzer=_FixedAnalyzer(analyzer, _alarm_sigmas(2)))
        running = [a, b]
        camera = {id(a): "cam-1", id(b): "cam-2"}

        async def alarms(srv, seqs):  # raised then cleared: 2 events
            cam = camera[id(srv)]
            await exchange(f"127.0.0.1:{srv.port}", client_tls(pki, f"camera/{cam}"),
                           [latent_frame(encoder, s, camera=cam) for s in seqs])

        try:
            await until(lambda: a.mqtt.active or b.mqtt.active)
            await asyncio.sleep(1.5)  # the other has tried for the lease meanwhile
            both = a.mqtt.active and b.mqtt.active
            leader, other = (a, b) if a.mqtt.active else (b, a)
            await alarms(a, range(1, 9))
            await alarms(b, range(1, 9))
            await until(lambda: leader.mqtt.delivered >= 4)
            first = (leader.mqtt.delivered, other.mqtt.delivered)
            running.remove(leader)
            await leader.stop(0)
            await until(lambda: other.mqtt.active)
            await alarms(other, range(11, 19))
            await until(lambda: other.mqtt.delivered >= 2)
            return both, first, other.mqtt.delivered, [e.event_id for e in other.hub.log.since(0)]
        finally:
            for srv in running:
                await srv.stop(0)

    try:
        both, first, after, table = run(scenario(), timeout=90)
        got = listener.wait_for("pvad/events", 6)
    finally:
        listener.close()
        broker.stop()
    assert not both  # never two publishers
    assert first == (4, 0)  # the leader published the other server's events too
    assert after == 2 and len(table) == 6
    assert [m["event_id"] for m in got] == table  # each once, in id order, across the takeover


def test_a_camera_that_comes_back_is_reloaded_from_the_store_not_from_the_old_cache(pki, tmp_path, analyzer,
                                                                                   encoder, pg):
    """cam-1 on A (alarm raised), then on B (cleared, SAS down to LB), then back on A, which still holds its
    old state in memory: A must go on from B's state, not from its own stale cache."""
    tls = client_tls(pki, "camera/cam-1")
    cfg_a = pg_server_config(pki, tmp_path, pg, server_id="A")
    cfg_b = pg_server_config(pki, tmp_path, pg, server_id="B")

    async def scenario():
        a = await start_server(cfg_a, analyzer=_FixedAnalyzer(analyzer, [1.0] * 4 + [1.0] * 4))
        b = await start_server(cfg_b, analyzer=_FixedAnalyzer(analyzer, [0.0] * 4))
        try:
            on_a = await exchange(f"127.0.0.1:{a.port}", tls, [latent_frame(encoder, s) for s in range(1, 5)])
            on_b = await exchange(f"127.0.0.1:{b.port}", tls, [latent_frame(encoder, s) for s in range(5, 9)])
            back = await exchange(f"127.0.0.1:{a.port}", tls, [latent_frame(encoder, s) for s in range(7, 11)])
            return on_a, on_b, back, a.hub.log.since(0), a.hub.log.load_camera("cam-1")
        finally:
            await a.stop(0)
            await b.stop(0)

    on_a, on_b, back, events, saved = run(scenario())
    assert on_a[-1].alarm and not on_b[-1].alarm
    assert [a.outcome for a in back] == [pvad_pb2.DUPLICATE] * 2 + [pvad_pb2.ACCEPTED] * 2
    # B's four 0.0s left x at -5 or -7 (its first frame may be held while flow is cold): two 1.0s on A give at
    # most -3 (score 0.047); A's stale cache (x = 1, alarm on) would have said alarm, with a score above 0.95
    assert not any(a.alarm for a in back) and back[-1].score < 0.05
    assert [e.kind for e in events] == [RAISED, CLEARED] and events[0].seq == 4 and 5 <= events[1].seq <= 8
    assert saved.last_seq == 10 and not saved.alarm
