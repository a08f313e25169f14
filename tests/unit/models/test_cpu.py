"""What the CPU can do, and the cap a developer sets to check an older CPU's OpenVINO paths."""

from models import cpu

AVX512 = frozenset({"avx2", "avx512f", "avx512_vnni", "avx512_bf16"})


def test_isa_names_what_matters():
    assert cpu.isa(frozenset({"avx2", "sse4_2"})) == ["avx2"]
    assert cpu.isa_text(AVX512) == "avx2+avx512+vnni+bf16"
    assert cpu.has_native_bf16(AVX512) and not cpu.has_native_bf16(frozenset({"avx2"}))


def test_an_isa_cap_shows_in_the_text_and_keys_its_own_cache(monkeypatch):
    monkeypatch.delenv(cpu.ISA_LIMIT_ENV, raising=False)
    plain = cpu.fingerprint()
    assert cpu.isa_limit() is None and "capped" not in cpu.isa_text()
    monkeypatch.setenv(cpu.ISA_LIMIT_ENV, "avx2")
    assert cpu.isa_limit() == "AVX2"
    assert cpu.isa_text().endswith(", OpenVINO capped at AVX2")
    assert cpu.fingerprint() != plain  # a capped self-check never reuses the uncapped choice
    monkeypatch.setenv(cpu.ISA_LIMIT_ENV, "ALL")  # oneDNN's "no cap"
    assert cpu.isa_limit() is None and cpu.fingerprint() == plain


def test_an_emulated_cpu_is_described_by_its_cpuid_not_by_the_hosts_cpuinfo():
    """Under `qemu-x86_64 -cpu Haswell` /proc/cpuinfo lists the host's AVX-512 while the runtimes
    dispatch on the emulated CPUID: the station's choice and cache key must follow the CPUID."""
    host = "processor\t: 0\nflags\t\t: fpu sse4_2 avx2 avx512f avx512_vnni avx512_bf16 avx_vnni amx_bf16\n"
    haswell = {"AVX2": True, "AVX512F": False, "AVX512VNNI": False, "AVX512BF16": False}
    assert cpu._flags_from(host, haswell) == (frozenset({"avx2"}), True)
    native = dict.fromkeys(haswell, True)  # CPUID agrees: everything /proc/cpuinfo says is kept
    flags, emulated = cpu._flags_from(host, native)
    assert cpu.isa(flags) == ["avx2", "avx512", "vnni", "avx_vnni", "bf16", "amx"] and not emulated
    assert cpu._flags_from(host, None) == (flags, False)  # no numpy view: cpuinfo
    assert cpu.cpu_flags() == cpu._flags_from(open("/proc/cpuinfo").read(), cpu._cpuid_view())[0]


def test_an_emulated_cpu_says_so_in_every_cpu_text(monkeypatch):
    monkeypatch.delenv(cpu.ISA_LIMIT_ENV, raising=False)
    monkeypatch.setattr(cpu, "_read_flags", lambda: (frozenset({"avx2"}), True))
    assert cpu.isa_text() == "avx2, emulated" and cpu.fingerprint().endswith("|avx2, emulated")
