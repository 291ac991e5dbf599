"""`analysis.precision: auto` follows the hardware; bf16 where it would be emulated is refused."""

from __future__ import annotations

import pytest

from pvad.errors import ConfigError
from pvad.hardware import cpu_flags, reported_flags, resolve_int8, resolve_precision

AVX2 = frozenset({"fpu", "sse4_2", "avx2", "fma"})  # an AMD EPYC Zen 3
SPR = AVX2 | {"avx512f", "avx512_bf16", "amx_tile", "amx_bf16"}  # a Sapphire Rapids


def test_auto_is_fp32_on_avx2_and_bf16_with_amx_or_avx512_bf16():
    assert resolve_precision("auto", "cpu", flags=AVX2)[0] == "fp32"
    assert resolve_precision("auto", "cpu", flags=SPR) == ("bf16", "CPU has amx_bf16, avx512_bf16")
    assert resolve_precision("auto", "cpu", flags=AVX2 | {"avx512_bf16"})[0] == "bf16"
    assert resolve_precision("fp32", "cpu", flags=SPR)[0] == "fp32"  # what a user sets stays


def test_emulated_bf16_and_cpu_fp16_are_refused_with_the_reason():
    with pytest.raises(ConfigError, match="analysis.precision: bf16 on this CPU would be emulated"):
        resolve_precision("bf16", "cpu", flags=AVX2)
    assert resolve_precision("bf16", "cpu", flags=SPR)[0] == "bf16"
    with pytest.raises(ConfigError, match="fp16 needs a CUDA device"):
        resolve_precision("fp16", "cpu", flags=SPR)


def test_cuda_prefers_bf16_where_the_gpu_has_it():
    assert resolve_precision("auto", "cuda", cuda_bf16=True)[0] == "bf16"
    assert resolve_precision("auto", "cuda", cuda_bf16=False)[0] == "fp16"
    assert resolve_precision("fp16", "cuda", cuda_bf16=True)[0] == "fp16"


def test_flags_are_read_from_cpuinfo(tmp_path):
    f = tmp_path / "cpuinfo"
    f.write_text("processor\t: 0\nflags\t\t: fpu avx2 fma avx512_bf16\n\nprocessor\t: 1\nflags\t\t: fpu\n")
    assert cpu_flags(f) == {"fpu", "avx2", "fma", "avx512_bf16"}
    assert reported_flags(cpu_flags(f)) == ["avx2", "fma", "avx512_bf16"]
    assert cpu_flags(tmp_path / "missing") == frozenset()


def test_int8_auto_needs_int8_dot_products_and_never_runs_on_cuda():
    assert resolve_int8("auto", "cpu", flags=AVX2)[0] is False
    assert resolve_int8("auto", "cpu", flags=AVX2 | {"avx512_vnni"}) == (True, "CPU has avx512_vnni")
    assert resolve_int8("auto", "cpu", flags=SPR | {"amx_int8"})[0] is True
    assert resolve_int8("int8", "cpu", flags=AVX2)[0] is True  # what a user sets stays (fbgemm runs on AVX2)
    assert resolve_int8("none", "cpu", flags=SPR | {"amx_int8"})[0] is False
    assert resolve_int8("auto", "cuda")[0] is False
    with pytest.raises(ConfigError, match="analysis.quantization.classifier: int8 is for a CPU"):
        resolve_int8("int8", "cuda")
