"""Machine identity: ISA features parsed from /proc/cpuinfo text, and the hardware fingerprint."""

from volo_deploy.machine import hardware_fingerprint, parse_cpuinfo, summary_line

ZEN4 = """processor\t: 0
vendor_id\t: AuthenticAMD
cpu family\t: 25
model\t\t: 17
model name\t: AMD EPYC 9R14
stepping\t: 1
flags\t\t: fpu sse avx2 fma f16c avx512f avx512bw avx512vl avx512_bf16 avx512_vnni
"""
ZEN2 = ZEN4.replace("avx512f avx512bw avx512vl avx512_bf16 avx512_vnni", "").replace("17", "49")
ORIN = """processor\t: 0
BogoMIPS\t: 62.50
Features\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop asimddp
CPU implementer\t: 0x41
CPU part\t: 0xd42
"""


def test_x86_features_and_model():
    cpu = parse_cpuinfo(ZEN4)
    assert cpu["model"] == "AMD EPYC 9R14"
    assert cpu["features"] == ["avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl", "avx512_vnni", "avx512_bf16"]
    assert "cpu family 25 model 17" in cpu["id"]
    assert parse_cpuinfo(ZEN2)["features"] == ["avx2", "fma", "f16c"]


def test_arm_features_and_model():
    cpu = parse_cpuinfo(ORIN)
    assert cpu["features"] == ["asimd", "asimddp", "asimdhp"]
    assert cpu["model"] == "ARM implementer 0x41 part 0xd42"


def _machine(cpuinfo: str) -> dict:
    return {"arch": "x86_64", "cpu": parse_cpuinfo(cpuinfo), "cpu_count": 2, "gpus": []}


def test_fingerprint_separates_isa_threads_and_gpus():
    zen4, zen2 = _machine(ZEN4), _machine(ZEN2)
    assert hardware_fingerprint(zen4, 2) == hardware_fingerprint(_machine(ZEN4), 2)
    assert hardware_fingerprint(zen4, 2) != hardware_fingerprint(zen2, 2)
    assert hardware_fingerprint(zen4, 2) != hardware_fingerprint(zen4, 1)
    gpu = dict(zen4, gpus=[{"name": "NVIDIA H200", "compute_capability": "9.0"}])
    assert hardware_fingerprint(gpu, 2) != hardware_fingerprint(zen4, 2)
    assert "avx512_bf16" in summary_line(zen4) and "sm_90" in summary_line(gpu)
