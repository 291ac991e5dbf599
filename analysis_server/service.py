"""gRPC services: Ingest (camera streams in, acks out) and Alarms (subscribers), on grpc.aio with mTLS.

Every frame gets exactly one ack. A bad frame is refused in its ack with the gRPC status code of
the `PvadError` that refused it; the stream and every other stream go on. Identities come from the
client certificate's common name (`camera/<id>`, `subscriber/<id>`, see `pvad.certs`).
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from analysis_server.alarms import AlarmHub
from analysis_server.flow import CameraFlow
from analysis_server.health import HealthEndpoint
from analysis_server.identity import caller_identity
from analysis_server.metrics import ServerMetrics
from analysis_server.mqtt_bridge import MqttBridge
from analysis_server.normality import NormalityModel, Phase
from analysis_server.pipeline import Analyzer, Batcher
from analysis_server.scoring import SigmoidalAnomalyScore
from analysis_server.store import FenceLost, SavedCamera, StoreUnavailable, open_store
from analysis_server.validate import parse_frame
from analysis_server.web.live import LiveCameras
from pvad.aio import cancel_and_wait
from pvad.certs import CertPaths, reloading_server_credentials
from pvad.config import ServerConfig
from pvad.errors import ModelLoadError, PvadError
from pvad.v1 import pvad_pb2, pvad_pb2_grpc

log = logging.getLogger(__name__)

STREAM_END_KEY = "pvad-stream-end"
"""Trailing metadata of a stream the server ended cleanly (status OK) on purpose, e.g. ``max-stream-age``."""


def cold_start_frames(background) -> int:
    """Frames a camera's SAS is held for after its flow and background start cold: its first frame has no
    flow (zero motion); a background (MOG2) needs a few dozen frames before frame − background shows only
    what moves (a tenth of its history, at most 25)."""
    frames = 1
    if background is not None:  # pvad.config.BackgroundConfig, from the classifier's card
        frames = max(frames, min(25, background.history // 10))
    return frames


_PHASES = {None: pvad_pb2.PHASE_UNSPECIFIED, Phase.LEARNING: pvad_pb2.LEARNING, Phase.SCORING: pvad_pb2.SCORING}


@dataclass
class CameraState:
    """Per-camera analysis state; lives as long as the server process."""

    sas: SigmoidalAnomalyScore
    flow: CameraFlow
    last_seq: int = -1  # the last COMMITTED frame (what the duplicate rule and a restart go by)
    lock: asyncio.Lock | None = None  # admission of frames, relearning
    learn_session: str | None = None  # the `pvad learn` session whose frames this camera is learning from
    window: asyncio.Semaphore | None = None  # frames admitted and not yet committed, at most max_in_flight_per_camera
    submitted_seq: int = -1  # the last frame admitted (in analysis or waiting for it)
    pending: dict[int, asyncio.Task] = field(default_factory=dict)  # seq -> its commit task
    tail: asyncio.Task | None = None  # the latest commit task: the next one waits for it
    cold_frames: int = 0  # frames still to hold the SAS for while flow and background warm up (after a move)

    async def idle(self) -> None:
        """Until every admitted frame of this camera is committed (or failed)."""
        while self.tail is not None and not self.tail.done():
            await asyncio.wait([self.tail])


class Counters:
    def __init__(self) -> None:
        self.received = 0
        self.accepted = 0
        self.duplicates = 0
        self.rejected: dict[str, int] = {}

    def reject(self, code: grpc.StatusCode) -> None:
        self.rejected[code.name] = self.rejected.get(code.name, 0) + 1


class IngestService(pvad_pb2_grpc.IngestServicer):
    def __init__(self, cfg: ServerConfig, analyzer: Analyzer, batcher: Batcher, hub: AlarmHub, metrics: ServerMetrics) -> None:
        self.cfg = cfg
        self.analyzer = analyzer
        self.batcher = batcher
        self.hub = hub
        self.cameras: dict[str, CameraState] = {}
        self.counters = Counters()
        self.metrics = metrics
        self.streams: dict[str, int] = {}
        self.live = LiveCameras()  # what the dashboard shows of each camera (in memory only)
        self.live.know(hub.log.cameras())
        self.draining = False
        self._busy = 0  # frames between receipt and ack
        self._idle = asyncio.Event()
        self._idle.set()

    def _normality_model(self, camera_id: str) -> NormalityModel | None:
        """The camera's stored normality model; a damaged one is reported, dropped, and learnt again."""
        if self.analyzer.normality_cfg is None:
            return None
        data = self.hub.log.load_normality(camera_id)
        if data is None:
            return None
        try:
            model = NormalityModel.from_bytes(data, what=f"camera {camera_id}'s stored normality model")
        except ModelLoadError as err:
            log.error("%s; it is deleted and the camera learns again", err)
            self.hub.log.delete_normality(camera_id)
            return None
        log.info("camera %s: normality model loaded (%d learning frames, threshold %.3f, fitted on %s)",
                 camera_id, model.frames, model.threshold, model.source)
        return model

    def _camera(self, camera_id: str) -> CameraState:
        st = self.cameras.get(camera_id)
        if st is None:
            st = self._new_camera(camera_id, self._normality_model(camera_id), self.hub.log.load_camera(camera_id))
        return st

    def _new_camera(self, camera_id: str, model: NormalityModel | None, saved: SavedCamera | None) -> CameraState:
        """The camera's state from what the store holds of it (`model`, `saved`), kept in ``self.cameras``."""
        flow = self.analyzer.new_camera_flow(camera_id, model)
        st = CameraState(SigmoidalAnomalyScore(self.cfg.scoring), flow, lock=asyncio.Lock(),
                         window=asyncio.Semaphore(self.cfg.analysis.batching.max_in_flight_per_camera))
        if saved is not None:  # restart rule: see analysis_server.store.SavedCamera
            st.last_seq, st.sas.x, st.sas.alarm = saved.last_seq, saved.accumulator, saved.alarm
            st.submitted_seq = saved.last_seq
            log.info("camera %s: state restored (last seq %d, alarm %s)", camera_id, saved.last_seq, saved.alarm)
        else:
            log.info("camera %s: first frame, new state", camera_id)
        self.cameras[camera_id] = st
        return st

    def _refused(self, frame: pvad_pb2.Frame, camera_id: str, err: Exception) -> pvad_pb2.FrameAck:
        self.live.refused(camera_id)
        if isinstance(err, PvadError):
            self.counters.reject(err.code)
            self.metrics.frames_rejected.labels(err.code.name).inc()
            log.info("camera %s seq %d refused: %s: %s", camera_id, frame.seq, err.code.name, err)
            return pvad_pb2.FrameAck(
                seq=frame.seq, outcome=pvad_pb2.REJECTED, status_code=err.code.value[0], message=str(err)
            )
        # never let one frame take the stream down
        self.counters.reject(grpc.StatusCode.INTERNAL)
        self.metrics.frames_rejected.labels("INTERNAL").inc()
        log.error("camera %s seq %d: analysis failed", camera_id, frame.seq, exc_info=err)
        return pvad_pb2.FrameAck(
            seq=frame.seq, outcome=pvad_pb2.REJECTED, status_code=grpc.StatusCode.INTERNAL.value[0],
            message=f"internal error: {type(err).__name__}",
        )

    def _duplicate(self, frame: pvad_pb2.Frame, st: CameraState) -> pvad_pb2.FrameAck:
        self.counters.duplicates += 1
        self.metrics.frames_duplicate.inc()
        return pvad_pb2.FrameAck(
            seq=frame.seq, outcome=pvad_pb2.DUPLICATE, message=f"seq {frame.seq} was analysed already",
            score=st.sas.score, alarm=st.sas.alarm,
        )

    async def _admit(self, frame: pvad_pb2.Frame, camera_id: str) -> asyncio.Future:
        """Validate ``frame`` and queue it behind its camera's earlier frames; returns the future of its ack.

        Waits while the camera has ``max_in_flight_per_camera`` frames admitted and not committed.
        The duplicate rule goes by what is COMMITTED (``last_seq``): a frame still in flight that
        arrives again (a reconnect on a second stream) is acknowledged DUPLICATE only once the
        first copy is committed, so an ack always means the frame's state is on disk."""
        t0 = time.perf_counter()
        loop = asyncio.get_running_loop()
        self.counters.received += 1
        self.metrics.frames_received.inc()

        def done(ack: pvad_pb2.FrameAck) -> asyncio.Future:
            fut = loop.create_future()
            fut.set_result(ack)
            return fut

        try:
            payload = parse_frame(frame, cfg=self.cfg, peer_camera_id=camera_id, encoders=self.analyzer.decoders.shapes)
            st = self._camera(camera_id)
        except Exception as err:
            return done(self._refused(frame, camera_id, err))
        self.live.received(payload)
        await st.window.acquire()
        admitted = False
        try:
            async with st.lock:
                original = st.pending.get(frame.seq)
                if original is not None:
                    return loop.create_task(self._duplicate_after(original, frame, st))
                if frame.seq <= st.last_seq or frame.seq <= st.submitted_seq:
                    return done(self._duplicate(frame, st))
                st.submitted_seq = frame.seq
                task = loop.create_task(self._commit(st, camera_id, frame, payload, self.batcher.enqueue(st.flow, payload),
                                                     st.tail, t0), name=f"pvad-commit-{camera_id}-{frame.seq}")
                st.pending[frame.seq] = st.tail = task
                admitted = True

                def finished(_task: asyncio.Task, seq: int = frame.seq) -> None:
                    st.pending.pop(seq, None)
                    st.window.release()

                task.add_done_callback(finished)
                return task
        finally:
            if not admitted:
                st.window.release()

    async def _duplicate_after(self, original: asyncio.Task, frame: pvad_pb2.Frame, st: CameraState) -> pvad_pb2.FrameAck:
        await asyncio.wait([original])
        if not original.cancelled() and original.exception() is None and original.result().outcome == pvad_pb2.REJECTED:
            return original.result()
        return self._duplicate(frame, st)

    async def _commit(self, st: CameraState, camera_id: str, frame: pvad_pb2.Frame, payload, result: asyncio.Future,
                      previous: asyncio.Task | None, t0: float) -> pvad_pb2.FrameAck:
        """Wait for the camera's previous frame to commit, then for this frame's analysis; update the
        SAS, commit (one store transaction) and publish, in the camera's frame order."""
        if previous is not None:
            await asyncio.wait([previous])  # never raises: a failed earlier frame does not hold this one
        try:
            res = await result
            sigma = res.sigma
            if self._held_cold(st) or res.hold:  # no alarm decision (the camera learns its normal, or has no motion yet): the SAS stands still
                upd = st.sas.hold()
            else:
                upd = st.sas.update(sigma)
            kind = pvad_pb2.ALARM_RAISED if upd.raised else pvad_pb2.ALARM_CLEARED if upd.cleared else None
            try:
                event = await self._store_commit(
                    camera_id=camera_id, seq=frame.seq, accumulator=upd.accumulator,
                    alarm=upd.alarm, event_kind=kind, score=upd.score, confidence=sigma,
                    normality_model=res.fitted.to_bytes() if res.fitted is not None else None,
                )
            except FenceLost as lost:
                return await self._fenced_out(st, frame, lost)
            st.last_seq = frame.seq
            if event is not None:
                self.hub.announce(event)
                self.metrics.alarms.labels(pvad_pb2.EventKind.Name(event.kind)).inc()
            phase = _PHASES[res.phase]
            self.live.scored(payload, phase=res.phase.value if res.phase is not None else None, score=upd.score,
                             sigma=sigma, alarm=upd.alarm)
            self.hub.publish_score(camera_id=camera_id, seq=frame.seq, score=upd.score, confidence=sigma,
                                   capture_time_ns=payload.capture_time_ns, phase=phase,
                                   normality_score=res.normality_score or 0.0)
        except asyncio.CancelledError:
            raise
        except Exception as err:
            return self._refused(frame, camera_id, err)
        self.counters.accepted += 1
        self.metrics.frames_accepted.inc()
        elapsed = time.perf_counter() - t0
        self.metrics.frame_seconds.observe(elapsed)
        return pvad_pb2.FrameAck(
            seq=frame.seq, outcome=pvad_pb2.ACCEPTED, confidence=sigma, score=upd.score, alarm=upd.alarm,
            server_ms=1000.0 * elapsed, phase=phase, normality_score=res.normality_score or 0.0,
            classifier_confidence=res.classifier if res.classifier is not None else 0.0,
        )

    async def _store_commit(self, **frame_state) -> pvad_pb2.AlarmEvent | None:
        """`EventStore.commit_frame`; while the store cannot be reached the frame waits, unacknowledged, and
        its commit is tried again (a hard stop cancels it: the camera resends it). Raises `FenceLost`."""
        delay, failures = 0.05, 0
        while True:
            try:
                event = await asyncio.to_thread(self.hub.log.commit_frame, **frame_state)
            except StoreUnavailable as err:
                failures += 1
                if failures == 1:
                    log.warning("camera %s seq %d waits for the store: %s; trying again", frame_state["camera_id"],
                                frame_state["seq"], err)
                await asyncio.sleep(delay)
                delay = min(2.0, 2 * delay)
                continue
            if failures:
                log.info("camera %s seq %d committed after %d failed tries", frame_state["camera_id"],
                         frame_state["seq"], failures)
            return event

    async def _fenced_out(self, st: CameraState, frame: pvad_pb2.Frame, lost: FenceLost) -> pvad_pb2.FrameAck:
        """The store holds this camera at a later frame than this server knew (another server analysed it, or a
        retried commit had gone through): the frame is acknowledged DUPLICATE, and neither its score nor an
        alarm counts. The camera's SAS, alarm and last seq are taken from the store again."""
        try:
            saved = await asyncio.to_thread(self.hub.log.load_camera, lost.camera_id)
        except StoreUnavailable:
            saved = None
        if saved is not None:
            st.sas.x, st.sas.alarm = saved.accumulator, saved.alarm
        st.last_seq = max(st.last_seq, lost.stored_seq)
        st.submitted_seq = max(st.submitted_seq, st.last_seq)
        self.counters.duplicates += 1
        self.metrics.frames_duplicate.inc()
        log.warning("%s: frame acknowledged DUPLICATE, not scored (another server has committed this camera further)",
                    lost)
        return pvad_pb2.FrameAck(seq=frame.seq, outcome=pvad_pb2.DUPLICATE, message=f"{lost}: not scored here",
                                 score=st.sas.score, alarm=st.sas.alarm)

    async def _reload_if_moved(self, camera_id: str, context) -> None:
        """A stream starts, with a store other servers write. The store unreachable: the stream is refused
        (UNAVAILABLE; the camera keeps its frames and reconnects). If another server committed this camera
        since this one last did (the camera moved away and came back), the cached state is dropped. A camera
        not held here (then) gets its last seq, SAS, alarm and normality model from the store, read off the
        event loop, and starts cold (`_cold_start`)."""
        if not self.hub.log.shared:
            return
        try:
            saved = await asyncio.to_thread(self.hub.log.load_camera, camera_id)
        except StoreUnavailable as err:
            log.warning("camera %s: stream refused, the store is unreachable: %s", camera_id, err)
            await context.abort(grpc.StatusCode.UNAVAILABLE, "the server cannot reach its store now; reconnect later")
        st = self.cameras.get(camera_id)
        if st is not None:
            if st.pending or self.streams.get(camera_id) or saved is None or saved.last_seq == st.last_seq:
                return  # busy with another stream of the camera (whose commits the fence guards), or current
            del self.cameras[camera_id]
            log.info("camera %s: another server committed it up to seq %d (here: %d); its state is loaded again",
                     camera_id, saved.last_seq, st.last_seq)
        model = await asyncio.to_thread(self._normality_model, camera_id)
        if camera_id not in self.cameras:  # (another stream of the camera may have loaded it meanwhile)
            self._cold_start(self._new_camera(camera_id, model, saved), camera_id)

    async def cancel_pending(self) -> None:
        """Hard stop: cancel every frame admitted and not committed (none of them is acknowledged)."""
        tasks = [t for st in self.cameras.values() for t in st.pending.values()]
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def drain(self, timeout: float) -> bool:
        """Stop taking new frames; wait until every frame already received is acknowledged."""
        self.draining = True
        try:
            await asyncio.wait_for(self._idle.wait(), timeout)
            return True
        except asyncio.TimeoutError:
            return False

    async def Stream(self, request_iterator: AsyncIterator[pvad_pb2.Frame], context) -> AsyncIterator[pvad_pb2.FrameAck]:
        who = await caller_identity(context, "camera", self.cfg.access.trusted_proxies)
        camera_id = who.ident
        if self.draining:
            await context.abort(grpc.StatusCode.UNAVAILABLE, "server is shutting down; reconnect")
        limit = self.cfg.limits.max_streams_per_camera
        if self.streams.get(camera_id, 0) >= limit:
            await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, f"camera {camera_id} already has {limit} open streams")
        await self._reload_if_moved(camera_id, context)
        mode = await self._stream_mode(context, camera_id)
        self.streams[camera_id] = self.streams.get(camera_id, 0) + 1
        self.metrics.streams.inc()
        log.info("camera %s connected from %s%s%s", camera_id, context.peer(), f" via proxy/{who.proxy}" if who.proxy else "",
                 f" ({mode[0]} stream)" if mode else "")
        n = 0
        acks: asyncio.Queue = asyncio.Queue()  # each frame's ack future, in the stream's frame order
        cut = False  # the server began draining: frames after that are left unacknowledged
        ends_at = self._stream_deadline() if mode is None else None  # a learning stream runs to its end
        aged = False  # the stream reached its age limit: it ends cleanly and the camera reconnects at once

        def one_done(_fut: asyncio.Future) -> None:
            self._busy -= 1
            if not self._busy:
                self._idle.set()

        async def read() -> None:
            """Admit frames as they come (a camera may have several in flight); acks go out in order below."""
            nonlocal n, cut, aged
            try:
                async for frame in request_iterator:
                    if self.draining:  # unacknowledged: the camera resends it to whoever serves next
                        cut = True
                        break
                    if ends_at is not None and time.monotonic() >= ends_at:  # likewise, on its next stream
                        aged = True
                        break
                    n += 1
                    self._busy += 1
                    self._idle.clear()
                    try:
                        fut = await self._admit(frame, camera_id)
                    except BaseException:
                        one_done(None)
                        raise
                    fut.add_done_callback(one_done)
                    acks.put_nowait(fut)
            finally:
                acks.put_nowait(None)

        reader = asyncio.get_running_loop().create_task(read(), name=f"pvad-ingest-{camera_id}")
        try:
            while (fut := await acks.get()) is not None:
                yield await asyncio.shield(fut)  # a dying stream does not cancel the commit: the state stays consistent
            await reader  # re-raises a failure to read the stream
            if cut:
                await context.abort(grpc.StatusCode.UNAVAILABLE, "server is shutting down; reconnect")
            if aged:  # status OK: the camera opens its next stream at once (through the balancer: maybe elsewhere)
                self.metrics.streams_aged.inc()
                context.set_trailing_metadata(((STREAM_END_KEY, "max-stream-age"),))
            if mode and mode[0] == "learn":  # the camera sent all its learning footage: fit now
                context.set_trailing_metadata((("pvad-normality", await self._finish_learning(camera_id, context)),))
        finally:
            await cancel_and_wait(reader)
            self.streams[camera_id] -= 1
            self.metrics.streams.dec()
            log.info("camera %s stream ended after %d frames", camera_id, n)

    def _stream_deadline(self) -> float | None:
        """When a new stream reaches its age limit (``limits.max_stream_age_s`` ± ``stream_age_jitter``)."""
        age = self.cfg.limits.max_stream_age_s
        if age is None:
            return None
        jitter = self.cfg.limits.stream_age_jitter
        return time.monotonic() + age * random.uniform(1.0 - jitter, 1.0 + jitter)

    def _cold_start(self, st: CameraState, camera_id: str) -> None:
        """A camera whose state this process did not hold, with a store other servers share: it moved here
        from another server (or this server restarted). Its SAS, alarm and last seq come from the store, but
        optical flow and background start cold, so the SAS is held (no alarm decision) for the frames they
        need to be meaningful again. One server on its own SQLite file keeps its restart rule (the first
        frame after a restart is scored with zero flow): it never comes here."""
        if st.last_seq < 0:
            return  # a camera the store has never seen: nothing to hold against
        background = getattr(self.analyzer, "background_cfg", None)
        st.cold_frames = cold_start_frames(background)
        self.metrics.camera_cold_starts.inc()
        log.info("camera %s: arrived with stored state (last seq %d): SAS held for %d frames while flow%s warm up",
                 camera_id, st.last_seq, st.cold_frames, " and background" if background is not None else "")

    def _held_cold(self, st: CameraState) -> bool:
        """Whether this frame (the camera's next in commit order) comes while flow/background are still cold."""
        if st.cold_frames <= 0:
            return False
        st.cold_frames -= 1
        self.metrics.frames_held_cold.inc()
        return True

    async def _stream_mode(self, context, camera_id: str) -> tuple[str, str] | None:
        """``pvad-learn: <session>`` marks a stream's frames as normal footage to learn from (``pvad learn``);
        ``pvad-relearn: 1`` drops the camera's model so it learns again from its live frames."""
        md = dict(context.invocation_metadata() or ())
        if "pvad-learn" not in md and "pvad-relearn" not in md:
            st = self.cameras.get(camera_id)
            if st is not None and st.learn_session is not None and not self.streams.get(camera_id):
                # a live stream after a `pvad learn` that never finished: learn from the live frames instead
                async with st.lock:
                    await st.idle()
                    st.learn_session = None
                    st.flow.normality.relearn(reason="its pvad learn stream ended before the footage did")
            return None
        norm = self.analyzer.normality_cfg
        if norm is None:
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION,
                                "this server learns no normality models (analysis.normality.enabled is false)")
        st = self._camera(camera_id)
        async with st.lock:
            await st.idle()  # never relearn under the feet of a frame in analysis
            if "pvad-relearn" in md:
                await asyncio.to_thread(self.hub.log.delete_normality, camera_id)
                st.flow.normality.relearn(reason="asked by the camera (pvad learn --reset)")
                return ("relearn", "")
            session = md["pvad-learn"]
            if st.learn_session != session:  # a reconnect of the same `pvad learn` keeps what it sent
                st.flow.normality.relearn(learn_only=True, reason=f"pvad learn session {session}")
                st.learn_session = session
        return ("learn", session)

    async def _finish_learning(self, camera_id: str, context) -> str:
        st = self.cameras[camera_id]
        async with st.lock:
            await st.idle()
            norm = st.flow.normality
            try:
                model = await asyncio.to_thread(norm.finish)
            except ValueError as err:
                st.learn_session = None
                norm.relearn(reason="pvad learn stream too short")
                await context.abort(grpc.StatusCode.FAILED_PRECONDITION, f"camera {camera_id}: {err}")
            await asyncio.to_thread(self.hub.log.save_normality, camera_id, model.to_bytes())
            st.learn_session = None
        return json.dumps(model.describe())


class AlarmsService(pvad_pb2_grpc.AlarmsServicer):
    def __init__(self, cfg: ServerConfig, hub: AlarmHub, metrics: ServerMetrics) -> None:
        self.cfg = cfg
        self.hub = hub
        self.metrics = metrics

    async def Subscribe(self, request: pvad_pb2.SubscribeRequest, context) -> AsyncIterator[pvad_pb2.AlarmEvent]:
        who = (await caller_identity(context, "subscriber", self.cfg.access.trusted_proxies)).ident
        allowed = self.cfg.access.cameras_for(who)
        wanted = frozenset(request.camera_ids)
        if allowed is not None:
            if wanted - allowed:
                await context.abort(grpc.StatusCode.PERMISSION_DENIED,
                                    f"subscriber {who} may not follow cameras {sorted(wanted - allowed)}")
            if not allowed:
                await context.abort(grpc.StatusCode.PERMISSION_DENIED, f"subscriber {who} may follow no camera")
            wanted = wanted or allowed
        if self.hub.subscribers >= self.cfg.limits.max_subscribers:
            await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED,
                                f"the server has {self.cfg.limits.max_subscribers} subscribers already")
        log.info("subscriber %s: cameras=%s after=%d scores=%s", who, sorted(wanted) or "all",
                 request.after_event_id, request.include_scores)
        self.metrics.subscribers.inc()
        try:
            async for ev in self.hub.subscribe(
                after_event_id=request.after_event_id, camera_ids=wanted, include_scores=request.include_scores
            ):
                yield ev
        finally:
            self.metrics.subscribers.dec()


@dataclass
class RunningServer:
    server: grpc.aio.Server
    port: int
    analyzer: Analyzer
    batcher: Batcher
    hub: AlarmHub
    ingest: IngestService
    health: health.aio.HealthServicer
    metrics: ServerMetrics
    metrics_port: int | None
    mqtt: MqttBridge | None = None
    web: object | None = None  # analysis_server.web.app.WebServer when web.enabled
    readiness: HealthEndpoint | None = None  # plain-HTTP /ready and /live when health.listen is set
    lifecycle: dict = field(default_factory=lambda: {"serving": True, "stopping": False})

    @property
    def health_port(self) -> int | None:
        return self.readiness.port if self.readiness is not None else None

    @property
    def web_port(self) -> int | None:
        return self.web.port if self.web is not None else None

    async def stop(self, grace: float | None = 5.0) -> None:
        """Graceful stop: health says NOT_SERVING, frames already received are analysed and
        acknowledged (up to `grace` seconds), then every stream ends with UNAVAILABLE so cameras
        reconnect and resend what was not acknowledged. `grace=0` stops at once. The dashboard
        goes first: its open event streams end and browsers reconnect to whoever serves next.
        `/ready` answers 503 from the first moment, so a load balancer sends no new stream here."""
        self.lifecycle["stopping"] = True
        if self.web is not None:
            await self.web.stop()
        await self.health.enter_graceful_shutdown()
        if grace:
            drained = await self.ingest.drain(grace)
            log.info("drain %s", "complete" if drained else f"cut short after {grace} s")
        else:
            self.ingest.draining = True
        c = self.ingest.counters
        log.info(
            "frames received %d, accepted %d, duplicates %d, refused %s; ms/frame by stage %s",
            c.received, c.accepted, c.duplicates, c.rejected or 0, self.analyzer.times.ms_per_frame(),
        )
        await self.server.stop(0.5 if grace else 0)
        await self.ingest.cancel_pending()
        await self.batcher.stop()
        if self.mqtt is not None:
            await self.mqtt.stop()
        if self.readiness is not None:
            await self.readiness.stop()
        await self.hub.stop()
        self.hub.log.close()


def build_analyzer(cfg: ServerConfig) -> Analyzer:
    """Load every network the server needs (slow: do it once, before serving)."""
    return Analyzer(cfg.analysis, cfg.decoders)


async def start_server(cfg: ServerConfig, *, analyzer: Analyzer | None = None) -> RunningServer:
    """Start serving on `cfg.listen` with mutual TLS; returns once the port is bound."""
    lifecycle = {"serving": False, "stopping": False}
    readiness = await _start_readiness(cfg, lifecycle)  # 503 while the networks load
    try:
        analyzer = analyzer or await asyncio.to_thread(build_analyzer, cfg)
        store = await asyncio.to_thread(open_store, cfg)
    except BaseException:
        if readiness is not None:
            await readiness.stop()
        raise
    batcher = Batcher(analyzer, max_batch=cfg.analysis.batching.max_batch, max_wait_ms=cfg.analysis.batching.max_wait_ms)
    metrics = ServerMetrics()
    hub = AlarmHub(store, queue_size=cfg.limits.subscriber_queue, dropped=metrics.scores_dropped)
    batcher.observe = metrics
    analyzer.stage_observer = metrics.stage_seconds
    limit = cfg.limits.max_message_bytes
    server = grpc.aio.server(options=[
        ("grpc.max_receive_message_length", limit),
        ("grpc.max_send_message_length", limit),
        # Find dead peers (a cut network) within about 30 s instead of hours.
        ("grpc.keepalive_time_ms", 20_000),
        ("grpc.keepalive_timeout_ms", 10_000),
        ("grpc.http2.min_ping_interval_without_data_ms", 5_000),
    ])
    ingest = IngestService(cfg, analyzer, batcher, hub, metrics)
    pvad_pb2_grpc.add_IngestServicer_to_server(ingest, server)
    pvad_pb2_grpc.add_AlarmsServicer_to_server(AlarmsService(cfg, hub, metrics), server)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    names = [
        pvad_pb2.DESCRIPTOR.services_by_name["Ingest"].full_name,
        pvad_pb2.DESCRIPTOR.services_by_name["Alarms"].full_name,
        health.SERVICE_NAME,
        reflection.SERVICE_NAME,
    ]
    reflection.enable_server_reflection(names, server)
    creds = reloading_server_credentials(CertPaths(ca=cfg.tls.ca, cert=cfg.tls.cert, key=cfg.tls.key))
    port = server.add_secure_port(cfg.listen, creds)
    if port == 0:
        raise PvadError(f"could not bind {cfg.listen}")
    web = None
    if cfg.web.enabled:
        from analysis_server.web.app import WebServer  # fastapi and uvicorn only when the dashboard is on

        try:
            web = await WebServer.start(cfg, hub=hub, ingest=ingest, analyzer=analyzer, metrics=metrics)
        except BaseException:
            hub.log.close()
            raise
    batcher.start()
    hub.start()
    await server.start()
    for name in names[:2] + [""]:
        await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    metrics_port = metrics.serve(cfg.metrics.listen) if cfg.metrics.listen else None
    bridge = None
    if cfg.mqtt is not None:
        bridge = MqttBridge(cfg.mqtt, hub)
        bridge.start()
    log.info("analysis server listening on %s (port %d), mTLS, accepts %s", cfg.listen, port, cfg.accept)
    running = RunningServer(server, port, analyzer, batcher, hub, ingest, health_servicer, metrics, metrics_port, bridge,
                            web, readiness, lifecycle)
    lifecycle["serving"] = True
    return running


async def _start_readiness(cfg: ServerConfig, lifecycle: dict) -> HealthEndpoint | None:
    """`/ready` (200 between start-up and the first moment of a stop) and `/live` on `health.listen`."""
    if not cfg.health.listen:
        return None

    def ready() -> tuple[bool, str]:
        if lifecycle["stopping"]:
            return False, "draining"
        if not lifecycle["serving"]:
            return False, "starting (loading and warming up the networks)"
        return True, ""

    endpoint = HealthEndpoint(ready)
    await endpoint.start(cfg.health.listen)
    return endpoint
