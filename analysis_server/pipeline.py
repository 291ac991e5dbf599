"""The analysis pipeline: decode -> optical flow (and background) -> detector -> two-stream classifier, and the
camera's normality model -> σ_t (the two fused by ``analysis.normality.fusion``).

`Analyzer` owns the networks and runs one batch synchronously, on its one worker thread (`executor`).
`Batcher` collects frames from any number of camera streams into batches of at most
`max_batch`, waiting at most `max_wait_ms` for a batch to fill. A camera may have several frames
queued (``analysis.batching.max_in_flight_per_camera``), but a batch takes at most one frame of
each camera, the earliest, and batches run one after another: frame n+1 of a camera always sees
the flow, background and normality state that frame n left (they are per-camera and ordered).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import defaultdict, deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import cv2
import numpy as np
import torch

from analysis_server.background import CameraBackground
from analysis_server.detectors import Detections, bag_of_objects, create_detector
from analysis_server.flow import CameraFlow, FlowEstimator
from analysis_server.normality import (
    CameraNormality,
    MotionGrid,
    NormalityModel,
    NormalityStep,
    Phase,
    fuse,
)
from analysis_server.normality.objects import object_rows
from analysis_server.validate import Payload
from models.nets.autoencoder import LATENT_SHAPE, encoder_id, load_autoencoder
from models.nets.two_stream import card_background, load_classifier
from pvad.aio import cancel_and_wait
from pvad.config import (
    FRAME_HEIGHT,
    FRAME_WIDTH,
    AnalysisConfig,
    DecoderConfig,
    HogDetector,
)
from pvad.devices import resolve_device
from pvad.hardware import resolve_int8, resolve_precision

log = logging.getLogger(__name__)


@dataclass
class StageTimes:
    """Wall time per pipeline stage, summed over frames."""

    seconds: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    frames: int = 0

    def add(self, stage: str, seconds: float) -> None:
        self.seconds[stage] += seconds

    def ms_per_frame(self) -> dict[str, float]:
        n = max(self.frames, 1)
        return {k: round(1000.0 * v / n, 2) for k, v in self.seconds.items()}


@dataclass
class FrameResult:
    """What the pipeline says about one frame."""

    sigma: float  # σ_t, what the SAS accumulates (the fusion of the two below)
    classifier: float | None = None  # the two-stream classifier's confidence (None: not run)
    phase: Phase | None = None  # the camera's normality phase (None: normality off)
    normality_score: float | None = None  # smoothed distance to the camera's normal (scoring only)
    normality_sigma: float | None = None
    fitted: NormalityModel | None = None  # set on the frame that completed the camera's learning
    hold: bool = False  # no evidence either way: the SAS stands still (learning, or no motion measured yet)

    @property
    def learning(self) -> bool:
        return self.phase is Phase.LEARNING


class DecoderBank:
    """Decoder halves keyed by the id of the encoder they belong to."""

    def __init__(self, cfg: DecoderConfig, device: torch.device) -> None:
        self.decoders: dict[str, torch.nn.Module] = {}
        self.untrained: list[str] = []
        sources = [(p, 0) for p in cfg.checkpoints] + [(None, s) for s in cfg.untrained_seeds]
        for path, seed in sources:
            ae, card = load_autoencoder(path, seed=seed)
            eid = encoder_id(ae.encoder)
            self.decoders[eid] = ae.decoder.to(device).eval()
            what = str(path) if path else f"untrained seed {seed}"
            if not card.trained:
                self.untrained.append(f"autoencoder ({what})")
                log.warning("decoder for encoder %s is UNTRAINED (%s): reconstructions are noise", eid, what)
            else:
                log.info("decoder for encoder %s loaded from %s", eid, what)

        self.shapes: dict[str, tuple[int, ...]] = {eid: LATENT_SHAPE for eid in self.decoders}


class Analyzer:
    """All networks of the server; `analyze` runs one batch of validated payloads."""

    def __init__(self, analysis: AnalysisConfig, decoders: DecoderConfig) -> None:
        # Every network runs on this one thread (warm-up included): OpenMP keeps a team of worker threads
        # per calling thread, and a second team spinning beside the busy one cost 20-40 % on 2 cores.
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="pvad-analysis")
        if analysis.threads:
            torch.set_num_threads(analysis.threads)
        self.device = resolve_device(analysis.device, field="analysis.device")
        self.precision, why = resolve_precision(analysis.precision, self.device.type)
        if analysis.precision == "auto":
            log.info("analysis.precision auto: %s (%s)", self.precision, why)
        self.cfg = analysis
        self.normality_cfg = analysis.normality if analysis.normality.enabled else None
        self.motion = MotionGrid(analysis.normality.motion) if self.normality_cfg is not None else None
        self.fusion = analysis.normality.fusion if self.normality_cfg is not None else "classifier"
        # the normality model's object features: the boxes of analysis.detector with the flow inside them
        self.object_features = analysis.object_features
        c = analysis.classifier
        self.classifier, self.card, self.detector = None, None, None
        if self.object_features is not None:
            self.detector = create_detector(analysis.detector)
        if self.fusion != "normality":
            self.classifier, self.card = load_classifier(
                c.checkpoint, backbone=c.backbone, streams=c.streams, bag=c.bag, hidden=c.hidden,
                pretrained=c.pretrained == "auto", seed=c.seed,
            )
            if self.classifier.use_bag:  # only a classifier with a bag-of-objects input needs a detector
                self.detector = self.detector or create_detector(analysis.detector or HogDetector())
            elif self.detector is None and analysis.has_detector:
                log.warning("analysis.detector (%s) is not loaded: the classifier takes no bag-of-objects, so none is "
                            "computed; leave analysis.detector out to silence this", analysis.detector.backend)
            self.classifier = self.classifier.to(self.device).eval()
        else:
            unused = [f"analysis.{k}" for k in ("classifier", "detector") if k in analysis.model_fields_set
                      and not (k == "detector" and self.detector is not None)]
            if unused:
                log.warning("%s not loaded: analysis.normality.fusion is normality, so σ_t is the normality model's "
                            "alone; set fusion max, mean or classifier to use them", " and ".join(unused))
        self.decoders = DecoderBank(decoders, self.device)
        self.flow = FlowEstimator(analysis.flow)
        # the classifier card's background settings: the server must match training
        self.background_cfg = card_background(self.card) if self.card is not None else None
        if self.card is not None:
            # (x - mean) / std as one multiply and one subtract: x * (1/std) - mean/std
            std = torch.tensor(self.card.std, dtype=torch.float32, device=self.device).view(1, 3, 1, 1)
            self._inv_std = 1.0 / std
            self._mean_over_std = torch.tensor(self.card.mean, dtype=torch.float32, device=self.device).view(1, 3, 1, 1) / std
        # flow for several cameras at once: OpenCV releases the GIL (frames of one camera stay in order)
        self._flow_pool = ThreadPoolExecutor(max_workers=max(1, min(4, torch.get_num_threads())),
                                             thread_name_prefix="pvad-flow")
        self.untrained = list(self.decoders.untrained)
        if self.card is not None and not self.card.trained:
            self.untrained.append(f"classifier ({self.classifier.arch_kwargs['backbone']}, {self.card.provenance})")
            log.warning("classifier is UNTRAINED (%s): scores carry no meaning", self.card.provenance)
        if self.detector is not None:
            self.detector.place(self.device, self._autocast)  # torch backends run on our device and precision
        self.times = StageTimes()
        self.stage_observer = None  # a prometheus Histogram with a `stage` label, set by the service
        if self.classifier is not None:
            what = (f"classifier {self.classifier.arch_kwargs['backbone']} streams={self.classifier.streams} "
                    f"bag={self.classifier.use_bag} detector={self.detector_name}")
        else:
            what = "no classifier"
        norm = (f"normality (fusion {self.fusion}, learning {self.normality_cfg.learning_frames} frames, "
                f"{'grid and object features, detector ' + self.detector_name if self.object_features else 'grid features'})"
                if self.normality_cfg is not None else "normality off")
        log.info("analysis: device=%s precision=%s %s, %s, flow=%s max_batch=%d", self.device, self.precision,
                 what, norm, analysis.flow.method, analysis.batching.max_batch)
        self.int8 = None
        if analysis.batching.warmup:
            self.executor.submit(self.warm_up).result()
        self.int8 = self._int8_trunks(analysis)  # after the warm-up: only real frames calibrate

    def warm_up(self) -> float:
        """Run each batch size the batcher can form once, on noise frames (and latents of every decoder),
        then forget the timings; returns the seconds it took. Without it, every new batch shape pays
        oneDNN's kernel set-up (up to hundreds of ms with bf16) on a live camera's frame."""
        t0 = time.perf_counter()
        top = self.cfg.batching.max_batch
        sizes = sorted({*range(1, min(top, 16) + 1), *(2**k for k in range(5, 9) if 2**k <= top), top})
        rng = np.random.default_rng(0)
        kinds = list(self.decoders.decoders) or [None]
        for b in sizes:
            items = []
            for i in range(b):
                eid = kinds[i % len(kinds)]
                if eid is None:
                    p = Payload("warm-up", 0, 0, image=rng.integers(0, 256, (FRAME_HEIGHT, FRAME_WIDTH, 3), dtype=np.uint8))
                else:
                    z = rng.standard_normal(self.decoders.shapes[eid]).astype(np.float32)
                    p = Payload("warm-up", 0, 0, latent=z, encoder_id=eid)
                items.append((self.new_camera_flow(), p))
            self.analyze(items)
        self.times = StageTimes()
        seconds = time.perf_counter() - t0
        log.info("analysis: warmed up batch sizes %s in %.1f s", f"1..{top}" if len(sizes) == top else sizes, seconds)
        return seconds

    def _int8_trunks(self, analysis: AnalysisConfig):
        q = analysis.quantization
        field = "analysis.quantization.classifier"
        int8, why = resolve_int8(q.classifier, self.device.type, field=field)
        if not int8:
            if q.classifier == "auto" and self.classifier is not None:
                log.info("%s auto: no int8 (%s)", field, why)
            return None
        if self.classifier is None:
            if q.classifier == "int8":
                log.warning("%s: int8 not applied: no classifier runs (analysis.normality.fusion is normality)", field)
            return None
        from analysis_server.quantize import Int8Trunks

        scale = self.classifier.input_scale
        example = torch.zeros(1, 3, round(FRAME_HEIGHT * scale), round(FRAME_WIDTH * scale))
        trunks = Int8Trunks(self.classifier, calibration_frames=q.calibration_frames, example=example,
                            keep_on_error=q.classifier == "int8")
        log.info("%s %s: int8 trunks after %d calibration frames (%s; the head and the other networks stay at %s)",
                 field, q.classifier, q.calibration_frames, why, self.precision)
        return trunks

    def close(self) -> None:
        """End the networks' thread (and with it its OpenMP team); the analyzer cannot run after this."""
        if self.int8 is not None:
            self.int8.close()
        self.executor.shutdown(wait=True)
        self._flow_pool.shutdown(wait=True)

    @property
    def detector_name(self) -> str:
        return self.detector.name if self.detector is not None else "none"

    def _autocast(self):
        if self.precision == "fp32":
            return contextlib.nullcontext()
        dtype = torch.bfloat16 if self.precision == "bf16" else torch.float16
        return torch.autocast(self.device.type, dtype=dtype)

    def classifier_autocast(self):
        """int8 trunks take fp32 inputs: no autocast around them (the head is a few small matrix products)."""
        return self._autocast() if self.int8 is None else contextlib.nullcontext()

    def new_camera_flow(self, camera_id: str = "", model: NormalityModel | None = None) -> CameraFlow:
        """A camera's pipeline state; with normality on, learning (or scoring with ``model``)."""
        bg = CameraBackground(self.background_cfg) if self.background_cfg is not None else None
        normality = (CameraNormality(self.normality_cfg, camera_id, model, object_features=self.object_features)
                     if self.normality_cfg is not None else None)
        return CameraFlow(self.flow, bg, normality)

    def _normalise(self, batch_hwc: np.ndarray, scale: float = 1.0) -> torch.Tensor:
        """N x H x W x 3 (uint8 with scale 1/255, or float in [0, 1]) -> normalised N x 3 x H x W float32,
        channels-last (the NHWC memory as it is, no copy before the one arithmetic pass)."""
        x = torch.from_numpy(batch_hwc)
        if self.device.type == "cuda":
            x = x.pin_memory().to(self.device, non_blocking=True)
        x = x.permute(0, 3, 1, 2)
        return x.to(torch.float32).mul(self._inv_std * scale).sub_(self._mean_over_std)

    def _per_camera(self, step, states: list, frames: list[np.ndarray]) -> np.ndarray:
        """``step(state, frame)`` for each camera's frame, stacked; cameras in parallel (OpenCV releases
        the GIL), one camera's frames in order."""
        if len(states) > 1 and len({id(s) for s in states}) == len(states):
            return np.stack(list(self._flow_pool.map(step, states, frames)))
        return np.stack([step(s, f) for s, f in zip(states, frames)])  # a camera twice: in order

    def _per_camera_list(self, step, states: list, args: list) -> list:
        """Like ``_per_camera`` for steps that return objects, not arrays."""
        if len(states) > 1 and len({id(s) for s in states}) == len(states):
            return list(self._flow_pool.map(step, states, args))
        return [step(s, a) for s, a in zip(states, args)]

    def flows(self, states: list[CameraFlow], frames: list[np.ndarray]) -> np.ndarray:
        """Flow images (N x H x W x 3 float32) of each camera's frame, cameras in parallel."""
        return self._per_camera(CameraFlow.next, states, frames)

    def backgrounds(self, states: list[CameraFlow], frames: list[np.ndarray]) -> np.ndarray:
        """Each camera's background (N x H x W x 3 uint8) once its frame is learnt, cameras in parallel."""
        return self._per_camera(lambda s, f: s.background.next(f), states, frames)

    @torch.inference_mode()
    def reconstruct(self, payloads: list[Payload]) -> list[np.ndarray]:
        """RGB uint8 frames (H x W x 3) as the server sees them: decoded latents or received images."""
        frames: list[np.ndarray | None] = [p.image for p in payloads]
        by_encoder: dict[str, list[int]] = defaultdict(list)
        for i, p in enumerate(payloads):
            if p.latent is not None:
                by_encoder[p.encoder_id].append(i)
        for eid, idx in by_encoder.items():
            z = torch.from_numpy(np.stack([payloads[i].latent for i in idx])).to(self.device)
            with self._autocast():
                rgb = self.decoders.decoders[eid](z).float().clamp_(0, 1).mul_(255).round_().to(torch.uint8)
            rgb = rgb.permute(0, 2, 3, 1).cpu().numpy()
            for j, i in enumerate(idx):
                frames[i] = rgb[j]
        return frames  # type: ignore[return-value]

    def analyze(self, items: list[tuple[CameraFlow, Payload]]) -> list[float]:
        """σ_t for each (camera state, payload), in order."""
        return [r.sigma for r in self.analyze_frames(items)]

    def _normality(self, state: CameraFlow, frame: np.ndarray, payload: Payload,
                   dets: Detections | None = None) -> NormalityStep | None:
        if state.normality is None:
            return None
        norm = state.normality
        feats = self.motion(state.raw, norm.foreground.foreground(frame), norm.latent_diff(payload.latent))
        objects = object_rows(dets, state.raw) if dets is not None and state.has_flow else None
        return state.normality.step(feats, source=payload.source, frame_shape=frame.shape[:2], has_flow=state.has_flow,
                                    objects=objects)

    def object_detections(self, states: list[CameraFlow], payloads: list[Payload],
                          frames: list[np.ndarray]) -> list[Detections | None]:
        """The detector's boxes on the frames of the cameras whose normality model uses object features
        (``CameraNormality.objects_for``), None for the others; one batch."""
        dets: list[Detections | None] = [None] * len(frames)
        if self.object_features is not None:
            self._detect(frames, dets, [i for i, (s, p) in enumerate(zip(states, payloads))
                                        if s.normality is not None and s.normality.objects_for(p.source)])
        return dets

    def _detect(self, frames: list[np.ndarray], dets: list, which: list[int]) -> None:
        """Fill ``dets[i]`` with the detector's boxes on ``frames[i]`` for each i of ``which`` (one batch)."""
        if which:
            for i, d in zip(which, self.detector.detect_batch([cv2.cvtColor(frames[i], cv2.COLOR_RGB2BGR) for i in which])):
                dets[i] = d

    def analyze_frames(self, items: list[tuple[CameraFlow, Payload]]) -> list[FrameResult]:
        """A `FrameResult` for each (camera state, payload), in order."""
        t0 = time.perf_counter()
        for state, p in items:
            if p.discontinuity:
                state.reset()
        frames = self.reconstruct([p for _, p in items])
        t1 = time.perf_counter()
        states = [s for s, _ in items]
        if self.classifier is not None:
            flows = self.flows(states, frames)
        else:  # only the normality model looks at the flow: no flow image to encode
            self._per_camera_list(CameraFlow.advance, states, frames)
        backgrounds = self.backgrounds(states, frames) if self.background_cfg is not None else None
        t2 = time.perf_counter()
        dets = self.object_detections(states, [p for _, p in items], frames)
        t_det = time.perf_counter() - t2
        steps = [None] * len(items)
        if self.normality_cfg is not None:
            steps = self._per_camera_list(lambda s, a: self._normality(s, *a), states,
                                          list(zip(frames, [p for _, p in items], dets)))
        t3 = time.perf_counter()
        sigma = None
        if self.fusion != "normality":
            bags = None
            if self.classifier.use_bag:
                self._detect(frames, dets, [i for i, d in enumerate(dets) if d is None])
                bags = torch.from_numpy(np.stack([bag_of_objects(d) for d in dets])).to(self.device)
            t4 = time.perf_counter()
            if self.int8 is not None:  # None during the warm-up
                self.int8.before_batch(len(frames))
            with torch.inference_mode(), self.classifier_autocast():
                x = self._normalise(np.stack(frames), 1.0 / 255.0)
                if backgrounds is not None:  # the foreground layout of models.nets.two_stream: the means cancel
                    x = x.sub_(self._normalise(backgrounds, 1.0 / 255.0))
                flow = self._normalise(flows) if self.classifier.streams == 2 else None
                sigma = torch.sigmoid(self.classifier(x, flow, bags).float()).cpu().numpy()
        else:
            t4 = t3
        t5 = time.perf_counter()
        results = []
        for i, step in enumerate(steps):
            clf = float(sigma[i]) if sigma is not None else None
            if step is None:
                results.append(FrameResult(fuse("classifier", clf, None), clf))
            elif step.phase is Phase.LEARNING:  # no alarm decision while the camera learns its normal
                results.append(FrameResult(0.0, clf, step.phase, fitted=step.fitted, hold=True))
            else:
                hold = step.sigma is None and (clf is None or self.fusion == "normality")
                results.append(FrameResult(fuse(self.fusion, clf, step.sigma), clf, step.phase, step.score, step.sigma,
                                           hold=hold))
        stages = (("decode", t1 - t0), ("flow", t2 - t1), ("normality", t3 - t2 - t_det), ("detector", t4 - t3 + t_det),
                  ("classifier", t5 - t4))
        for stage, dt in stages:
            if stage == "normality" and self.normality_cfg is None:
                continue
            self.times.add(stage, dt)
            if self.stage_observer is not None:
                self.stage_observer.labels(stage).observe(dt / len(items))
        self.times.frames += len(items)
        return results


@dataclass
class _Job:
    state: CameraFlow
    payload: Payload
    future: asyncio.Future


class Batcher:
    """Dynamic batching across camera streams; the networks run in one worker thread."""

    def __init__(self, analyzer: Analyzer, *, max_batch: int, max_wait_ms: float) -> None:
        self.analyzer = analyzer
        self.max_batch = max_batch
        self.max_wait = max_wait_ms / 1000.0
        self._queue: asyncio.Queue[_Job] = asyncio.Queue()
        self._held: deque[_Job] = deque()  # frames of a camera already in the batch being collected
        self._task: asyncio.Task | None = None
        self.batches = 0
        self.observe = None  # ServerMetrics, set by the service

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="pvad-batcher")

    async def stop(self) -> None:
        """Stop; frames still queued are cancelled (their streams ack nothing for them)."""
        await cancel_and_wait(self._task)
        while not self._queue.empty():
            self._held.append(self._queue.get_nowait())
        for job in self._held:
            job.future.cancel()
        self._held.clear()

    def enqueue(self, state: CameraFlow, payload: Payload) -> asyncio.Future:
        """Queue one frame of ``state``'s camera; the future resolves to its ``FrameResult`` after
        every earlier frame of the same camera has been analysed."""
        fut = asyncio.get_running_loop().create_future()
        self._queue.put_nowait(_Job(state, payload, fut))
        return fut

    def _take(self, job: _Job, jobs: list[_Job]) -> None:
        """Into the batch, unless the batch holds a frame of that camera: then it waits its turn."""
        if any(j.state is job.state for j in jobs) or any(h.state is job.state for h in self._held):
            self._held.append(job)
        else:
            jobs.append(job)

    async def _collect(self) -> list[_Job]:
        jobs: list[_Job] = []
        held, self._held = self._held, deque()
        for job in held:  # frames that waited for their camera's previous one, in arrival order
            if len(jobs) < self.max_batch:
                self._take(job, jobs)
            else:
                self._held.append(job)
        while not jobs:  # nothing ready: wait for a frame of a camera not already waiting its turn
            self._take(await self._queue.get(), jobs)
        deadline = time.monotonic() + self.max_wait
        while len(jobs) < self.max_batch:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            try:
                self._take(await asyncio.wait_for(self._queue.get(), remaining), jobs)
            except asyncio.TimeoutError:
                break
        return jobs

    async def _run(self) -> None:
        while True:
            jobs = await self._collect()
            jobs = [j for j in jobs if not j.future.cancelled()]
            if not jobs:
                continue
            try:
                sigmas = await asyncio.get_running_loop().run_in_executor(
                    self.analyzer.executor, self.analyzer.analyze_frames, [(j.state, j.payload) for j in jobs])
            except Exception as err:  # a failing batch fails its frames, never the batcher
                log.exception("analysis of a batch of %d frames failed", len(jobs))
                for j in jobs:
                    if not j.future.done():
                        j.future.set_exception(err)
                continue
            self.batches += 1
            if self.observe is not None:
                self.observe.batch_size.observe(len(jobs))
            for j, s in zip(jobs, sigmas):
                if not j.future.done():
                    j.future.set_result(s)
