"""The README is a test: every shell command in README.md, docs/*.md and calibration/README.md runs here.

**Which commands.** Markdown is parsed with markdown-it-py (CommonMark); every fenced block tagged
``bash``, ``sh``, ``shell`` or ``console`` is a shell block, every block tagged ``yaml``/``yml`` is parsed
with PyYAML and each ``run:`` value (GitHub Actions) and each ``script:`` entry (GitLab CI) is a shell
block too (a folded ``>`` scalar is already one line; a literal ``|`` one is read line by line). In a
shell block a backslash-newline continues the command on the next line, a ``#`` that starts a word
outside quotes starts a comment (stripped), blank or comment-only lines are skipped, and ``a && b``
outside quotes is two commands, each with its own rule: what is left, one command a line, is what a
user pastes. Other blocks (``python``, tables) are not shell commands.

**How each runs.** Every command matches a rule of :data:`RULES` (first match wins): RUN or
SKIP(reason). A command that matches no rule FAILS, so a new docs command needs coverage here. A RUN
command has its README placeholders substituted (:data:`PLACEHOLDERS`: a checkpoint, an ImageNet-shaped
tree, a subset manifest, all generated once per session; :data:`MODEL_FLAGS`; speed flags of
:data:`BENCH_SPEED`), then runs with ``bash -c`` in a fresh working directory, with ``python``,
``volo-export``, ``volo-bench`` and ``volo-gate`` running the tree under test. It must exit 0 with no
``Traceback`` on stderr, and every row of a ``volo-bench`` report must be ``ok``, ``unavailable`` or
``unsupported`` (a README job that only writes ``export failed`` rows does not work as written).
Commands that read what an earlier one wrote (``volo-gate`` its report, ``--resume`` its interrupted
run, the Jetson build its bundle) start in a copy of that command's directory, never in the same one,
so nothing one command leaves behind can block another. Identical commands run once.

**Against what.** Not the demo: a 1000-class VOLO saved as a user's ``.pth.tar`` (the demo architecture
at 64 px, its 10 trained digit classes as ImageNet-1k indices 0-9 and 990 more that never win: a random
model's near-tied logits would make INT8 agreement a coin toss, which a trained model's are not), fed
digit images under the ImageNet synsets, so none of the demo shortcuts (bundled
calibration and held-out sets, digits validation images) apply; and an ImageNet-shaped tree of tiny
JPEGs under the real 1000 ImageNet-1k synset ids: ``train/<wnid>/*.JPEG`` (2 per class), a flat
``val/`` of 1000 images with the devkit's ``ILSVRC2012_validation_ground_truth.txt`` and ``meta.mat``
(devkit IDs in an order other than the sorted one, as in the real devkit), and the same images in the
Kaggle layout (``ILSVRC/Data/CLS-LOC/val`` + ``LOC_val_solution.csv`` + ``LOC_synset_mapping.txt``),
which the full-validation section's commands read.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parent.parent
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md")), REPO / "calibration" / "README.md"]
WNIDS = Path(__file__).parent / "data" / "imagenet1k_wnids.txt"
SHELL_TAGS = {"bash", "sh", "shell", "console"}
YAML_TAGS = {"yaml", "yml"}
TIMEOUT_S = 900  # one command; a hung one fails


# ---------------------------------------------------------------- extraction


@dataclass(frozen=True)
class DocCommand:
    doc: str  # path relative to the repository
    line: int  # 1-based line of the doc where the command starts
    section: str  # the heading above it
    text: str  # the command as written (continuations joined, comment stripped)

    @property
    def where(self) -> str:
        return f"{self.doc}:{self.line}"


def strip_comment(line: str) -> str:
    """``line`` without a trailing shell comment: a ``#`` that starts a word outside quotes."""
    quote = None
    for i, ch in enumerate(line):
        if quote:
            quote = None if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch == "#" and (i == 0 or line[i - 1].isspace()):
            return line[:i].rstrip()
    return line.rstrip()


def split_and(cmd: str) -> list[str]:
    """``a && b`` as ``[a, b]`` (each gets its own rule); ``&&`` inside quotes stays."""
    parts, quote, start = [], None, 0
    for i, ch in enumerate(cmd):
        if quote:
            quote = None if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif cmd.startswith(" && ", i):
            parts.append(cmd[start:i].strip())
            start = i + 4
    return [p for p in [*parts, cmd[start:].strip()] if p]


def shell_commands(text: str) -> list[tuple[int, str]]:
    """(0-based line offset, command) of each command of a shell block."""
    out: list[tuple[int, str]] = []
    parts: list[str] = []
    start = 0
    for i, raw in enumerate(text.splitlines()):
        line = strip_comment(raw) if not parts else raw.rstrip()
        if not parts:
            start = i
        if line.endswith("\\"):
            parts.append(line[:-1].strip())
            continue
        parts.append(strip_comment(line).strip())
        cmd = " ".join(p for p in parts if p)
        parts = []
        out.extend((start, c) for c in split_and(cmd))
    if parts:
        out.extend((start, c) for c in split_and(" ".join(p for p in parts if p)))
    return out


def yaml_shell_blocks(text: str) -> list[tuple[int, str]]:
    """(0-based line, shell text) of every ``run:`` value and ``script:`` entry of a YAML block."""
    import yaml

    found: list[tuple[int, str]] = []

    def walk(node) -> None:
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                if isinstance(key, yaml.ScalarNode) and key.value in ("run", "script"):
                    values = value.value if isinstance(value, yaml.SequenceNode) else [value]
                    for v in values:
                        if isinstance(v, yaml.ScalarNode):  # a block scalar's text starts below its '>' / '|'
                            found.append((v.start_mark.line + (v.style in (">", "|")), v.value))
                walk(value)
        elif isinstance(node, yaml.SequenceNode):
            for item in node.value:
                walk(item)

    walk(yaml.compose(text))
    return found


def _block_commands(info: str, body: str) -> list[tuple[int, str]]:
    tag = (info.split() or [""])[0].lower()
    if tag in SHELL_TAGS:
        return shell_commands(body)
    if tag in YAML_TAGS:
        return [(line + k, cmd) for line, script in yaml_shell_blocks(body) for k, cmd in shell_commands(script)]
    return []


def doc_commands(path: Path, root: Path = REPO) -> list[DocCommand]:
    """Every shell command of the markdown file ``path``, in order."""
    from markdown_it import MarkdownIt

    rel = path.relative_to(root).as_posix()
    section, out = "", []
    tokens = MarkdownIt("commonmark").parse(path.read_text())
    for n, tok in enumerate(tokens):
        if tok.type == "heading_open":
            section = tokens[n + 1].content
        elif tok.type == "fence" and tok.map:
            first = tok.map[0] + 2  # the fence line is map[0] (0-based); the body starts on the next one
            out.extend(DocCommand(rel, first + k, section, cmd) for k, cmd in _block_commands(tok.info, tok.content))
    return out


def all_commands() -> list[DocCommand]:
    return [c for doc in DOCS for c in doc_commands(doc)]


# ---------------------------------------------------------------- rules


@dataclass(frozen=True)
class Rule:
    pattern: str  # re.search on the command as written
    action: str  # RUN or SKIP
    reason: str  # why (SKIP) / what runs (RUN)
    needs: str | None = None  # RUN only: "gate", "resume", "bundle" (see _prepare)
    emit_only: bool = False  # RUN only: TensorRT line run as --emit-only (no TensorRT / GPU here)
    cpu: str | None = None  # RUN only: "bf16": skipped on a CPU without native bf16


RUN, SKIP = "RUN", "SKIP"
RULES: list[Rule] = [
    Rule(r"^pip install ", SKIP, "installs the toolkit: CI (.ci/run) installed it before running the tests"),
    Rule(r"^python -m pytest\b", SKIP, "runs the test suite, which this test is part of"),
    Rule(r"^scp ", SKIP, "copies the bundle to a Jetson: no device here (the bundle's build_engine.sh runs below)"),
    Rule(r"^ssh \S+ 'cd (\S+) && \./build_engine\.sh'$", RUN,
         "build_engine.sh run here in a copy of the --emit-only bundle, with stand-in cmake/trtexec "
         "(TensorRT 10.3 headers, conftest.fake_trt_tools)", needs="bundle"),
    Rule(r"^ssh \S+ '.*infer\.py", SKIP, "needs the tensorrt module, CUDA and the engine built on the device; "
         "tests/test_jetson_bundle.py runs infer.py against a stand-in tensorrt"),
    Rule(r"^ray start ", SKIP, "starts a node of a multi-machine Ray cluster; CI is one machine"),
    Rule(r"^volo-bench --ray auto ", SKIP, "joins the Ray cluster that `ray start` made (and a Jetson for the "
         "tensorrt rows); volo-bench --ray local is tests/test_harness_ray.py's"),
    Rule(r"^python benchmarks/", SKIP, "a benchmark (minutes of CPU on 2 cores) whose figures the README quotes; what it "
         "exercises runs in tests/test_harness_ray.py (cluster, node loss) and test_harness_stream.py (resume)"),
    Rule(r"^git (add|commit) ", SKIP, "commits into the user's repository"),
    Rule(r"^python calibration/make_demo_manifest\.py$", SKIP, "rewrites the shipped "
         "volo_deploy/assets/calib_demo_digits_train_300.json in the checkout under test; its --check form runs"),
    Rule(r"^volo-gate ", RUN, "against the report of the volo-bench command above it that wrote --report's folder; "
         "a missing --baseline is that same report (made once, as the docs say)", needs="gate"),
    Rule(r"^volo-bench .*--resume\b", RUN, "after the same command without --resume, in a copy of its folder",
         needs="resume"),
    Rule(r"^volo-export --backend trt (?!.*--emit-only)", RUN, "as --emit-only (no TensorRT / GPU here)",
         emit_only=True),
    Rule(r"^volo-export .*--bf16\b", RUN, "on CPUs with native bf16 only (the documented requirement)", cpu="bf16"),
    Rule(r"^volo-export ", RUN, "as written"),
    Rule(r"^volo-bench( |$)", RUN, "as written"),
    Rule(r"^python calibration/make_(demo_)?manifest\.py ", RUN, "as written"),
]


def rule_for(cmd: DocCommand) -> Rule | None:
    return next((r for r in RULES if re.search(r.pattern, cmd.text)), None)


# ---------------------------------------------------------------- substitution

#: README placeholder -> generated stand-in (a key of the ``world`` fixture). Longest first; a placeholder
#: is replaced only as a whole path (not inside a longer one).
PLACEHOLDERS = {
    "models/volo_d1_224.pth.tar": "checkpoint",
    "volo_d1_224.pth.tar": "checkpoint",
    "/data/imagenet/train": "train",
    "/data/imagenet/val": "val",
    "/data/devkit": "devkit",
    "ci/imagenet_val_subset.json": "val_subset",
}
#: Section-specific placeholders: the full-validation commands read the Kaggle download's layout.
SECTION_PLACEHOLDERS = {"Full ImageNet-1k validation (50,000 images)": {"/data/imagenet/val": "kaggle_val"}}
#: The README names VOLO-D1 (27M parameters: ~30 s per ONNX export on 2 cores); the stand-in checkpoint is a
#: custom VOLO whose variant is detected from the file (no --model name fits it). D1 384 from a 224 checkpoint
#: is the pos_embed resize: the same resize from 64 px to 96 px.
MODEL_FLAGS = {"--model volo_d1_224": "", "--model volo_d1_384": "--img-size 96"}
#: volo-bench speed: 16 images in shards of 8 (two shards: streaming and --resume still cross a shard edge)
#: and few timed calls; the values matter for measurements, not for whether the command works. Set where the
#: command has the flag, added where it has not.
BENCH_SPEED = {"--limit": "16", "--shard-size": "8", "--iters": "3", "--warmup": "1", "--batch-sizes": "1,2"}
#: volo-gate here compares a report with a copy of itself: re-timing would time two loads of one artifact
#: against each other, which measures only this machine's noise (and its seconds). Added where a gate compares.
GATE_SPEED = "--no-remeasure"


def _sub_path(text: str, placeholder: str, value: str) -> str:
    return re.sub(rf"(?<![\w./-]){re.escape(placeholder)}(?![\w.-])", lambda m: value, text)


def substitute(cmd: DocCommand, world: dict[str, str], rule: Rule) -> str:
    """The command as run here (see the module docstring)."""
    text = cmd.text
    for flag, repl in MODEL_FLAGS.items():
        text = re.sub(rf"{re.escape(flag)}(?=\s|$)", repl, text)
    table = {**PLACEHOLDERS, **SECTION_PLACEHOLDERS.get(cmd.section, {})}
    for placeholder in sorted(table, key=len, reverse=True):
        text = _sub_path(text, placeholder, world[table[placeholder]])
    text = re.sub(r"^(python3?) (calibration|scripts|benchmarks)/", rf"\1 {REPO}/\2/", text)  # run from the clone
    if text.startswith("volo-bench"):
        for flag, value in BENCH_SPEED.items():
            if re.search(rf"{flag}(\s|=)", text):
                text = re.sub(rf"{flag}[\s=]\S+", f"{flag} {value}", text)
            else:
                text += f" {flag} {value}"
    if text.startswith("volo-gate") and "--update-baseline" not in text:
        text += f" {GATE_SPEED}"
    if rule.emit_only:
        text += " --emit-only"
    if rule.needs == "bundle":  # ssh HOST 'CMD': CMD, here
        text = shlex.split(text)[2]
    return re.sub(r"\s+", " ", text).strip()


def flag_value(text: str, flag: str) -> str | None:
    words = shlex.split(text)
    return next((words[i + 1] for i, w in enumerate(words[:-1]) if w == flag), None)


# ---------------------------------------------------------------- the generated world


def _digit_jpeg(path: Path, cls: int, rng: np.random.Generator) -> None:
    """A digits image of digit ``cls % 10`` (what the checkpoint's trained classes see), as a 16 px RGB JPEG."""
    from PIL import Image

    from volo_deploy.data.digits import load_digits_arrays

    images, labels = _DIGITS.setdefault("train", load_digits_arrays("train"))
    pick = rng.choice(np.flatnonzero(labels == cls % 10))
    Image.fromarray(images[pick], mode="L").resize((16, 16), Image.NEAREST).convert("RGB").save(path, quality=95)


_DIGITS: dict[str, tuple[np.ndarray, np.ndarray]] = {}


def _write_devkit(root: Path, wnids: list[str], val_classes: np.ndarray, rng: np.random.Generator) -> Path:
    """devkit ``data/`` with meta.mat (IDs 1..1000 in a shuffled synset order, as the real devkit's are not
    sorted) and the val ground truth as devkit IDs."""
    from scipy.io import savemat

    order = rng.permutation(len(wnids))  # devkit ID i + 1 -> wnids[order[i]]
    devkit_id = {int(c): i + 1 for i, c in enumerate(order)}
    data = root / "ILSVRC2012_devkit_t12" / "data"
    data.mkdir(parents=True)
    synsets = np.zeros((len(wnids), 1), dtype=[("ILSVRC2012_ID", "O"), ("WNID", "O"), ("num_children", "O")])
    for i, c in enumerate(order):
        synsets[i, 0] = (np.array([[i + 1]]), np.array([wnids[c]]), np.array([[0]]))
    savemat(data / "meta.mat", {"synsets": synsets})
    (data / "ILSVRC2012_validation_ground_truth.txt").write_text("".join(f"{devkit_id[int(c)]}\n" for c in val_classes))
    return data.parent


def _write_kaggle(root: Path, val: Path, wnids: list[str], val_classes: np.ndarray) -> Path:
    """The Kaggle ImageNet download's val: the same images, LOC_val_solution.csv, LOC_synset_mapping.txt."""
    images = root / "ILSVRC" / "Data" / "CLS-LOC" / "val"
    images.mkdir(parents=True)
    rows = []
    for i, c in enumerate(val_classes, 1):
        name = f"ILSVRC2012_val_{i:08d}"
        os.link(val / f"{name}.JPEG", images / f"{name}.JPEG")
        rows.append(f"{name},{wnids[c]} 1 2 30 40")
    (root / "LOC_val_solution.csv").write_text("ImageId,PredictionString\n" + "\n".join(rows) + "\n")
    (root / "LOC_synset_mapping.txt").write_text("".join(f"{w} class {w}\n" for w in wnids))
    return images


def write_imagenet_tree(root: Path) -> dict[str, str]:
    """ImageNet-shaped tree of tiny JPEGs under the real ImageNet-1k synsets (see the module docstring)."""
    wnids = [w.strip() for w in WNIDS.read_text().splitlines() if w.strip() and not w.startswith("#")]
    assert len(wnids) == 1000 and wnids == sorted(wnids)
    rng = np.random.default_rng(0)
    net = root / "imagenet"
    for w in wnids:
        (net / "train" / w).mkdir(parents=True)
        for k in range(2):
            _digit_jpeg(net / "train" / w / f"{w}_{k}.JPEG", wnids.index(w), rng)
    val, val_classes = net / "val", rng.permutation(len(wnids))  # one image per class, in a shuffled order
    val.mkdir()
    for i in range(len(val_classes)):
        _digit_jpeg(val / f"ILSVRC2012_val_{i + 1:08d}.JPEG", int(val_classes[i]), rng)
    devkit = _write_devkit(net, wnids, val_classes, rng)
    kaggle_val = _write_kaggle(root / "kaggle", val, wnids, val_classes)
    return {"train": str(net / "train"), "val": str(val), "devkit": str(devkit), "kaggle_val": str(kaggle_val)}


def write_checkpoint(path: Path) -> Path:
    """A user's 1000-class checkpoint: the demo's trained weights, its 10 classes as indices 0-9 of both heads,
    classes 10-999 with zero weights and a bias below every trained one (they never win)."""
    import torch
    from safetensors.torch import load_file

    from volo_deploy.models import demo_checkpoint

    sd = load_file(str(demo_checkpoint()))
    for head in ("head", "aux_head"):
        w, b = sd[f"{head}.weight"], sd[f"{head}.bias"]
        sd[f"{head}.weight"] = torch.cat([w, torch.zeros(1000 - len(w), w.shape[1])])
        sd[f"{head}.bias"] = torch.cat([b, torch.full((1000 - len(b),), float(b.min()) - 10.0)])
    torch.save({"state_dict": sd}, path)
    return path


def _bin_dir(root: Path) -> Path:
    """``python``/``python3`` and the three console scripts, all running this interpreter on the tree under test."""
    bin_dir = root / "bin"
    bin_dir.mkdir()
    scripts = {"python": None, "python3": None, "volo-export": "export", "volo-bench": "bench", "volo-gate": "gate"}
    for name, cli in scripts.items():
        target = "" if cli is None else f" -c 'import sys; from volo_deploy.cli.{cli} import main; sys.exit(main())'"
        (bin_dir / name).write_text(f'#!/bin/sh\nexec {shlex.quote(sys.executable)}{target} "$@"\n')
        (bin_dir / name).chmod(0o755)
    return bin_dir


@pytest.fixture(scope="session")
def world(tmp_path_factory) -> dict[str, str]:
    """Everything the placeholders stand for, generated once; plus ``bin`` and ``runs`` (work dirs)."""
    from volo_deploy.data.dataset import open_images
    from volo_deploy.data.sampler import sample_subset, write_manifest

    root = tmp_path_factory.mktemp("docs_world")
    paths = write_imagenet_tree(root)
    paths["checkpoint"] = str(write_checkpoint(root / "my_volo_1k.pth.tar"))
    subset = sample_subset(open_images(paths["val"], expect_classes=1000), total=300, seed=0)
    paths["val_subset"] = str(write_manifest(subset, root / "imagenet_val_subset.json"))
    paths["bin"] = str(_bin_dir(root))
    paths["runs"] = str(root / "runs")
    return paths


# ---------------------------------------------------------------- running


@dataclass
class Outcome:
    command: str
    cwd: Path
    proc: subprocess.CompletedProcess[str]

    def explain(self) -> str:
        return (f"$ {self.command}\n(in {self.cwd}, exit {self.proc.returncode})\n--- stdout\n"
                f"{self.proc.stdout[-4000:]}\n--- stderr\n{self.proc.stderr[-6000:]}")


def _env(world: dict[str, str], extra: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(extra if extra is not None else os.environ)
    env["PATH"] = f"{world['bin']}:{env['PATH']}"
    env["PYTHONPATH"] = str(REPO)
    env.pop("PYTHONSTARTUP", None)
    return env


class ExportPool:
    """The stand-in checkpoint's exports, shared between volo-bench commands through volo-bench's own reuse
    (``--artifacts``: a folder whose files match their manifest's hashes and the checkpoint's is reused).

    Speed only: each export is made and validated once. A command without ``--artifacts`` gets
    ``--artifacts _exports``. INT8 exports are shared only between commands with the same data and
    calibration flags: they depend on those, and volo-bench's reuse check does not compare them.
    """

    CALIB_FLAGS = ("--data", "--limit", "--calib-data", "--layout", "--calib-layout", "--data-root")

    def __init__(self, root: Path, checkpoint: str) -> None:
        self.root, self.checkpoint = root, checkpoint

    def _key(self, text: str, name: str) -> Path:
        if not name.endswith("_int8"):
            return self.root / "float" / name
        calib = "_".join(re.sub(r"\W+", "", flag_value(text, f) or "-")[-24:] for f in self.CALIB_FLAGS)
        return self.root / f"int8_{calib}" / name

    def _applies(self, text: str) -> bool:
        return text.startswith("volo-bench") and self.checkpoint in text

    def seed(self, text: str, cwd: Path) -> str:
        """``text`` (with ``--artifacts _exports`` added if absent), its artifacts folder filled from the pool."""
        if not self._applies(text):
            return text
        if flag_value(text, "--artifacts") is None:
            text += " --artifacts _exports"
        folder = cwd / flag_value(text, "--artifacts")
        for kind in self.root.glob("*/*"):
            if self._key(text, kind.name) == kind and not (folder / kind.name).exists():
                shutil.copytree(kind, folder / kind.name)
        return text

    def harvest(self, text: str, cwd: Path) -> None:
        """Add the exports ``text`` made (complete ones: with a manifest) to the pool."""
        if not self._applies(text):
            return
        for made in (cwd / flag_value(text, "--artifacts")).glob("*/manifest.json"):
            target = self._key(text, made.parent.name)
            if not target.exists():
                shutil.copytree(made.parent, target)


class Runner:
    """Runs doc commands once each (identical substituted commands share one run), each in its own folder."""

    def __init__(self, world: dict[str, str], commands: list[DocCommand], fake_trt_tools) -> None:
        self.world, self.commands, self.fake_trt_tools = world, commands, fake_trt_tools
        self.done: dict[str, Outcome] = {}
        self.count = itertools.count()
        self.pool = ExportPool(Path(world["runs"]).parent / "export_pool", world["checkpoint"])

    def run(self, cmd: DocCommand) -> Outcome:
        rule = rule_for(cmd)
        assert rule is not None and rule.action == RUN
        text = substitute(cmd, self.world, rule)
        if text not in self.done:
            cwd = Path(self.world["runs"]) / f"{next(self.count):02d}_{re.sub(r'[^a-z0-9]+', '_', text.lower())[:60]}"
            extra_env = self._prepare(cmd, rule, cwd)
            run_text = self.pool.seed(text, cwd)
            proc = subprocess.run(["bash", "-c", run_text], cwd=cwd, env=_env(self.world, extra_env),
                                  capture_output=True, text=True, timeout=TIMEOUT_S, stdin=subprocess.DEVNULL)
            self.pool.harvest(run_text, cwd)
            self.done[text] = Outcome(run_text, cwd, proc)
        return self.done[text]

    def _producer(self, cmd: DocCommand, match) -> DocCommand:
        """The nearest command above ``cmd`` in the same doc for which ``match(command)`` holds."""
        above = [c for c in self.commands if c.doc == cmd.doc and c.line < cmd.line and match(c)]
        if not above:
            pytest.fail(f"{cmd.where}: {cmd.text!r} reads what an earlier command writes, but none above it does")
        return above[-1]

    def _prepare(self, cmd: DocCommand, rule: Rule, cwd: Path) -> dict[str, str] | None:
        """Fill the fresh ``cwd`` with what the command reads; the environment to run it in (None: ours)."""
        if rule.needs == "gate":
            report = Path(flag_value(cmd.text, "--report") or "")

            def wrote_report(c: DocCommand) -> bool:
                return c.text.startswith("volo-bench") and Path(flag_value(c.text, "--out") or "volo_bench") == report.parent

            self._copy_from(self._producer(cmd, wrote_report), cwd)
            baseline = cwd / (flag_value(cmd.text, "--baseline") or "")
            if not baseline.exists():
                baseline.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy(cwd / report, baseline)
        elif rule.needs == "resume":
            plain = cmd.text.replace(" --resume", "")
            self._copy_from(self._producer(cmd, lambda c: c.text == plain), cwd)
        elif rule.needs == "bundle":
            folder = re.search(rule.pattern, cmd.text).group(1)
            self._copy_from(self._producer(cmd, lambda c: "--emit-only" in c.text and (
                flag_value(c.text, "--output") or "").rstrip("/") == folder), cwd)
            (cwd / "_tools").mkdir()
            return self.fake_trt_tools(cwd / "_tools", TRT_10_3)
        else:
            cwd.mkdir(parents=True)
        return None

    def _copy_from(self, producer: DocCommand, cwd: Path) -> None:
        before = self.run(producer)
        assert before.proc.returncode == 0, f"the command this one needs failed:\n{before.explain()}"
        shutil.copytree(before.cwd, cwd, symlinks=True)


#: NvInferVersion.h of TensorRT 10.3 (JetPack 6.1/6.2), the README's --target-trt for the Jetson bundle.
TRT_10_3 = "#define NV_TENSORRT_MAJOR 10 //!< major\n#define NV_TENSORRT_MINOR 3\n#define NV_TENSORRT_PATCH 0\n"


COMMANDS = all_commands()


@pytest.fixture(scope="session")
def runner(world, fake_trt_tools) -> Runner:
    return Runner(world, COMMANDS, fake_trt_tools)


def _bench_rows(outcome: Outcome) -> list[tuple[str, str, str, str]]:
    out = outcome.cwd / (flag_value(outcome.command, "--out") or "volo_bench")
    report = json.loads((out / "report.json").read_text())
    return [(r["backend"], r["precision"], r["status"], r.get("reason") or "") for r in report["results"]]


# ---------------------------------------------------------------- tests


def test_extraction_rules_on_a_sample(tmp_path):
    """Continuations, comments, quotes and both YAML scalar styles, as documented above."""
    md = tmp_path / "x.md"
    md.write_text(
        "# T\n\n```bash\n# a comment line\nvolo-export --a 1 \\\n    --b 2   # trailing\n\n"
        "ssh j 'cd x && ./y.sh'     # kept quotes\necho '#not a comment' # but this is\ngit add a && git commit -m 'b && c'\n```\n\n"
        "```python\nprint('not shell')\n```\n\n"
        "```yaml\n- run: pip install .\n- name: b\n  run: >\n    volo-bench --x 1\n    --y 2\n"
        "- run: |\n    one\n    two --z\n```\n\n```yml\njob:\n  script:\n    - three\n```\n"
    )
    cmds = doc_commands(md, tmp_path)
    assert {c.section for c in cmds} == {"T"}
    assert [(c.line, c.text) for c in cmds] == [
        (5, "volo-export --a 1 --b 2"),
        (8, "ssh j 'cd x && ./y.sh'"),
        (9, "echo '#not a comment'"),
        (10, "git add a"),
        (10, "git commit -m 'b && c'"),
        (18, "pip install ."),
        (21, "volo-bench --x 1 --y 2"),
        (24, "one"),
        (25, "two --z"),
        (31, "three"),
    ]


def test_docs_have_the_commands_we_expect():
    """The extraction sees the docs' commands (a broken parser would otherwise 'pass' by finding none)."""
    texts = [c.text for c in COMMANDS]
    assert len(COMMANDS) >= 30, texts
    assert {c.doc for c in COMMANDS} == {"README.md", "docs/ci_gate.md", "calibration/README.md"}
    assert any(t.startswith("volo-bench --checkpoint models/volo_d1_224.pth.tar --data ci/imagenet_val_subset.json")
               for t in texts), "the folded yaml run: of the README's CI job"
    assert any(t.endswith("--out bench_full --resume") for t in texts), "a backslash continuation"


def test_every_docs_command_has_a_rule():
    """A docs command with no RUN/SKIP rule fails: new commands must get coverage here."""
    missing = [f"{c.where}: {c.text}" for c in COMMANDS if rule_for(c) is None]
    assert not missing, "no rule in tests/test_docs_commands.py RULES for:\n" + "\n".join(missing)


def test_every_rule_is_used():
    unused = [r.pattern for r in RULES if not any(re.search(r.pattern, c.text) for c in COMMANDS)]
    assert not unused, f"rules matching no docs command (remove them): {unused}"
    sections = {c.section for c in COMMANDS}
    assert set(SECTION_PLACEHOLDERS) <= sections, f"SECTION_PLACEHOLDERS names a section without commands: {sections}"


def test_substitution_leaves_no_placeholder(world):
    for c in COMMANDS:
        rule = rule_for(c)
        if rule is None or rule.action != RUN:
            continue
        text = substitute(c, world, rule)
        assert not re.search(r"(?<![\w./-])/data/|volo_d1_\d+|(?<![\w./-])ci/imagenet", text), f"{c.where}: {text}"


def _params() -> list:
    seen, params = set(), []
    for c in COMMANDS:
        key = (c.section, c.text)
        if key in seen:
            continue
        seen.add(key)
        params.append(pytest.param(c, id=f"{c.where} {c.text[:48]}"))
    return params


@pytest.mark.parametrize("cmd", _params())
def test_docs_command(cmd: DocCommand, runner: Runner):
    rule = rule_for(cmd)
    if rule is None:
        pytest.fail(f"{cmd.where}: no rule in RULES for {cmd.text!r}: add RUN or SKIP(reason)")
    if rule.action == SKIP:
        pytest.skip(f"{cmd.where}: {rule.reason}")
    if rule.cpu == "bf16":
        from volo_deploy.backends.precision import bf16_unavailable_reason

        if (why := bf16_unavailable_reason()) is not None:
            pytest.skip(f"{cmd.where}: {why}")
    outcome = runner.run(cmd)
    assert outcome.proc.returncode == 0, f"{cmd.where}: {cmd.text}\n{outcome.explain()}"
    assert "Traceback" not in outcome.proc.stderr, f"{cmd.where}: {cmd.text}\n{outcome.explain()}"
    if rule.needs == "bundle":
        assert (outcome.cwd / "_tools" / "log.trtexec").is_file(), "build_engine.sh never ran trtexec"
    if outcome.command.startswith("volo-bench") and not re.search(r"(^| )(--version|-h|--help)( |$)", cmd.text):
        bad = [r for r in _bench_rows(outcome) if r[2] not in ("ok", "unavailable", "unsupported")]
        assert not bad, f"{cmd.where}: {cmd.text}\nrows that failed: {bad}\n{outcome.explain()}"
