"""Output files: atomic (all or nothing) and created with the mode the umask asks for, never mkstemp's 0600."""
from __future__ import annotations

import contextlib
import os
import re
import stat
from pathlib import Path

import numpy as np
import pytest

from lorat_tracker.io import atomic_open, atomic_path, current_umask, default_file_mode

REPO = Path(__file__).resolve().parent.parent


@contextlib.contextmanager
def umask(mask: int):
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.mark.parametrize("mask,expected", [(0o022, 0o644), (0o002, 0o664), (0o077, 0o600)])
def test_atomic_writes_honour_the_umask(tmp_path, mask, expected):
    with umask(mask):
        assert current_umask() == mask and default_file_mode() == expected
        with atomic_open(tmp_path / "new.txt") as f:
            f.write("x")
        (tmp_path / "old.txt").write_text("before")
        os.chmod(tmp_path / "old.txt", 0o600)
        with atomic_path(tmp_path / "old.txt") as tmp:
            Path(tmp).write_text("after")
    assert mode(tmp_path / "new.txt") == expected and mode(tmp_path / "old.txt") == expected
    assert (tmp_path / "old.txt").read_text() == "after"


def test_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "results.txt"
    target.write_text("finished earlier\n")
    with pytest.raises(KeyboardInterrupt):
        with atomic_open(target) as f:
            f.write("half")
            raise KeyboardInterrupt
    assert target.read_text() == "finished earlier\n" and os.listdir(tmp_path) == ["results.txt"]


CTRL_C_IN_MKSTEMP = r"""
import os, signal, sys, tempfile
from lorat_tracker.io import atomic_open, atomic_path

signal.signal(signal.SIGINT, signal.default_int_handler)  # as in a terminal: Ctrl-C raises KeyboardInterrupt
real_mkstemp = tempfile.mkstemp

def mkstemp_then_ctrl_c(*args, **kwargs):
    made = real_mkstemp(*args, **kwargs)
    os.kill(os.getpid(), signal.SIGINT)  # arrives now, is held back by interrupts_deferred
    return made

tempfile.mkstemp = mkstemp_then_ctrl_c
target = sys.argv[1]
for write in (lambda: atomic_open(target, "wb").__enter__(), lambda: atomic_path(target).__enter__()):
    try:
        write()
    except KeyboardInterrupt:
        print("interrupted", sorted(os.listdir(os.path.dirname(target))))
"""


def test_ctrl_c_while_the_temporary_file_is_made_leaves_none(tmp_path):
    """The race `lorat demo-data` lost under the fault matrix: a SIGINT that lands inside mkstemp is held
    until the file exists and then raised, which used to leave the new file behind unnamed. In a process
    of its own: the signal goes to the whole process."""
    import subprocess
    import sys

    target = tmp_path / "frame.jpg"
    target.write_bytes(b"earlier")
    proc = subprocess.run([sys.executable, "-c", CTRL_C_IN_MKSTEMP, str(target)], capture_output=True, text=True,
                          timeout=60, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.splitlines() == ["interrupted ['frame.jpg']"] * 2
    assert target.read_bytes() == b"earlier"


@pytest.mark.parametrize("mask,expected", [(0o022, 0o644), (0o002, 0o664)])
def test_export_and_result_files_honour_the_umask(tmp_path, mask, expected):
    """The writers users meet: a merged export, a benchmark result/time file, a VOT trackers.ini."""
    pytest.importorskip("got10k")
    from lorat_tracker import build_model, export_merged
    from lorat_tracker.integrations.got10k.compat import _otb_record
    from lorat_tracker.integrations.vot.registration import upsert_section
    from lorat_tracker.selftest import DATA_DIR

    model = build_model("tiny-mlp-224", DATA_DIR / "tiny-mlp" / "lorat.bin", DATA_DIR / "tiny-mlp" / "backbone.pth")
    with umask(mask):
        export_merged(model, tmp_path / "merged.safetensors")
        _otb_record(None, str(tmp_path / "OTB2015" / "lorat" / "Bird1.txt"), np.ones((3, 4)), [0.1, 0.1, 0.1])
        upsert_section(tmp_path / "trackers.ini", "LoRAT", "[LoRAT]\nlabel = LoRAT\n")
    written = [tmp_path / "merged.safetensors", tmp_path / "OTB2015" / "lorat" / "Bird1.txt",
               tmp_path / "OTB2015" / "lorat" / "times" / "Bird1_time.txt", tmp_path / "trackers.ini"]
    assert {str(p.relative_to(tmp_path)): oct(mode(p)) for p in written} == \
        {str(p.relative_to(tmp_path)): oct(expected) for p in written}


def test_every_temporary_file_goes_through_the_one_helper():
    """No hand-made '.tmp' / '.partial' names outside lorat_tracker/io.py. The calls themselves
    (mkstemp, NamedTemporaryFile, os.replace, os.rename) are banned by ruff's TID251 (pyproject.toml),
    which CI runs; a string literal is beyond a linter, so it is checked here."""
    offenders = []
    for path in sorted((REPO / "lorat_tracker").rglob("*.py")):
        if path.name == "io.py" and path.parent.name == "lorat_tracker":
            continue
        text = path.read_text()
        for pattern in (r"\.tmp[\"']", r"\.partial[\"']"):
            if re.search(pattern, text):
                offenders.append(f"{path.relative_to(REPO)}: {pattern}")
    assert not offenders, offenders
