"""int8 classifier trunks on a CPU, calibrated on the server's own first frames (``analysis.quantization``).

Post-training static quantization with PyTorch's FX graph mode (``torch.ao.quantization``, backend
``x86``: fbgemm/oneDNN int8 kernels, VNNI where the CPU has it, AVX2 otherwise). Only the backbones'
convolutional trunks (``Backbone.features``) are quantized: they are nearly all of the classifier's
work, and the small fully-connected head stays fp32.

Activation ranges come from real frames: the trunks first run with observers (fp32 outputs, so σ is
exactly fp32's) on the first ``calibration_frames`` frames the server analyses after its warm-up; then
a copy is converted to int8 on a thread of its own while the fp32 trunks keep serving, and the int8
trunks take over at the next batch. No fixed calibration set has to ship, and the ranges are those of
the site's own cameras.

**The guard.** Before the swap, the int8 and fp32 trunks run on the last ``CHECK_FRAMES`` calibration
inputs, and the largest relative error of the pooled features the head sees is compared with
``FEATURE_TOLERANCE``. int8 chosen by ``auto`` that fails it is dropped (the trunks go back to fp32,
logged); an explicit ``int8`` is kept with a warning that states the error. It catches weights whose
int8 conversion goes wrong: MobileNetV3-Small without ImageNet weights loses its features entirely
(relative error 1.0), where ResNet-50 stays at 2 %.

``torch.ao.quantization`` is deprecated upstream in favour of torchao's pt2e flow, whose int8 speed
comes from ``torch.compile`` (Inductor, with a C++ compiler at run time); the FX flow still ships in the
pinned torch 2.14.1 and runs fbgemm/oneDNN int8 kernels in eager mode, so it is used here, with its
deprecation warnings silenced where it is called.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import time
import warnings
from concurrent.futures import Future, ThreadPoolExecutor

import torch
from torch import nn

log = logging.getLogger(__name__)

BACKEND = "x86"
# the largest relative error of the head's input features accepted from int8 (also the bench's threshold)
FEATURE_TOLERANCE = 0.1
CHECK_FRAMES = 8  # calibration inputs the guard compares int8 with fp32 on


@contextlib.contextmanager
def _quiet():
    """torch.ao's deprecation notices (see the module docstring), once per conversion otherwise."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"torch\.ao")
        warnings.filterwarnings("ignore", message=r".*quantize_per_tensor.*deprecated", category=UserWarning)
        warnings.filterwarnings("ignore", message=r".*torch\.ao\.quantization is deprecated")
        warnings.filterwarnings("ignore", message=r".*reduce_range will be deprecated", category=UserWarning)
        yield


def _quantizable(stream: nn.Module) -> bool:
    return hasattr(stream, "features") and isinstance(stream.features, nn.Module)


class Int8Trunks:
    """Swaps each backbone's ``features`` for an observed copy, then for its int8 conversion (or back to fp32
    when the guard rejects it and ``keep_on_error`` is false)."""

    def __init__(self, classifier: nn.Module, *, calibration_frames: int, example: torch.Tensor,
                 keep_on_error: bool = False) -> None:
        from torch.ao.quantization import get_default_qconfig_mapping
        from torch.ao.quantization.quantize_fx import prepare_fx

        torch.backends.quantized.engine = BACKEND
        self.streams = [s for s in (classifier.frame_stream, classifier.flow_stream) if s is not None]
        if not all(_quantizable(s) for s in self.streams):
            raise ValueError("int8 needs backbones with a `features` trunk")
        self.pool_max = getattr(classifier, "pool", "avg") == "avgmax"
        self.fp32 = [s.features for s in self.streams]
        with _quiet():
            # the first stage stays float: it sees the raw input (a frame, its foreground or a flow image)
            qmap = get_default_qconfig_mapping(BACKEND).set_module_name("0", None)
            self.observed = [prepare_fx(copy.deepcopy(f).eval(), qmap, example_inputs=(example,)) for f in self.fp32]
        # the last CHECK_FRAMES inputs of each trunk, for the guard (at most 8 frames: 15 MB for two ResNet-50s)
        self.held: list[torch.Tensor | None] = [None for _ in self.observed]
        self._hooks = [o.register_forward_pre_hook(self._hold(i)) for i, o in enumerate(self.observed)]
        for s, obs in zip(self.streams, self.observed):
            s.features = obs
        self.calibration_frames = calibration_frames
        self.keep_on_error = keep_on_error
        self.seen = 0
        self.state = "calibrating"  # → converting → int8 (or fp32: rejected by the guard)
        self.convert_s: float | None = None
        self.check_err: float | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._future: Future | None = None

    def _hold(self, i: int):
        def hook(_module: nn.Module, args: tuple) -> None:
            x = args[0].detach()[-CHECK_FRAMES:]
            prev = self.held[i]
            self.held[i] = (x if prev is None else torch.cat([prev, x]))[-CHECK_FRAMES:].clone()
        return hook

    def before_batch(self, n: int) -> None:
        """Call on the networks' thread before each classifier batch of ``n`` real frames."""
        if self.state == "calibrating":
            if self.seen < self.calibration_frames:
                self.seen += n  # this batch is observed too
            else:
                self._start_conversion()
        elif self.state == "converting" and self._future.done():
            self._swap()

    def _start_conversion(self) -> None:
        # the copies are taken between batches, so the observers are not written while they are converted
        frozen = [copy.deepcopy(o) for o in self.observed]
        held = self.held
        for h in self._hooks:
            h.remove()
        self.held = []
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="pvad-int8")
        self._future = self._pool.submit(self._convert, frozen, held)
        self.state = "converting"

    def _pooled(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([x.mean(dim=(2, 3)), x.amax(dim=(2, 3))], 1) if self.pool_max else x.mean(dim=(2, 3))

    def _convert(self, observed: list[nn.Module], held: list[torch.Tensor]) -> list[nn.Module]:
        from torch.ao.quantization.quantize_fx import convert_fx

        t0 = time.perf_counter()
        with _quiet():
            out = [convert_fx(o) for o in observed]
        self.convert_s = time.perf_counter() - t0
        err = 0.0
        with torch.inference_mode():
            for f32, q, x in zip(self.fp32, out, held):
                ref, got = self._pooled(f32(x).float()), self._pooled(q(x).float())
                rel = (got - ref).norm(dim=1) / ref.norm(dim=1).clamp_min(1e-12)
                err = max(err, float(rel.max()))
        self.check_err = err
        return out

    def _swap(self) -> None:
        converted = self._future.result()  # a failed conversion raises here, on the networks' thread
        self._pool.shutdown(wait=False)
        fp32, self.fp32, self.observed = self.fp32, [], []  # the classifier holds the trunks it keeps; no copies
        err = self.check_err
        if err > FEATURE_TOLERANCE and not self.keep_on_error:
            for s, f in zip(self.streams, fp32):
                s.features = f
            self.state = "fp32"
            log.warning("analysis.quantization: int8 classifier trunks rejected: on the last %d calibration frames "
                        "their features differ from fp32 by %.3f (> %.2f); the trunks stay fp32", CHECK_FRAMES, err,
                        FEATURE_TOLERANCE)
            return
        for s, q in zip(self.streams, converted):
            s.features = q
        self.state = "int8"
        log.info("analysis.quantization: classifier trunks now int8 (calibrated on %d frames, converted in %.1f s; "
                 "features within %.3f of fp32 on the last %d)", self.seen, self.convert_s or 0.0, err, CHECK_FRAMES)
        if err > FEATURE_TOLERANCE:
            log.warning("analysis.quantization.classifier: int8 as configured, but its features differ from fp32 by "
                        "%.3f (> %.2f) on this camera's frames: scores may differ from fp32", err, FEATURE_TOLERANCE)

    def wait_ready(self, timeout: float | None = None) -> None:
        """Convert now if still calibrating (on the frames seen so far), and block until the int8 trunks (or the
        fp32 ones, if the guard rejects int8) are in place. For benchmarks and tests, on the networks' thread;
        the server never waits."""
        if self.state == "calibrating":
            if self.seen == 0:
                raise RuntimeError("int8 trunks have observed no frame to calibrate on")
            self._start_conversion()
        if self.state == "converting":
            self._future.result(timeout)
            self._swap()

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
