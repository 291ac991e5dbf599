"""`pvad bench cluster`: N analysis servers behind HAProxy (and PostgreSQL), real processes on loopback, under faults.

Timeline, after every camera has been scored once:

1. SIGKILL the server holding the most cameras. Its cameras reconnect, resend what was not
   acknowledged and hash to the others (``rehome_s``: the kill to each moved camera's first ack).
2. SIGSTOP another server for ``hang_s`` (10 s), then SIGCONT. HAProxy's checks time out, it marks the
   server down and shuts its sessions; its cameras move (``hang_move_s``). Whatever the stale server
   commits after it resumes and another server also scored is a ``stale_commit_after_resume``.
3. Restart the killed server; after one stream-age period (``limits.max_stream_age_s``) cameras have
   rebalanced onto it: per-server camera counts against the mean, and HAProxy DOWN events after that
   restart (``flaps``).

Who scored what: one live score follower per server, connected to it directly (not through HAProxy),
records (camera, seq, server, time) for every SCORE event: ``frames_scored_twice`` counts frames
scored by two servers or twice by one (a lower bound: a follower misses what is published while it
is disconnected). Cameras run in a few processes (``--camera-processes``), each camera with its own
connection, certificate and buffer, and report every ack's time. An alarm subscriber goes through
HAProxy and resumes by event id halfway; with PostgreSQL its ids are compared with the database's.

MQTT (with PostgreSQL, when ``mosquitto`` is on PATH and paho-mqtt is installed): a broker of the bench's own
on a free loopback port, every server's ``mqtt:`` section pointing at it, and a QoS 1 listener with a
persistent session subscribed to ``pvad/events`` before the servers start, for the whole run. Its event ids
are compared with the database's (``missing``; ``duplicates`` are allowed by QoS 1 and counted); which
servers connected to the broker as the publisher comes from their logs, and a second connection with the
publishers' client id while one is connected (two publishers at once) from the broker's log.

The servers run the faults bench's tiny untrained profile on blurred JPEGs: this is about delivery.
"""

from __future__ import annotations

import asyncio
import collections
import json
import logging
import re
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import grpc

from pvad.bench.faults import ANALYSIS, BLUR_KERNEL, calibrate_scoring, camera_yaml
from pvad.channel import secure_channel
from pvad.config import ClientTLS
from pvad.v1 import pvad_pb2

log = logging.getLogger(__name__)

SUBSCRIBER = "bench"


@dataclass
class Score:
    camera: str
    seq: int
    server: int
    t: float  # wall clock when the follower received it


@dataclass
class Observed:
    scores: list[Score] = field(default_factory=list)
    alarms: list[int] = field(default_factory=list)  # alarm event ids in the order the subscriber got them
    subscriber_reconnects: int = 0


def _tls(pki: dict, who: str) -> ClientTLS:
    p = pki[who]
    return ClientTLS(ca=p.ca, cert=p.cert, key=p.key)


async def follow_server_scores(index: int, address: str, tls: ClientTLS, out: Observed, stop: asyncio.Event) -> None:
    """Every SCORE event one server publishes (connected to it directly), with the time it arrived."""
    from pvad.subscriber import follow_alarms

    while not stop.is_set():
        try:
            async with secure_channel(address, tls) as ch:
                async for ev in follow_alarms(ch, include_scores=True):
                    if ev.kind == pvad_pb2.SCORE:
                        out.scores.append(Score(ev.camera_id, ev.seq, index, time.time()))
        except grpc.aio.AioRpcError:
            pass
        await asyncio.sleep(0.2)


async def follow_alarms_through_proxy(address: str, tls: ClientTLS, out: Observed, stop: asyncio.Event,
                                      resume: asyncio.Event) -> None:
    """Alarm events through HAProxy, resuming after the last id; on `resume` it disconnects once on purpose."""
    from pvad.subscriber import follow_alarms

    last = 0
    while not stop.is_set():
        try:
            async with secure_channel(address, tls) as ch:
                async for ev in follow_alarms(ch, after_event_id=last):
                    out.alarms.append(ev.event_id)
                    last = ev.event_id
                    if resume.is_set():
                        resume.clear()
                        break
        except grpc.aio.AioRpcError:
            await asyncio.sleep(0.2)
        out.subscriber_reconnects += 1


# --------------------------------------------------------------------------- MQTT


MQTT_TOPIC_PREFIX = "pvad"
MQTT_CLIENT_ID = "pvad-server"  # the servers' bridges share one (they share one session: one publishes)


def mqtt_unavailable(store: str) -> str | None:
    """Why the bench cannot measure MQTT here, or None when it can."""
    import shutil

    if store != "postgres":
        return "SQLite per server: no single publisher and no one alarm log to compare with"
    if shutil.which("mosquitto") is None:
        return "mosquitto is not on PATH (Debian package `mosquitto`)"
    try:
        import paho.mqtt.client  # noqa: F401
    except ImportError:
        return "paho-mqtt is not installed (pip install 'pvad[mqtt]')"
    return None


class MqttBroker:
    """A mosquitto of the bench's own on a free loopback port, logging to ``folder/mosquitto.log``."""

    def __init__(self, folder: Path) -> None:
        import getpass

        from pvad.cluster.processes import Child, free_port

        self.port = free_port()
        folder.mkdir(parents=True, exist_ok=True)
        self.log_path = folder / "mosquitto.log"
        conf = folder / "mosquitto.conf"
        # as root, mosquitto would switch to its own user: run as ourselves
        conf.write_text("\n".join([f"user {getpass.getuser()}", f"listener {self.port} 127.0.0.1",
                                    "allow_anonymous true", "persistence false", f"log_dest file {self.log_path}",
                                    "log_type all", "log_timestamp true"]) + "\n")
        self.child = Child("mosquitto", ["mosquitto", "-c", str(conf)], folder / "mosquitto.out")

    def start(self) -> None:
        from pvad.cluster.processes import wait_tcp

        self.child.start()
        wait_tcp("127.0.0.1", self.port, 10, child=self.child)

    def stop(self) -> None:
        self.child.stop(5)

    def takeovers(self) -> int:
        """Connections with the publishers' client id while another was connected (two publishers at once)."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return 0
        return text.count(f"Client {MQTT_CLIENT_ID} already connected")


class MqttListener:
    """QoS 1 subscriber with a persistent session on ``pvad/events``: every alarm event id it receives."""

    def __init__(self, port: int) -> None:
        import threading

        import paho.mqtt.client as mqtt

        self.ids: list[int] = []
        self.subscribed = threading.Event()
        self._lock = threading.Lock()
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="pvad-bench-listener", clean_session=False)
        c.on_connect = lambda cl, u, f, rc, p: cl.subscribe(f"{MQTT_TOPIC_PREFIX}/events", qos=1)
        c.on_subscribe = lambda *_: self.subscribed.set()
        c.on_message = self._on_message
        c.reconnect_delay_set(min_delay=1, max_delay=2)
        c.connect("127.0.0.1", port)
        c.loop_start()
        self.client = c

    def _on_message(self, client, userdata, msg) -> None:
        try:
            event_id = int(json.loads(msg.payload)["event_id"])
        except (ValueError, KeyError, TypeError):
            return
        with self._lock:
            self.ids.append(event_id)

    def received(self) -> list[int]:
        with self._lock:
            return list(self.ids)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def mqtt_publishers(cluster) -> dict[str, int]:
    """server name -> how many times its bridge connected to the broker (as the publisher), from its log."""
    out = {}
    for s in cluster.slots:
        try:
            text = s.child.log_path.read_text(errors="replace")
        except OSError:
            continue
        if n := text.count("MQTT connected to"):
            out[s.name] = n
    return out


def mqtt_publishing_now(cluster) -> list[str]:
    """The running servers whose bridge is connected to the broker now (more "connected" than "disconnected"
    lines in their log); one, unless two publish at once."""
    now = []
    for s in cluster.slots:
        if not s.child.alive:
            continue
        try:
            text = s.child.log_path.read_text(errors="replace")
        except OSError:
            continue
        if text.count("MQTT connected to") > text.count("MQTT disconnected"):
            now.append(s.name)
    return now


def mqtt_figures(received: list[int], db_ids: list[int], publishers: dict[str, int], takeovers: int) -> dict:
    counts = collections.Counter(received)
    db = set(db_ids)
    return {"received": len(received), "database_alarms": len(db_ids),
            "missing": sorted(db - set(counts)), "duplicates": sum(1 for n in counts.values() if n > 1),
            "not_in_database": sorted(set(counts) - db), "publishers_seen": sorted(publishers),
            "publisher_connections": publishers, "concurrent_publisher_connects": takeovers}


# --------------------------------------------------------------------------- camera processes


async def _run_group(configs: list[str]) -> None:
    """In a camera process: run each camera config concurrently; print one JSON report per camera."""
    from camera_client.client import run_camera
    from pvad.config import load_config

    async def one(path: str) -> dict:
        cfg = load_config(path, "camera")
        acks: list[float] = []
        report = await run_camera(cfg, on_ack=lambda ack, _ms: acks.append(time.time()))
        st = report.stream
        return {"camera": cfg.camera_id, "captured": report.captured, "acked": st.acked, "lost": report.lost,
                "resent": st.resent, "duplicates": st.duplicates, "rejected": st.rejected_total,
                "reconnects": st.reconnects, "connections": st.connections, "ack_times": acks}

    for res in await asyncio.gather(*(one(p) for p in configs), return_exceptions=True):
        if isinstance(res, BaseException):
            print(json.dumps({"error": f"{type(res).__name__}: {res}"}), flush=True)
        else:
            print(json.dumps(res), flush=True)


# --------------------------------------------------------------------------- analysis of what was seen


def placement(scores: list[Score], at: float) -> dict[str, int]:
    """camera -> the server that published its last score before `at`."""
    where: dict[str, int] = {}
    for s in sorted(scores, key=lambda s: s.t):
        if s.t > at:
            break
        where[s.camera] = s.server
    return where


def first_ack_after_gap(acks: list[float], t: float, horizon: float = 60.0) -> float | None:
    """Seconds from `t` to the end of the longest pause in a camera's acks that spans or follows `t`
    (acks already on their way when the fault struck may arrive just after it)."""
    acks = sorted(acks)
    best = None
    for a, b in zip(acks, acks[1:]):
        if b < t or a > t + horizon or a > t + 1.0:
            continue
        if best is None or b - a > best[1] - best[0]:
            best = (a, b)
    return None if best is None else max(0.0, best[1] - t)


def haproxy_events(log_path: Path) -> list[tuple[str, str]]:
    """(server name, UP|DOWN) in the order HAProxy logged them."""
    pat = re.compile(r"Server pvad_servers/(\S+) is (UP|DOWN)")
    try:
        text = log_path.read_text(errors="replace")
    except OSError:
        return []
    return [(m.group(1), m.group(2)) for m in pat.finditer(text)]


# --------------------------------------------------------------------------- the bench


async def bench_cluster(workdir: Path, *, source: Path, servers: int = 3, cameras: int = 24, fps: float = 2.0,
                        hang_s: float = 10.0, phase_s: float = 8.0, stream_age_s: float = 20.0,
                        camera_processes: int = 6, store: str = "postgres",
                        hash_balance_factor: int | None = 110) -> dict:
    from pvad.cluster.local import LocalCluster
    from pvad.cluster.processes import ClusterError

    if servers < 2:
        raise ClusterError("--servers: at least 2 (one is killed)")
    if hang_s and servers < 3:
        log.warning("with %d servers the hang leaves one server up only while the killed one is down: "
                    "the killed server restarts first", servers)
    workdir = Path(workdir).resolve()
    if workdir.exists():
        import shutil

        for p in workdir.iterdir():  # a fresh run, but keep the CA and certificates
            if p.name != "certs":
                shutil.rmtree(p) if p.is_dir() else p.unlink()
    names = [f"cam-{i + 1}" for i in range(cameras)]
    tau, nu = await asyncio.to_thread(calibrate_scoring, source, 100)
    template = {
        "accept": ["blur"], "decoders": {"checkpoints": [], "untrained_seeds": []}, "analysis": ANALYSIS,
        "scoring": {"tau": tau, "nu": nu},
        "limits": {"max_streams_per_camera": 4, "max_stream_age_s": stream_age_s, "stream_age_jitter": 0.2},
        "drain_s": 3.0,
    }
    from pvad.cluster.haproxy import Timing
    from pvad.cluster.processes import free_port

    no_mqtt = mqtt_unavailable(store)
    broker = listener = None

    def close_mqtt() -> None:
        if listener is not None:
            listener.close()
        if broker is not None:
            broker.stop()

    if no_mqtt is None:  # the broker and a persistent listener before any server, for the whole run
        broker = MqttBroker(workdir / "mqtt")
        broker.start()
        try:
            listener = MqttListener(broker.port)
            if not await asyncio.to_thread(listener.subscribed.wait, 10):
                raise ClusterError(f"the MQTT listener did not subscribe within 10 s; see {broker.log_path}")
        except BaseException:
            close_mqtt()
            raise
        template["mqtt"] = {"host": "127.0.0.1", "port": broker.port, "topic_prefix": MQTT_TOPIC_PREFIX,
                            "client_id": MQTT_CLIENT_ID, "qos": 1, "reconnect_max_s": 1.0}

    port = free_port()  # HAProxy's, where the cameras and the alarm subscriber connect
    cluster = LocalCluster(workdir, servers=servers, listen=f"127.0.0.1:{port}", template=template, store=store,
                           cameras=tuple(names), subscribers=(SUBSCRIBER,),
                           timing=Timing(hash_balance_factor=hash_balance_factor or None))
    t_start = time.monotonic()
    try:
        await asyncio.to_thread(cluster.start)
    except BaseException:
        close_mqtt()
        raise
    startup_s = time.monotonic() - t_start
    pki = cluster.pki
    sub_tls = _tls(pki, f"subscriber/{SUBSCRIBER}")
    seen = Observed()
    stop = asyncio.Event()
    resume = asyncio.Event()
    followers = [asyncio.create_task(follow_server_scores(i, s.address, sub_tls, seen, stop))
                 for i, s in enumerate(cluster.slots)]
    followers.append(asyncio.create_task(follow_alarms_through_proxy(cluster.listen, sub_tls, seen, stop, resume)))

    # the cameras: long enough for the whole timeline, in a few processes
    planned_s = 10 + phase_s + (hang_s + phase_s if hang_s else 0) + 8 + stream_age_s * 1.2 + 3 + 4
    frames = int(planned_s * fps)
    cam_dir = workdir / "cameras"
    cam_dir.mkdir(exist_ok=True)
    for cam in names:
        camera_yaml(cam_dir, pki, cam, port=port, source=source, fps=fps, frames=frames,
                    anonymizer={"name": "blur", "kernel": BLUR_KERNEL}, max_in_flight=8,
                    buffer={"capacity": 4096, "policy": "block"},
                    reconnect={"initial_backoff_s": 0.1, "max_backoff_s": 0.5})
    n_groups = max(1, min(camera_processes, cameras))
    procs = []
    for i in range(n_groups):
        with open(cam_dir / f"group-{i}.log", "w") as err:  # the child keeps its own copy of the descriptor
            procs.append(subprocess.Popen([sys.executable, "-m", "pvad.bench.cluster",
                                           *[str(cam_dir / f"camera-{c}.yaml") for c in names[i::n_groups]]],
                                          stdout=subprocess.PIPE, stderr=err, text=True))
    result: dict = {"servers": servers, "cameras": cameras, "fps": fps, "store": store,
                    "hash_balance_factor": hash_balance_factor or None, "startup_s": round(startup_s, 1)}
    try:
        deadline = time.monotonic() + 120
        while len({s.camera for s in seen.scores}) < cameras:
            if time.monotonic() > deadline:
                raise ClusterError(f"only {len({s.camera for s in seen.scores})} of {cameras} cameras were scored "
                                   f"within 120 s; see {cam_dir}")
            if all(p.poll() is not None for p in procs):
                raise ClusterError(f"every camera process exited; see {cam_dir}/group-*.log")
            await asyncio.sleep(0.2)
        await asyncio.sleep(2.0)

        # 1. kill the busiest server
        before = placement(seen.scores, time.time())
        counts = collections.Counter(before.values())
        killed = counts.most_common(1)[0][0]
        k_slot = cluster.slots[killed]
        mqtt_at = {"killed": mqtt_publishing_now(cluster)} if broker is not None else {}
        t_kill = time.time()
        k_slot.child.kill()
        log.info("fault: SIGKILL %s (%d cameras)", k_slot.name, counts[killed])
        await asyncio.sleep(phase_s)
        after_kill = placement(seen.scores, time.time())
        on_killed = sorted(c for c, s in before.items() if s == killed)
        moved = sorted(c for c in before if after_kill.get(c) != before[c])
        result.update({"killed": k_slot.name, "killed_cameras": len(on_killed), "cameras_moved": len(moved),
                       "cameras_moved_not_from_killed": len(set(moved) - set(on_killed))})

        # 2. hang another server for hang_s
        hung = None
        if hang_s and servers >= 3:
            now_counts = collections.Counter(s for c, s in after_kill.items() if s != killed)
            hung = now_counts.most_common(1)[0][0] if now_counts else (killed + 1) % servers
            h_slot = cluster.slots[hung]
            on_hung = sorted(c for c, s in after_kill.items() if s == hung)
            if broker is not None:
                mqtt_at["hung"] = mqtt_publishing_now(cluster)
            t_stop = time.time()
            h_slot.child.pause()
            log.info("fault: SIGSTOP %s (%d cameras) for %.0f s", h_slot.name, len(on_hung), hang_s)
            await asyncio.sleep(hang_s)
            t_cont = time.time()
            h_slot.child.resume()
            log.info("fault: SIGCONT %s", h_slot.name)
            await asyncio.sleep(phase_s)
            result.update({"hung": h_slot.name, "hung_cameras": len(on_hung), "hang_s": hang_s})

        # 3. restart the killed server; one stream-age period later the cameras have rebalanced
        t_restart = time.time()
        hap_events_before = len(haproxy_events(workdir / "haproxy.log"))
        await asyncio.to_thread(cluster.restart_server, k_slot)
        result["restart_ready_s"] = round(time.time() - t_restart, 1)
        await asyncio.sleep(stream_age_s * 1.2 + 3.0)
        final = placement(seen.scores, time.time())
        per_server = collections.Counter(final.values())
        mean = cameras / servers
        result["cameras_per_server_after_restart"] = [per_server.get(i, 0) for i in range(servers)]
        result["balance_max_dev"] = round(max(abs(per_server.get(i, 0) - mean) for i in range(servers)) / mean, 2)
        events = haproxy_events(workdir / "haproxy.log")[hap_events_before:]
        result["flaps_after_restart"] = sum(1 for _, state in events if state == "DOWN")

        # the cameras finish their frames; the alarm subscriber resumes once on the way
        resume.set()
        reports = []
        for p in procs:
            out, _ = await asyncio.to_thread(p.communicate, None, planned_s * 3 + 120)
            reports += [json.loads(line) for line in out.splitlines() if line.startswith("{")]
        errors = [r["error"] for r in reports if "error" in r]
        reports = [r for r in reports if "error" not in r]
        await asyncio.sleep(1.0)
        db_ids = await asyncio.to_thread(_database_alarm_ids, cluster) if store == "postgres" else None
        if db_ids is not None:
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and not (
                    set(db_ids) <= set(seen.alarms) and (listener is None or set(db_ids) <= set(listener.received()))):
                await asyncio.sleep(0.2)
    finally:
        stop.set()
        for t in followers:
            t.cancel()
        await asyncio.gather(*followers, return_exceptions=True)
        for p in procs:
            if p.poll() is None:
                p.kill()
        await asyncio.to_thread(cluster.stop)
        close_mqtt()

    acks = {r["camera"]: r["ack_times"] for r in reports}
    rehome = [x for c in on_killed if (x := first_ack_after_gap(acks.get(c, []), t_kill)) is not None]
    result.update({
        "camera_errors": errors,
        "frames_captured": sum(r["captured"] for r in reports),
        "frames_acked": sum(r["acked"] for r in reports),
        "frames_lost": sum(r["lost"] for r in reports) + sum(frames for _ in errors),
        "frames_resent": sum(r["resent"] for r in reports),
        "frames_duplicate_acks": sum(r["duplicates"] for r in reports),
        "camera_reconnects": sum(r["reconnects"] for r in reports),
        "camera_streams": sum(r["connections"] for r in reports),
        "rehome_s_max": round(max(rehome), 2) if rehome else None,
        "rehome_s_p50": round(statistics.median(rehome), 2) if rehome else None,
    })
    scored = collections.Counter((s.camera, s.seq) for s in seen.scores)
    result["frames_scored_seen"] = len(scored)
    result["frames_scored_twice"] = sum(1 for n in scored.values() if n > 1)
    if hung is not None:
        hang = [x for c in on_hung if (x := first_ack_after_gap(acks.get(c, []), t_stop)) is not None]
        result["hang_move_s_max"] = round(max(hang), 2) if hang else None
        by_frame: dict[tuple, set] = collections.defaultdict(set)
        for s in seen.scores:
            by_frame[(s.camera, s.seq)].add(s.server)
        stale = {(s.camera, s.seq) for s in seen.scores if s.server == hung and s.t > t_cont
                 and len(by_frame[(s.camera, s.seq)]) > 1}
        result["stale_commits_after_resume"] = len(stale)
    if db_ids is not None:
        got = seen.alarms
        result.update({"alarms_in_database": len(db_ids), "alarms_received": len(set(got) & set(db_ids)),
                       "alarms_missed": len(set(db_ids) - set(got)),
                       "alarms_in_order": got == sorted(got) and len(got) == len(set(got)),
                       "subscriber_reconnects": seen.subscriber_reconnects})
    else:
        result["alarms_missed"] = None  # SQLite per server: no one alarm log to compare with
    if broker is not None and db_ids is not None:
        result["mqtt"] = mqtt_figures(listener.received(), db_ids, mqtt_publishers(cluster), broker.takeovers())
        result["mqtt"]["publishing_when"] = mqtt_at  # fault -> the server(s) publishing just before it
    else:
        result["mqtt"] = None
        result["mqtt_unavailable"] = no_mqtt or "no database alarm ids to compare with"
    return result


def _database_alarm_ids(cluster) -> list[int]:
    """Alarm event ids in the shared store, in id order."""
    from analysis_server.store import open_store
    from pvad.config import ServerConfig
    from pvad.config.loader import load_config

    cfg: ServerConfig = load_config(cluster.slots[0].config, "server")
    store = open_store(cfg)
    try:
        ids, after = [], 0
        while batch := store.since(after, limit=1000):
            ids += [e.event_id for e in batch]
            after = batch[-1].event_id
        return ids
    finally:
        store.close()


if __name__ == "__main__":  # a camera process of the bench: python -m pvad.bench.cluster CONFIG...
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    asyncio.run(_run_group(sys.argv[1:]))
