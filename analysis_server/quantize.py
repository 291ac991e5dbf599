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
    """Swaps each backbone's ``features`` for an observed copy, then for its int8 conversion."""

    def __init__(self, classifier: nn.Module, *, calibration_frames: int, example: torch.Tensor,
                 keep_first_fp32: bool = True) -> None:
        from torch.ao.quantization import get_default_qconfig_mapping
        from torch.ao.quantization.quantize_fx import prepare_fx

        torch.backends.quantized.engine = BACKEND
        self.streams = [s for s in (classifier.frame_stream, classifier.flow_stream) if s is not None]
        if not all(_quantizable(s) for s in self.streams):
            raise ValueError("int8 needs backbones with a `features` trunk")
        self.fp32 = [s.features for s in self.streams]
        with _quiet():
            qmap = get_default_qconfig_mapping(BACKEND)
            if keep_first_fp32:  # the first stage sees the raw input (a frame, its foreground or a flow image)
                qmap = qmap.set_module_name("0", None)
            self.observed = [prepare_fx(copy.deepcopy(f).eval(), qmap, example_inputs=(example,)) for f in self.fp32]
        for s, obs in zip(self.streams, self.observed):
            s.features = obs
        self.calibration_frames = calibration_frames
        self.seen = 0
        self.state = "calibrating"  # → converting → int8
        self.convert_s: float | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._future: Future | None = None

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
        # the copy is taken between batches, so the observers are not written while it is converted
        frozen = [copy.deepcopy(o) for o in self.observed]
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="pvad-int8")
        self._future = self._pool.submit(self._convert, frozen)
        self.state = "converting"

    def _convert(self, observed: list[nn.Module]) -> list[nn.Module]:
        from torch.ao.quantization.quantize_fx import convert_fx

        t0 = time.perf_counter()
        with _quiet():
            out = [convert_fx(o) for o in observed]
        self.convert_s = time.perf_counter() - t0
        return out

    def _swap(self) -> None:
        converted = self._future.result()  # a failed conversion raises here, on the networks' thread
        for s, q in zip(self.streams, converted):
            s.features = q
        self.state = "int8"
        self._pool.shutdown(wait=False)
        log.info("analysis.quantization: classifier trunks now int8 (calibrated on %d frames, converted in %.1f s)",
                 self.seen, self.convert_s or 0.0)

    def wait_ready(self, timeout: float | None = None) -> None:
        """Convert now if still calibrating (on the frames seen so far), and block until the int8 trunks are in
        place. For benchmarks and tests, on the networks' thread; the server never waits."""
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
