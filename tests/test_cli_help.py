"""`lorat --help`, `--version` and argument errors: fast (nothing heavy imported), readable, consistent."""
from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest

from run_cli import REPO, run_lorat

HEAVY = ("torch", "timm", "cv2", "numpy", "safetensors", "matplotlib", "vot", "trax", "got10k")

# Every way of asking for help or making an argument mistake, run in ONE interpreter (one start-up).
PROBE = r"""
import contextlib, io, json, sys
from lorat_tracker.cli import main
answers = []
for argv in json.loads(sys.argv[1]):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(argv)
        except SystemExit as e:
            code = e.code
    answers.append([argv, code, out.getvalue(), err.getvalue()])
heavy = sorted({m.split(".")[0] for m in sys.modules} & set(json.loads(sys.argv[2])))
print(json.dumps({"answers": answers, "heavy": heavy}))
"""

HELP = [["--help"], ["track", "--help"], ["eval", "--help"], ["export", "--help"], ["info", "--help"],
        ["selftest", "--help"], ["train", "--help"], ["demo-data", "--help"], ["vot", "--help"], ["vot", "register", "--help"], ["vot", "workspace", "--help"]]
MISTAKES = [[], ["track"], ["track", "clip.mp4", "--box", "1,2,3,4"], ["eval", "nope"],
            ["track", "clip.mp4", "--box", "1,2,3,4", "--weights", "w.bin", "--precision", "fp8"],
            ["vot", "register", "--workspace", "ws"], ["demo-data", "demo"]]


def probe(argvs):
    proc = subprocess.run([sys.executable, "-c", PROBE, json.dumps(argvs), json.dumps(HEAVY)], cwd=REPO,
                          capture_output=True, text=True, timeout=120,
                          env={**__import__("os").environ, "PYTHONPATH": str(REPO)})
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout)


def test_help_and_argument_errors_import_nothing_heavy():
    result = probe(HELP + MISTAKES)
    assert result["heavy"] == [], f"building the parser imported {result['heavy']}"
    answers = {tuple(a[0]): a[1:] for a in result["answers"]}
    for argv in HELP:
        code, out, err = answers[tuple(argv)]
        assert code == 0 and "usage:" in out, (argv, code, err)
    for argv in MISTAKES:
        code, out, err = answers[tuple(argv)]
        assert code == 2 and "error:" in err and "Traceback" not in err, (argv, code, err)


def test_help_texts_are_plain_text_and_each_command_describes_itself():
    answers = {tuple(a[0]): a[2] for a in probe(HELP)["answers"]}
    for argv, out in answers.items():
        assert "``" not in out, f"lorat {' '.join(argv)} shows RST literals:\n{out}"
    export, info = answers[("export", "--help")], answers[("info", "--help")]
    description = lambda text: text.split("\n\n")[1]  # noqa: E731  (usage, description, options...)
    assert description(export).startswith("lorat export:") and description(info).startswith("lorat info:")
    assert "lorat info" not in export and "lorat export:" not in info


def test_version():
    import lorat_tracker

    proc = run_lorat("--version")
    assert proc.returncode == 0 and proc.stdout.strip() == f"lorat-tracker {lorat_tracker.__version__}"
    assert re.fullmatch(r"\d+\.\d+\.\d+", lorat_tracker.__version__)
    assert "version = attr: lorat_tracker.__version__" in (REPO / "setup.cfg").read_text()  # one source


def test_public_names_still_import():
    # `import lorat_tracker` alone imports no torch (test_help_and_argument_errors_import_nothing_heavy);
    # every public name still resolves, from the package and with `from lorat_tracker import ...`.
    import lorat_tracker
    from lorat_tracker import LoRATTracker, WeightsError  # noqa: F401

    assert all(getattr(lorat_tracker, name) is not None for name in lorat_tracker.__all__)
    assert set(lorat_tracker.__all__) <= set(dir(lorat_tracker))
    assert LoRATTracker.__module__ == "lorat_tracker.tracker"
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        _ = lorat_tracker.nope


def test_install_hints_use_one_form():
    # Every hint the package prints names the distribution and extra the same way.
    hints = []
    for path in (REPO / "lorat_tracker").rglob("*.py"):
        for line in path.read_text().splitlines():
            if "pip install" in line:
                hints.append((path.name, line.strip()))
    assert hints
    for name, line in hints:
        extras = re.findall(r"pip install (?:--[\w-]+ )*\\?[\"']?([^\s\"'\\]+)", line)
        assert extras and all(re.fullmatch(r"lorat-tracker\[\w+\]|attributee==[\d.]+", e) for e in extras), \
            (name, line)
        assert '.[' not in line and "-e " not in line, (name, line)


def test_parser_constants_match_the_modules_they_stand_for():
    # lorat_tracker.constants holds the plain values the parser needs; they must match the code that uses them.
    from lorat_tracker import constants, runtime, selftest
    from lorat_tracker.config import available_variants

    assert runtime.PRECISIONS is constants.PRECISIONS and selftest.TOLERANCE_PX == constants.TOLERANCE_PX
    assert set(constants.VARIANTS) == {v for v in available_variants() if not v.startswith("tiny-")}


@pytest.mark.parametrize("argv,command", [(["track", "video.mp4"], "track"), (["eval"], "eval"),
                                          (["train", "--variant", "B-224"], "train"),
                                          (["export", "--bogus"], "export"), (["nosuch"], ""),
                                          (["eval", "got10k-val", "--root", ".", "--weights", "w.bin", "--masks", "sam"],
                                           "eval"),
                                          (["vot", "register"], "vot register"), (["vot", "workspace", "--x"],
                                                                                 "vot workspace")])
def test_every_parse_error_is_the_commands_one_line(argv, command):
    """A missing required option or an unknown one: one line, as the README promises, not the usage block."""
    proc = run_lorat(*argv)
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert proc.returncode == 2 and len(lines) == 1, proc.stderr
    assert lines[0].startswith(" ".join(["lorat", command]).strip() + ": error: ") and "usage:" not in proc.stderr
