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


def _fake_jetson(root, release="# R36 (release), REVISION: 4.3, GCID: 38968081, BOARD: generic, EABI: aarch64",
                 mode="NV Power Mode: 15W\n1\n", cpu_freqs=((729600, 1984000), (729600, 1984000)),
                 gpu_freqs=(306000000, 1020000000)):
    (root / "proc/device-tree").mkdir(parents=True)
    (root / "proc/device-tree/model").write_bytes(b"NVIDIA Jetson Orin Nano Developer Kit\x00")
    (root / "etc").mkdir()
    (root / "etc/nv_tegra_release").write_text(release + "\n")
    for i, (lo, hi) in enumerate(cpu_freqs):
        d = root / f"sys/devices/system/cpu/cpu{i}/cpufreq"
        d.mkdir(parents=True)
        (d / "scaling_min_freq").write_text(f"{lo}\n")
        (d / "scaling_max_freq").write_text(f"{hi}\n")
    g = root / "sys/class/devfreq/17000000.ga10b"
    g.mkdir(parents=True)
    (g / "min_freq").write_text(f"{gpu_freqs[0]}\n")
    (g / "max_freq").write_text(f"{gpu_freqs[1]}\n")
    if mode is not None:
        (root / "usr/sbin").mkdir(parents=True)
        tool = root / "usr/sbin/nvpmodel"
        tool.write_text(f"#!/bin/sh\n[ \"$1\" = -q ] && printf '{mode}'\n")
        tool.chmod(0o755)
    return root


def test_jetson_info_from_a_fake_root(tmp_path):
    from volo_deploy.machine import jetson_info

    info = jetson_info(_fake_jetson(tmp_path))
    assert info == {
        "module": "NVIDIA Jetson Orin Nano Developer Kit", "l4t": "36.4.3", "jetpack": "6.2",
        "power_mode": "15W (1)", "clocks": {"cpu": False, "gpu": False, "locked": False},
    }
    assert jetson_info(tmp_path / "not_a_jetson") is None


def test_jetson_info_locked_clocks_no_nvpmodel_other_releases(tmp_path):
    from volo_deploy.machine import jetson_info

    root = _fake_jetson(tmp_path / "a", mode=None, cpu_freqs=((1984000, 1984000),) * 2, gpu_freqs=(1020000000,) * 2)
    info = jetson_info(root)
    assert info["power_mode"] is None and info["clocks"] == {"cpu": True, "gpu": True, "locked": True}
    thor = _fake_jetson(tmp_path / "b", release="# R38 (release), REVISION: 2.0, GCID: 1, BOARD: generic")
    assert (jetson_info(thor)["l4t"], jetson_info(thor)["jetpack"]) == ("38.2.0", "7.0")
    jp5 = _fake_jetson(tmp_path / "c", release="# R35 (release), REVISION: 1.0, GCID: 1")
    assert jetson_info(jp5)["jetpack"] == "5.x"


def test_jetson_in_summary_and_fingerprint(tmp_path):
    from volo_deploy.machine import jetson_info

    base = dict(_machine(ORIN), arch="aarch64")
    jetson = dict(base, jetson=jetson_info(_fake_jetson(tmp_path)))
    line = summary_line(jetson)
    assert "Jetson: NVIDIA Jetson Orin Nano Developer Kit, JetPack 6.2 (L4T 36.4.3), power mode 15W (1)" in line
    assert "clocks NOT locked" in line
    other_mode = dict(base, jetson=dict(jetson["jetson"], power_mode="MAXN (0)"))
    assert hardware_fingerprint(jetson, 4) != hardware_fingerprint(other_mode, 4)
    assert hardware_fingerprint(jetson, 4) != hardware_fingerprint(base, 4)
    # the clock state is reported, not fingerprinted (same hardware and mode)
    relocked = dict(base, jetson=dict(jetson["jetson"], clocks={"cpu": True, "gpu": True, "locked": True}))
    assert hardware_fingerprint(jetson, 4) == hardware_fingerprint(relocked, 4)
    assert "Jetson" not in summary_line(base)


def test_describe_machine_includes_jetson_only_on_a_jetson(monkeypatch, tmp_path):
    import volo_deploy.machine as m

    real = m.jetson_info
    monkeypatch.setattr(m, "jetson_info", lambda root=None: real(tmp_path / "nothing"))
    assert "jetson" not in m.describe_machine()
    root = _fake_jetson(tmp_path / "jetson")
    monkeypatch.setattr(m, "jetson_info", lambda root_=None: real(root))
    assert m.describe_machine()["jetson"]["module"] == "NVIDIA Jetson Orin Nano Developer Kit"
