"""CLI conventions: per-backend --help, a backend's flag without its backend, --version, -v/-q, the
package logger written through tqdm."""

from __future__ import annotations

import logging
import re
import sys
from importlib.metadata import version

import pytest

from volo_deploy.backends import backend_names, get_backend
from volo_deploy.cli import bench, export, gate
from volo_deploy.cli.options import cli_fields
from volo_deploy.errors import BadInputError
from volo_deploy.logs import configure, level_for

COMMANDS = {"volo-export": export.main, "volo-bench": bench.main, "volo-gate": gate.main}


def _flags(name: str) -> list[str]:
    """The flags the registry declares on backend ``name``'s Options."""
    return [fl.name for _, fl in cli_fields(get_backend(name).Options)]


def _exit(main, argv, capsys) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as stop:
        main(argv)
    out, err = capsys.readouterr()
    return stop.value.code, out, err


@pytest.fixture(autouse=True)
def _restore_loggers():
    root, ours = logging.getLogger(), logging.getLogger("volo_deploy")
    handlers, level = list(root.handlers), ours.level
    yield
    root.handlers[:], ours.level = handlers, level


@pytest.mark.parametrize("name", backend_names())
def test_backend_help_lists_that_backends_flags_only(name, capsys):
    code, out, _ = _exit(export.main, ["--backend", name, "--help"], capsys)
    assert code == 0 and f"{name} options (--backend {name})" in out
    for flag in _flags(name):
        assert re.search(rf"^\s+{re.escape(flag)}\b", out, re.M), f"{flag} missing from --backend {name} --help"
    others = {f for n in backend_names() if n != name for f in _flags(n)} - set(_flags(name))
    assert not [f for f in others if re.search(rf"^\s+{re.escape(f)}\b", out, re.M)]


def test_help_lists_every_backend_under_its_heading(capsys):
    code, out, _ = _exit(export.main, ["--help"], capsys)
    assert code == 0
    headings = [f"{n} options (--backend {n}):" for n in backend_names()]
    starts = [out.index(h) for h in headings]
    assert starts == sorted(starts)
    for i, name in enumerate(backend_names()):
        section = out[starts[i]: starts[i + 1] if i + 1 < len(starts) else len(out)]
        for flag in _flags(name):
            assert re.search(rf"^\s+{re.escape(flag)}\b", section, re.M), f"{flag} not under {name}'s heading"


def test_backend_flag_without_its_backend_names_the_backend(capsys):
    code, _, err = _exit(export.main, ["--emit-only"], capsys)
    assert code == 2 and "--emit-only is a tensorrt option: add --backend tensorrt" in err
    assert "unrecognized" not in err
    code, _, err = _exit(export.main, ["--backend", "openvino", "--target-trt=10.3"], capsys)
    assert code == 2 and "--target-trt is a tensorrt option, not an openvino one: use --backend tensorrt" in err
    code, _, err = _exit(export.main, ["--no-such-flag"], capsys)
    assert code == 2 and "unrecognized arguments: --no-such-flag" in err


def test_every_backend_only_flag_names_its_owners(capsys):
    default = export.DEFAULT_BACKEND
    owners: dict[str, list[str]] = {}
    for name in backend_names():
        for flag in _flags(name):
            owners.setdefault(flag, []).append(name)
    orphans = {f: names for f, names in owners.items() if get_backend(default).name not in names}
    assert orphans
    for flag, names in orphans.items():
        code, _, err = _exit(export.main, [flag], capsys)
        assert code == 2 and all(f"--backend {n}" in err for n in names), err


@pytest.mark.parametrize("prog", sorted(COMMANDS))
def test_version(prog, capsys):
    code, out, _ = _exit(COMMANDS[prog], ["--version"], capsys)
    assert code == 0 and out.strip() == f"{prog} {version('volo_deploy')}"


def _log_then_fail(*_a, **_k):
    lib = logging.getLogger("volo_deploy.quant.budget")  # any library module's logger
    lib.debug("a debug line")
    lib.info("returned head to float: top-1 98.00")
    lib.warning("a warning line")
    raise BadInputError("stand-in stop")


STAND_INS = {
    "volo-export": ("volo_deploy.jobs.export.export_model", []),
    "volo-bench": ("volo_deploy.harness.bench.run_bench", []),
    "volo-gate": ("volo_deploy.harness.report.load_report", ["--report", "r.json", "--baseline", "b.json"]),
}


@pytest.mark.parametrize("prog", sorted(COMMANDS))
def test_verbosity_flags_set_what_reaches_stderr(prog, capsys, monkeypatch):
    target, argv = STAND_INS[prog]
    monkeypatch.setattr(target, _log_then_fail)
    seen = {}
    for flags in ([], ["-q"], ["--quiet"], ["-v"], ["--verbose"]):
        assert COMMANDS[prog]([*argv, *flags]) == 2
        out, err = capsys.readouterr()
        assert out == "" and "error: stand-in stop" in err and "warning: a warning line" in err
        seen[flags[0] if flags else ""] = ("top-1 98.00" in err, "debug: a debug line" in err)
    assert seen == {"": (True, False), "-q": (False, False), "--quiet": (False, False),
                    "-v": (True, True), "--verbose": (True, True)}


def test_quiet_bench_has_no_progress_bars(monkeypatch):
    seen = []

    def run_bench(cfg):
        seen.append(cfg.progress)
        raise BadInputError("stop")

    monkeypatch.setattr("volo_deploy.harness.bench.run_bench", run_bench)
    assert bench.main([]) == bench.main(["-q"]) == 2
    assert seen == [True, False]


def test_a_log_line_during_a_bar_is_written_above_it(capsys):
    from tqdm import tqdm

    configure(level_for())
    bar = tqdm(total=3, file=sys.stderr, mininterval=0, ascii=True, desc="work")
    bar.update(1)
    logging.getLogger("volo_deploy.harness.bench").info("a message from the library")
    bar.update(2)
    bar.close()
    err = capsys.readouterr().err
    before = err[: err.index("a message from the library")]
    assert re.split(r"[\r\n]", before)[-1].strip() == ""  # starts its own line: not glued to the bar text
    assert "a message from the library\n" in err
    assert "3/3" in err.split("a message from the library\n", 1)[1]  # the bar carries on below it


def test_capture_sees_info_lines_whatever_the_console_level():
    from volo_deploy.logs import capture

    configure(logging.WARNING)  # -q
    got: list[str] = []
    with capture(got):
        logging.getLogger("volo_deploy.jobs.export").info("model: x")
        logging.getLogger("volo_deploy.jobs.export").debug("not this")
    logging.getLogger("volo_deploy.jobs.export").info("after the block")
    assert got == ["model: x"]


def test_a_library_logging_on_root_neither_doubles_our_lines_nor_shows_ort_advice(capsys):
    from volo_deploy.cli.common import quiet_third_party

    root = logging.getLogger()
    saved = list(root.handlers)
    root.handlers[:] = []  # as in a real run: no handler until the CLI configures one
    try:
        quiet_third_party()
        configure(level_for())
        logging.warning("Please consider to run pre-processing before quantization. Refer to example: ...")
        logging.warning("a third-party warning")  # logging.warning() adds a root handler when there is none
        logging.getLogger("volo_deploy.quant.budget").info("returned head to float")
    finally:
        root.handlers[:] = saved
    err = capsys.readouterr().err
    assert err.count("returned head to float") == 1
    assert "warning: a third-party warning" in err and "pre-processing" not in err
