"""What the CPU can do, read once from the operating system.

Training (whether bf16 autocast pays), export and the station's backend choice all depend on the
instruction sets a machine has: a factory PC is whatever the plant bought. Torch-free.
"""

from __future__ import annotations

import functools
import os
import platform
from pathlib import Path

# Feature names as Linux's /proc/cpuinfo spells them, in the order a summary lists them.
ISA_FLAGS: tuple[tuple[str, str], ...] = (
    ("avx2", "avx2"),
    ("avx512", "avx512f"),
    ("vnni", "avx512_vnni"),
    ("avx_vnni", "avx_vnni"),
    ("bf16", "avx512_bf16"),
    ("amx", "amx_bf16"),
)


# The same features as this process's CPUID reports them, through numpy's runtime dispatch table.
_CPUID_NAMES = {"avx2": "AVX2", "avx512f": "AVX512F", "avx512_vnni": "AVX512VNNI", "avx512_bf16": "AVX512BF16"}


def _cpuid_view() -> dict[str, bool] | None:
    """numpy's CPUID reading ({'AVX2': True, ...}), or None where this numpy does not expose it."""
    try:
        from numpy._core._multiarray_umath import __cpu_features__
    except ImportError:
        return None
    return dict(__cpu_features__)


def _flags_from(text: str, view: dict[str, bool] | None) -> tuple[frozenset[str], bool]:
    """The flags /proc/cpuinfo lists, unless this process's CPUID contradicts them: under an
    emulator (`qemu-x86_64 -cpu Haswell`, used to check an AVX2 machine's kernels on a newer one)
    /proc/cpuinfo still describes the host, and the CPUID the runtimes dispatch on is the truth.
    The second value says whether that happened (the CPU is emulated)."""
    flags: frozenset[str] = frozenset()
    for line in text.splitlines():
        if line.startswith(("flags", "Features")):
            flags = frozenset(line.partition(":")[2].split())
            break
    if view is None or all(view.get(name, True) for flag, name in _CPUID_NAMES.items() if flag in flags):
        return flags, False
    return frozenset(flag for flag, name in _CPUID_NAMES.items() if view.get(name)), True


@functools.lru_cache(maxsize=1)
def _read_flags() -> tuple[frozenset[str], bool]:
    try:
        text = Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:
        return frozenset(), False
    return _flags_from(text, _cpuid_view())


def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags (empty where the OS does not say, e.g. not Linux)."""
    return _read_flags()[0]


def emulated() -> bool:
    """Whether this process runs on an emulated CPU (its CPUID contradicts /proc/cpuinfo): its
    kernels are the emulated CPU's, its timings are the emulator's."""
    return _read_flags()[1]


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text(errors="replace").splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def isa(flags: frozenset[str] | None = None) -> list[str]:
    """Short names of the instruction sets that matter here, e.g. ['avx2'] or ['avx2', 'avx512', 'vnni', 'bf16']."""
    flags = cpu_flags() if flags is None else flags
    return [short for short, flag in ISA_FLAGS if flag in flags]


# oneDNN (inside OpenVINO's CPU plugin) dispatches to no newer instruction set than this
# environment variable names, e.g. AVX2 on an AVX-512 machine: the way to check an older CPU's
# OpenVINO paths on a newer one. ONNX Runtime's kernels (MLAS) have no such control.
ISA_LIMIT_ENV = "ONEDNN_MAX_CPU_ISA"
ISA_LIMITS = ("SSE41", "AVX", "AVX2", "AVX2_VNNI", "AVX512_CORE", "AVX512_CORE_VNNI", "AVX512_CORE_BF16", "ALL")


def isa_limit() -> str | None:
    """The instruction-set cap OpenVINO runs under in this process, or None."""
    value = os.environ.get(ISA_LIMIT_ENV, "").strip().upper()
    return value if value and value != "ALL" else None


def isa_text(flags: frozenset[str] | None = None) -> str:
    names = isa(flags)
    text = "+".join(names) if names else platform.machine()
    if flags is None and emulated():
        text += ", emulated"
    limit = isa_limit() if flags is None else None
    return f"{text}, OpenVINO capped at {limit}" if limit else text


def has_native_bf16(flags: frozenset[str] | None = None) -> bool:
    """bf16 arithmetic in hardware (AVX512-BF16 or AMX). Without it, bf16 autocast is emulated and
    trains many times slower than float32."""
    flags = cpu_flags() if flags is None else flags
    return "avx512_bf16" in flags or "amx_bf16" in flags


def fingerprint() -> str:
    """Identifies a machine for per-machine caches: CPU model, cores and instruction sets."""
    return f"{cpu_name()}|{os.cpu_count()}|{isa_text()}"
