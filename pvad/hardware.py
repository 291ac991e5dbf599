"""What precision the networks run at on this hardware: the one rule for ``analysis.precision``.

``auto`` is bf16 on a CPU whose flags include AMX-BF16 or AVX512-BF16 (the instructions that make bf16
matrix work fast), fp32 on any other CPU (there bf16 is emulated: a server benchmark at bf16 on an
AVX2-only EPYC had not finished its first row after 15 minutes, where fp32 ran at 3.3 frames/s), and
bf16 (or fp16 where the GPU lacks bf16) on CUDA. An explicit ``bf16`` on a CPU without those
instructions is refused with the reason; ``fp16`` on a CPU is refused too.

``analysis.quantization.classifier: auto`` (``resolve_int8``) is int8 classifier trunks on a CPU with
VNNI or AMX-INT8, guarded on the camera's own frames (analysis_server/quantize.py).
"""

from __future__ import annotations

from pathlib import Path

from pvad.errors import ConfigError

BF16_FLAGS = frozenset({"amx_bf16", "avx512_bf16"})
# int8 dot-product instructions (what makes fbgemm/oneDNN int8 convolutions fast; AVX2 alone emulates them)
INT8_FLAGS = frozenset({"avx512_vnni", "avx_vnni", "amx_int8"})
# Flags worth printing beside a benchmark: what the precision choice and oneDNN's kernels depend on.
REPORTED_FLAGS = ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_bf16", "amx_int8")


def cpu_flags(cpuinfo: Path = Path("/proc/cpuinfo")) -> frozenset[str]:
    """The CPU's feature flags (Linux); empty where /proc/cpuinfo is missing or has none."""
    try:
        for line in cpuinfo.read_text(errors="replace").splitlines():
            if line.startswith(("flags", "Features")):
                return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def reported_flags(flags: frozenset[str]) -> list[str]:
    return [f for f in REPORTED_FLAGS if f in flags]


def resolve_precision(precision: str, device_type: str, *, flags: frozenset[str] | None = None,
                      cuda_bf16: bool | None = None, field: str = "analysis.precision") -> tuple[str, str]:
    """(fp32 | bf16 | fp16, why) for a configured precision on a device type ("cpu" or "cuda")."""
    if device_type == "cuda":
        if cuda_bf16 is None:
            import torch

            cuda_bf16 = torch.cuda.is_bf16_supported()
        if precision == "auto":
            return ("bf16", "CUDA with bf16") if cuda_bf16 else ("fp16", "CUDA without bf16")
        return precision, "as configured"
    flags = cpu_flags() if flags is None else flags
    fast_bf16 = sorted(BF16_FLAGS & flags)
    if precision == "fp16":
        raise ConfigError(f"{field}: fp16 needs a CUDA device; use auto, bf16 or fp32 on a CPU")
    if precision == "bf16" and not fast_bf16:
        raise ConfigError(f"{field}: bf16 on this CPU would be emulated (its flags have neither amx_bf16 nor "
                          "avx512_bf16), far slower than fp32; use auto or fp32")
    if precision == "auto":
        if fast_bf16:
            return "bf16", f"CPU has {', '.join(fast_bf16)}"
        return "fp32", "CPU has neither amx_bf16 nor avx512_bf16 (bf16 would be emulated)"
    return precision, "as configured"


def resolve_int8(setting: str, device_type: str, *, flags: frozenset[str] | None = None,
                 field: str = "analysis.quantization.classifier") -> tuple[bool, str]:
    """(int8 classifier trunks or not, why) for ``analysis.quantization.classifier`` on a device type.

    ``auto`` is int8 on a CPU with int8 dot-product instructions (VNNI, AMX-INT8) and never on CUDA;
    ``int8`` on CUDA is refused (there fp16/bf16 autocast is the fast path)."""
    if setting == "none":
        return False, "as configured"
    if device_type == "cuda":
        if setting == "int8":
            raise ConfigError(f"{field}: int8 is for a CPU (PyTorch's x86 int8 kernels); on CUDA use "
                              "analysis.precision fp16 or bf16")
        return False, "CUDA: fp16/bf16 autocast is the fast path"
    if setting == "int8":
        return True, "as configured"
    fast = sorted(INT8_FLAGS & (cpu_flags() if flags is None else flags))
    if fast:
        return True, f"CPU has {', '.join(fast)}"
    return False, "CPU has no int8 dot-product instructions (avx512_vnni, avx_vnni, amx_int8)"

