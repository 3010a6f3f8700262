"""The fault matrix: every ``lorat`` command under every fault class a user meets in the field.

Fault classes (``FAULTS``):

- ``bad-file``      a damaged input file (truncated or foreign weights, a FIFO, an edited header)
- ``read-only``     the output's file system is read-only (a tmpfs remounted read-only)
- ``full-disk``     the output's file system fills up while the command writes (a tiny tmpfs)
- ``sigint-group``  Ctrl-C as a terminal sends it: SIGINT to the whole process group of a ``setsid`` child
                    (data workers, fork server and torchrun ranks included), at several moments of the run
- ``kill9-resume``  SIGKILL mid-run, then the same command again

Each command declares, for each class, the scenario that exercises it or the reason it does not
apply. ``test_every_command_declares_every_fault_class`` reads the commands from the parser itself, so a
command added later fails the suite until its row is written here. What every scenario asserts, whatever
the command (``assert_one_line``): the right exit code (2 when nothing was done, 1 when the job had
started, 130 interrupted), one ``lorat CMD: error:`` line naming the file and the cause, no traceback,
no 0-byte or partial file under a target's name, and an earlier file of that name left as it was.

The read-only and full-disk classes mount a tmpfs, which needs root (CI runs as root); elsewhere they skip.
"""
from __future__ import annotations

import glob
import hashlib
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional, Union

import pytest

from lorat_tracker import demo as sd
from run_cli import REPO

FAULTS = ("bad-file", "read-only", "full-disk", "sigint-group", "kill9-resume")
TRACEBACK = "Traceback (most recent call last)"


# ------------------------------------------------------------------------------------------ helpers

def _env(**extra):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
    env.update(extra)
    return env


def lorat(*args, cwd=None, timeout=300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "lorat_tracker", *map(str, args)], cwd=cwd, env=_env(),
                          capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)


class Child:
    """``lorat ARGS`` in a session of its own (``setsid``), as a shell runs a foreground job: a signal to
    its process group reaches every process it started. Output goes to files (a pipe could fill)."""

    def __init__(self, args, folder: Path, launcher=()):
        folder.mkdir(parents=True, exist_ok=True)
        self.out_path, self.err_path = folder / "stdout.txt", folder / "stderr.txt"
        self._out, self._err = open(self.out_path, "w"), open(self.err_path, "w")
        self.proc = subprocess.Popen([sys.executable, *launcher, "-m", "lorat_tracker", *map(str, args)], env=_env(),
                                     stdout=self._out, stderr=self._err, stdin=subprocess.DEVNULL,
                                     start_new_session=True)

    @property
    def stdout(self) -> str:
        return self.out_path.read_text()

    @property
    def stderr(self) -> str:
        return self.err_path.read_text()

    def wait_for(self, condition: Callable[[], bool], timeout: float = 120) -> bool:
        """Poll ``condition`` until it holds (True) or the process ended first (False)."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            if condition():
                return True
            if self.proc.poll() is not None:
                return condition()
            time.sleep(0.02)
        raise AssertionError(f"timed out waiting; stderr: {self.stderr[-2000:]}")

    def signal_group(self, sig) -> None:
        try:
            os.killpg(self.proc.pid, sig)
        except ProcessLookupError:
            pass

    def finish(self, timeout: float = 180) -> int:
        try:
            code = self.proc.wait(timeout=timeout)
        finally:
            if self.proc.poll() is None:
                self.signal_group(signal.SIGKILL)
            self._out.close()
            self._err.close()
        # No process of the group may outlive it (a data worker, the fork server, a rank).
        deadline = time.time() + 10
        while time.time() < deadline:
            try:
                os.killpg(self.proc.pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.05)
        else:
            self.signal_group(signal.SIGKILL)
            raise AssertionError("processes of the group outlived the command")
        return code


def _own(stderr: str) -> str:
    """stderr without progress bars and what Python's site module prints about a broken .pth file."""
    text = re.sub(r"Error processing line \d+ of .*?Remainder of file ignored\n", "", stderr, flags=re.S)
    return "\n".join(ln for ln in text.replace("\r", "\n").splitlines() if ln.strip() and "it/s]" not in ln
                     and "frame/s]" not in ln and "seq/s]" not in ln and not re.search(r"\d+%\|", ln))


def assert_one_line(proc_or_code, stderr: str, command: str, code: int, *fragments: str) -> str:
    """Exit ``code``, and the error is one ``lorat COMMAND: error:`` line holding every fragment."""
    rc = proc_or_code if isinstance(proc_or_code, int) else proc_or_code.returncode
    own = _own(stderr)
    assert TRACEBACK not in stderr, stderr
    errors = [ln for ln in own.splitlines() if ln.startswith(f"lorat {command}: error:")]
    assert rc == code, f"exit {rc}, expected {code}: {stderr[-3000:]}"
    assert len(errors) == 1, own
    for fragment in fragments:
        assert fragment in errors[0], errors[0]
    return errors[0]


def assert_interrupted(code: int, stderr: str, finished_ok: bool = True) -> bool:
    """130 with one 'interrupted' line, or (``finished_ok``) 0 when the run ended before the signal
    landed. No traceback either way. Returns whether it was interrupted."""
    assert TRACEBACK not in stderr, stderr
    assert "exited unexpectedly" not in stderr, stderr
    if code == 0 and finished_ok:
        return False
    assert code == 130, f"exit {code}: {stderr[-3000:]}"
    return True


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def partials(folder: Path) -> List[str]:
    return sorted(set(glob.glob(str(folder / "**" / ".*.partial*"), recursive=True)))


def zero_byte_files(folder: Path) -> List[str]:
    return [str(p) for p in folder.rglob("*") if p.is_file() and p.stat().st_size == 0]


class Mounts:
    """tmpfs mounts for the write faults: read-only, or so small that the disk fills."""

    def __init__(self):
        self.points: List[Path] = []

    def mount(self, point: Path, size: str, read_only: bool = False,
              populate: Optional[Callable[[Path], None]] = None) -> Path:
        point.mkdir(parents=True, exist_ok=True)
        r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0777", "tmpfs", str(point)],
                           capture_output=True, text=True)
        if r.returncode:
            pytest.skip(f"cannot mount a tmpfs here ({r.stderr.strip()}): the write-fault classes need root")
        self.points.append(point)
        if populate is not None:
            populate(point)
        if read_only:
            subprocess.run(["mount", "-o", "remount,ro", str(point)], check=True)
        return point

    def fill(self, point: Path) -> None:
        """Leave the file system with (almost) no free blocks."""
        f = open(point / "filler", "wb", buffering=0)
        try:
            while True:
                f.write(b"\0" * 4096)
        except OSError:
            pass
        finally:
            try:
                f.close()
            except OSError:
                pass

    def close(self):
        for p in reversed(self.points):
            subprocess.run(["umount", "-l", str(p)], capture_output=True)


@pytest.fixture
def mounts():
    if os.geteuid() != 0:
        pytest.skip("the write-fault classes mount a tmpfs, which needs root (CI runs as root)")
    m = Mounts()
    yield m
    m.close()


# ------------------------------------------------------------------------------------------ inputs

@pytest.fixture(scope="module")
def inputs(tmp_path_factory, tiny_model):
    """Small data shared by the scenarios: a long frame folder, a GOT-10k val root, training videos."""
    root = tmp_path_factory.mktemp("fault_inputs")
    long = sd.render_sequence(num_frames=1500, size_wh=(96, 72), seed=7, object_size=(24, 18))
    frames = root / "long"
    frames.mkdir()
    import cv2

    for i, rgb in enumerate(long.frames):
        cv2.imwrite(str(frames / f"{i:05d}.jpg"), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    box = ",".join(str(int(v)) for v in long.boxes[0, 0])
    sd.write_got10k(root / "GOT-10k", subset="val", count=3, frames=150, seed=11)
    sd.write_folder(root / "videos", count=3, frames=12, seed=300)
    truncated = root / "truncated.bin"
    truncated.write_bytes(tiny_model.weights.read_bytes()[:5000])
    return dict(root=root, frames=frames, box=box, got10k=root / "GOT-10k", videos=root / "videos",
                truncated=truncated)


def _model_args(tiny_model, weights=None) -> List[str]:
    return ["--variant", tiny_model.variant, "--weights", str(weights or tiny_model.weights),
            "--backbone", str(tiny_model.backbone)]


def _track(tiny_model, inputs, *extra, weights=None, end=None):
    args = ["track", inputs["frames"], "--box", inputs["box"], *_model_args(tiny_model, weights),
            "--device", "cpu", "--threads", "1", "--no-progress"]
    if end is not None:
        args += ["--end", str(end)]
    return args + [str(e) for e in extra]


def _eval(tiny_model, inputs, results, reports, weights=None):
    return ["eval", "got10k-val", "--root", inputs["got10k"], *_model_args(tiny_model, weights), "--device", "cpu",
            "--threads", "1", "--results", results, "--reports", reports]


TRAIN_RECIPE = ["--epochs", "2", "--pairs-per-epoch", "48", "--batch-size", "8", "--lr", "1e-3",
                "--warmup-epochs", "0.5", "--device", "cpu", "--no-progress", "--log-every", "1"]


def _train(tiny_model, inputs, out, *extra, weights=None):
    return ["train", *_model_args(tiny_model, weights), "--data", f"folder={inputs['videos']}", "--out", out,
            *TRAIN_RECIPE, *map(str, extra)]


def _export(tiny_model, out, weights=None):
    return ["export", *_model_args(tiny_model, weights), "--out", out]


def _earlier(path: Path, text: str = "an earlier file of this name\n") -> Callable[[Path], None]:
    def populate(_):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return populate


# ------------------------------------------------------------------------------------------ scenarios

def track_bad_file(tiny_model, inputs, tmp_path, mounts):
    out = tmp_path / "boxes.txt"
    proc = lorat(*_track(tiny_model, inputs, "--output", out, weights=inputs["truncated"]))
    assert_one_line(proc, proc.stderr, "track", 2, str(inputs["truncated"]), "truncated")
    assert not out.exists() and not partials(tmp_path)


def track_read_only(tiny_model, inputs, tmp_path, mounts):
    out = tmp_path / "ro" / "boxes.txt"
    mounts.mount(tmp_path / "ro", "1m", read_only=True, populate=_earlier(out))
    before = _digest(out)
    proc = lorat(*_track(tiny_model, inputs, "--output", out, end=5))
    assert_one_line(proc, proc.stderr, "track", 2, str(out), "read-only")
    assert _digest(out) == before


def track_full_disk(tiny_model, inputs, tmp_path, mounts):
    disk = mounts.mount(tmp_path / "full", "64k")
    out, video = disk / "boxes.txt", disk / "boxes.avi"
    _earlier(out)(disk)
    mounts.fill(disk)
    before = _digest(out)
    for extra in (["--output", out], ["--video", video]):
        proc = lorat(*_track(tiny_model, inputs, *extra, end=300))
        assert_one_line(proc, proc.stderr, "track", 1, str(extra[1]), "full")
        assert "FFmpeg" not in proc.stderr and "WARN" not in proc.stderr  # OpenCV's own noise kept off
        assert _digest(out) == before and not video.exists()
        assert not partials(disk) and zero_byte_files(disk) == []


def track_sigint_group(tiny_model, inputs, tmp_path, mounts):
    import cv2

    for k, moment in enumerate(("first boxes", "tracking")):  # start-up: the start-up test's
        out, video = tmp_path / f"boxes{k}.txt", tmp_path / f"boxes{k}.mp4"
        child = Child(_track(tiny_model, inputs, "--output", out, "--video", video), tmp_path / f"run{k}")
        if moment == "start-up":
            time.sleep(0.3)
        else:
            lines = 2 if moment == "first boxes" else 200

            def written(lines=lines, out=out):
                tmp = glob.glob(str(out.parent / f".{out.name}.*.partial"))
                return bool(tmp) and os.path.exists(tmp[0]) and Path(tmp[0]).read_text().count("\n") >= lines
            assert child.wait_for(written), "finished before it could be interrupted"
        child.signal_group(signal.SIGINT)
        code = child.finish()
        if assert_interrupted(code, child.stderr, finished_ok=False) and moment != "start-up":
            kept = out.read_text().splitlines()
            assert 2 <= len(kept) < 1500 and all(len(ln.split(",")) == 5 for ln in kept)
            assert "interrupted: kept" in child.stderr
            capture = cv2.VideoCapture(str(video))  # the video was finalised, not truncated
            assert int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) == len(kept)
            capture.release()
        assert not partials(tmp_path)


def track_kill9_resume(tiny_model, inputs, tmp_path, mounts):
    out = tmp_path / "boxes.txt"
    _earlier(out)(tmp_path)
    before = _digest(out)
    child = Child(_track(tiny_model, inputs, "--output", out), tmp_path / "run")
    assert child.wait_for(lambda: any(os.path.getsize(p) > 0 for p in partials(tmp_path)))
    child.signal_group(signal.SIGKILL)
    child.finish()
    assert _digest(out) == before  # the killed run replaced nothing
    assert len(partials(tmp_path)) == 1  # its temporary file, hidden ...
    proc = lorat(*_track(tiny_model, inputs, "--output", out, end=5))
    assert proc.returncode == 0, proc.stderr
    assert len(out.read_text().splitlines()) == 6
    assert not partials(tmp_path)  # ... is removed by the next write of the same target


def eval_bad_file(tiny_model, inputs, tmp_path, mounts):
    garbage = tmp_path / "garbage.bin"
    garbage.write_bytes(os.urandom(4096))
    proc = lorat(*_eval(tiny_model, inputs, tmp_path / "results", tmp_path / "reports", weights=garbage))
    assert_one_line(proc, proc.stderr, "eval", 2, str(garbage), "not a weights file")
    assert not (tmp_path / "results").exists()


def eval_read_only(tiny_model, inputs, tmp_path, mounts):
    ro = mounts.mount(tmp_path / "ro", "1m", read_only=True)
    proc = lorat(*_eval(tiny_model, inputs, ro / "results", tmp_path / "reports"))
    assert_one_line(proc, proc.stderr, "eval", 2, str(ro / "results"), "read-only")


def eval_full_disk(tiny_model, inputs, tmp_path, mounts):
    disk = mounts.mount(tmp_path / "full", "64k")
    mounts.fill(disk)
    proc = lorat(*_eval(tiny_model, inputs, disk / "results", tmp_path / "reports"))
    assert_one_line(proc, proc.stderr, "eval", 1, str(disk / "results"), "full")
    assert not partials(disk) and zero_byte_files(disk / "results") == [] if (disk / "results").exists() else True


def _result_files(results: Path) -> Dict[str, str]:
    """The boxes of every sequence (the ``_time.txt`` files hold wall-clock times)."""
    return {str(p.relative_to(results)): _digest(p) for p in sorted(results.rglob("*.txt"))
            if not p.name.endswith("_time.txt")}


def _eval_reference(tiny_model, inputs) -> Path:
    """The results of one uninterrupted evaluation (made once for the module)."""
    reference = inputs["root"] / "eval-reference"
    if not reference.exists():
        proc = lorat(*_eval(tiny_model, inputs, reference, inputs["root"] / "eval-reference-reports"))
        assert proc.returncode == 0, proc.stderr
    return reference


def eval_sigint_group(tiny_model, inputs, tmp_path, mounts):
    reference = _eval_reference(tiny_model, inputs)
    for k, moment in enumerate(("start-up", "first sequence done")):
        results = tmp_path / f"results{k}"
        args = _eval(tiny_model, inputs, results, tmp_path / f"reports{k}")
        child = Child(args, tmp_path / f"run{k}")
        if moment == "start-up":
            time.sleep(0.3)
        else:
            assert child.wait_for(lambda: len(list(results.rglob("*_001.txt"))) >= 1), "finished too early"
        child.signal_group(signal.SIGINT)
        if assert_interrupted(child.finish(), child.stderr, finished_ok=False):
            assert not partials(results) if results.exists() else True
        # The same command again tracks the rest; the results equal an uninterrupted run's.
        proc = lorat(*args)
        assert proc.returncode == 0, proc.stderr
        assert _result_files(results) == _result_files(reference)

    # Under torchrun: the terminal's SIGINT reaches torchrun (its ranks run in sessions of their own),
    # which passes it to every rank; each keeps its finished sequences and says so in one line. torchrun
    # itself then exits 1 with its own SignalException trace (its code, not ours).
    results = tmp_path / "results-torchrun"
    args = _eval(tiny_model, inputs, results, tmp_path / "reports-torchrun")
    child = Child(args, tmp_path / "run-torchrun",
                  launcher=("-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"))
    assert child.wait_for(lambda: len(list(results.rglob("*_001.txt"))) >= 1), "finished too early"
    child.signal_group(signal.SIGINT)
    code, stderr = child.finish(), child.stderr
    assert code != 0 and stderr.count("lorat eval: interrupted") == 2, stderr[-3000:]
    assert "[rank0]:" not in stderr and "[rank1]:" not in stderr, stderr[-3000:]  # no rank's traceback
    assert not partials(results)
    proc = lorat(*args)
    assert proc.returncode == 0 and "already done" in proc.stdout, proc.stderr
    assert _result_files(results) == _result_files(reference)


def eval_kill9_resume(tiny_model, inputs, tmp_path, mounts):
    reference = _eval_reference(tiny_model, inputs)
    results = tmp_path / "results"
    args = _eval(tiny_model, inputs, results, tmp_path / "reports")
    child = Child(args, tmp_path / "run")
    assert child.wait_for(lambda: len(list(results.rglob("*_001.txt"))) >= 1), "finished too early"
    child.signal_group(signal.SIGKILL)
    child.finish()
    proc = lorat(*args)
    assert proc.returncode == 0, proc.stderr
    assert "already done" in proc.stdout + proc.stderr
    assert _result_files(results) == _result_files(reference)


def train_bad_file(tiny_model, inputs, tmp_path, mounts):
    proc = lorat(*_train(tiny_model, inputs, tmp_path / "run", weights=inputs["truncated"]))
    assert_one_line(proc, proc.stderr, "train", 2, str(inputs["truncated"]), "truncated")
    assert not (tmp_path / "run").exists()


def train_read_only(tiny_model, inputs, tmp_path, mounts):
    ro = mounts.mount(tmp_path / "ro", "1m", read_only=True)
    proc = lorat(*_train(tiny_model, inputs, ro / "run", "--workers", "0"))
    assert_one_line(proc, proc.stderr, "train", 2, str(ro / "run"), "read-only")


def train_full_disk(tiny_model, inputs, tmp_path, mounts):
    disk = mounts.mount(tmp_path / "full", "256k")  # run.json fits, a checkpoint does not
    proc = lorat(*_train(tiny_model, inputs, disk / "run", "--workers", "0"))
    assert_one_line(proc, proc.stderr, "train", 1, str(disk / "run"), "full")
    assert not partials(disk) and zero_byte_files(disk) == []


def train_sigint_group(tiny_model, inputs, tmp_path, mounts):
    """With a data worker: the fork server and the worker get the SIGINT too."""
    # (Start-up is test_ctrl_c_during_start_up_is_130_without_traceback's, for every command.)
    for k, moment in enumerate(("workers starting", "mid-epoch")):
        out = tmp_path / f"run{k}"
        args = _train(tiny_model, inputs, out, "--workers", "1")
        child = Child(args, tmp_path / f"log{k}")
        if moment == "start-up":
            time.sleep(0.3)
        elif moment == "workers starting":
            assert child.wait_for(lambda out=out: (out / "run.json").exists())
        else:
            assert child.wait_for(lambda child=child: "epoch 1 step 2/" in child.stdout), "finished too early"
        child.signal_group(signal.SIGINT)
        code = child.finish()
        assert_interrupted(code, child.stderr, finished_ok=False)
        if (out / "run.json").exists() and "step" in child.stdout:
            assert (out / "checkpoint.pth").exists(), child.stdout  # the stop checkpoint, as with --workers 0
    proc = lorat(*args)  # the same command resumes the last one and finishes
    assert proc.returncode == 0, proc.stderr
    assert "resuming" in proc.stdout and (out / "lorat.bin").exists()


def train_kill9_resume(tiny_model, inputs, tmp_path, mounts):
    reference = tmp_path / "reference"
    assert lorat(*_train(tiny_model, inputs, reference, "--workers", "0")).returncode == 0
    out = tmp_path / "run"
    args = _train(tiny_model, inputs, out, "--workers", "0")
    child = Child(args, tmp_path / "log")
    assert child.wait_for(lambda: "epoch 2 step 2/" in child.stdout), "finished too early"
    child.signal_group(signal.SIGKILL)
    child.finish()
    proc = lorat(*args)
    assert proc.returncode == 0, proc.stderr
    assert _digest(out / "lorat.bin") == _digest(reference / "lorat.bin")


def export_bad_file(tiny_model, inputs, tmp_path, mounts):
    proc = lorat(*_export(tiny_model, tmp_path / "merged.safetensors", weights=inputs["truncated"]))
    assert_one_line(proc, proc.stderr, "export", 2, str(inputs["truncated"]), "truncated")
    assert not (tmp_path / "merged.safetensors").exists() and not partials(tmp_path)


def export_read_only(tiny_model, inputs, tmp_path, mounts):
    out = tmp_path / "ro" / "merged.safetensors"
    mounts.mount(tmp_path / "ro", "1m", read_only=True, populate=_earlier(out))
    proc = lorat(*_export(tiny_model, out))
    assert_one_line(proc, proc.stderr, "export", 2, str(out), "read-only")
    assert out.read_text() == "an earlier file of this name\n"


def export_full_disk(tiny_model, inputs, tmp_path, mounts):
    disk = mounts.mount(tmp_path / "full", "512k")  # the tiny model's export is 1.7 MiB
    out = disk / "merged.safetensors"
    _earlier(out)(disk)
    for fmt in ("safetensors", "onnx"):
        target = out if fmt == "safetensors" else disk / "merged.onnx"
        extra = [] if fmt == "safetensors" else ["--format", "onnx"]
        if fmt == "onnx":
            pytest.importorskip("onnxscript")
        proc = lorat(*_export(tiny_model, target), *extra)
        assert_one_line(proc, proc.stderr, "export", 1, str(target), "full")
        assert out.read_text() == "an earlier file of this name\n"
        assert not partials(disk) and zero_byte_files(disk) == []


def export_sigint_group(tiny_model, inputs, tmp_path, mounts):
    """An export takes about a second: signalled at several moments, it is either interrupted with nothing
    written, or finished with the whole file."""
    for k, delay in enumerate((0.2, 0.8, 1.4, 2.0)):
        out = tmp_path / f"merged{k}.safetensors"
        child = Child(_export(tiny_model, out), tmp_path / f"run{k}")
        time.sleep(delay)
        child.signal_group(signal.SIGINT)
        if assert_interrupted(child.finish(), child.stderr):
            assert not out.exists()
        else:
            assert lorat("info", out).returncode == 0
        assert not partials(tmp_path)


def export_kill9_resume(tiny_model, inputs, tmp_path, mounts):
    """The partial a killed export leaves (its writer's host and pid in the name) is removed by the next
    export to the same target; one of a live writer is left alone."""
    out = tmp_path / "merged.safetensors"
    child = Child(["demo-data", tmp_path / "unused", "--layout", "folder"], tmp_path / "dead")  # a real pid...
    child.finish()                                                                             # ... now dead
    host = __import__("socket").gethostname().replace(".", "_")
    dead = tmp_path / f".merged.safetensors.{host}-{child.proc.pid}.abcd1234.partial"
    live = tmp_path / f".merged.safetensors.{host}-{os.getpid()}.efgh5678.partial"
    dead.write_bytes(b"half an export")
    live.write_bytes(b"another export in progress")
    proc = lorat(*_export(tiny_model, out))
    assert proc.returncode == 0, proc.stderr
    assert not dead.exists() and live.exists()


def info_bad_file(tiny_model, inputs, tmp_path, mounts):
    fifo = tmp_path / "weights.bin"
    os.mkfifo(fifo)
    proc = lorat("info", fifo, timeout=60)  # used to block for ever
    assert_one_line(proc, proc.stderr, "info", 2, str(fifo), "not a regular file")
    proc = lorat("info", inputs["truncated"])
    assert_one_line(proc, proc.stderr, "info", 2, "truncated")
    # An edited export whose metadata puts terminal control sequences on screen: shown escaped.
    out = tmp_path / "merged.safetensors"
    assert lorat(*_export(tiny_model, out)).returncode == 0
    from safetensors import safe_open
    from safetensors.torch import save_file

    with safe_open(str(out), framework="pt") as f:
        tensors = {k: f.get_tensor(k) for k in f.keys()}
        metadata = dict(f.metadata())
    metadata["format"] = "\x1b[2J\x1b]0;pwned\x07"
    save_file(tensors, str(tmp_path / "edited.safetensors"), metadata=metadata)
    proc = lorat("info", tmp_path / "edited.safetensors")
    assert "\x1b" not in proc.stdout + proc.stderr and "\x07" not in proc.stdout + proc.stderr


def selftest_bad_file(tiny_model, inputs, tmp_path, mounts):
    """The fixtures the self-test reads are part of the install: a damaged one is a failed self-test."""
    from lorat_tracker.selftest import DATA_DIR

    copy = tmp_path / "install"
    shutil.copytree(REPO / "lorat_tracker", copy / "lorat_tracker",
                    ignore=shutil.ignore_patterns("__pycache__"))
    damaged = copy / "lorat_tracker" / "selftest_data" / "tiny-mlp" / "lorat.bin"
    damaged.write_bytes((DATA_DIR / "tiny-mlp" / "lorat.bin").read_bytes()[:5000])
    proc = subprocess.run([sys.executable, "-m", "lorat_tracker", "selftest"], env=dict(_env(), PYTHONPATH=str(copy)),
                          capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert TRACEBACK not in proc.stderr and proc.returncode in (1, 2), proc.stderr
    assert "truncated" in proc.stdout + proc.stderr


def _bench(*extra, frames: int = 2):
    return ["bench", "--variant", "tiny-mlp-224", "--backends", "torch", "--frames", str(frames), *map(str, extra)]


def bench_bad_file(tiny_model, inputs, tmp_path, mounts):
    proc = lorat(*_bench("--weights", inputs["truncated"], "--backbone", tiny_model.backbone))
    assert_one_line(proc, proc.stderr, "bench", 2, str(inputs["truncated"]), "truncated")


def bench_read_only(tiny_model, inputs, tmp_path, mounts):
    """--json is checked before a minute of timing, not after it."""
    ro = mounts.mount(tmp_path / "ro", "1m", read_only=True)
    proc = lorat(*_bench("--json", ro / "bench.json"))
    assert_one_line(proc, proc.stderr, "bench", 2, str(ro / "bench.json"), "read-only")
    assert "GFLOP per frame" not in proc.stdout  # refused before any measurement


def bench_sigint_group(tiny_model, inputs, tmp_path, mounts):
    for k, delay in enumerate((1.5, 4.0)):  # importing / measuring the GEMM rates / tracking
        child = Child(_bench("--json", tmp_path / f"bench{k}.json", frames=400), tmp_path / f"b{k}")
        time.sleep(delay)
        child.signal_group(signal.SIGINT)
        assert_interrupted(child.finish(), child.stderr, finished_ok=False)
        assert not (tmp_path / f"bench{k}.json").exists() and not partials(tmp_path)


def demo_data_read_only(tiny_model, inputs, tmp_path, mounts):
    ro = mounts.mount(tmp_path / "ro", "1m", read_only=True)
    proc = lorat("demo-data", ro / "demo", "--layout", "got10k")
    assert_one_line(proc, proc.stderr, "demo-data", 2, str(ro / "demo"), "read-only")


def demo_data_full_disk(tiny_model, inputs, tmp_path, mounts):
    disk = mounts.mount(tmp_path / "full", "64k")
    proc = lorat("demo-data", disk / "demo", "--layout", "got10k")
    assert_one_line(proc, proc.stderr, "demo-data", 1, str(disk / "demo"), "full")
    assert not partials(disk) and zero_byte_files(disk) == []


def demo_data_sigint_group(tiny_model, inputs, tmp_path, mounts):
    for k, delay in enumerate((0.2, 0.6, 1.0)):
        out = tmp_path / f"demo{k}"
        child = Child(["demo-data", out, "--layout", "got10k", "--count", "20", "--frames", "40"], tmp_path / f"r{k}")
        time.sleep(delay)
        child.signal_group(signal.SIGINT)
        assert_interrupted(child.finish(), child.stderr)
        assert not partials(out) if out.exists() else True
        proc = lorat("demo-data", out, "--layout", "got10k", "--force")  # the same again completes
        assert proc.returncode == 0, proc.stderr


def _vot_workspace(tmp_path) -> Path:
    pytest.importorskip("vot")
    ws = tmp_path / "ws"
    proc = lorat("vot", "workspace", "--workspace", ws, "--stack", "tests/basic", "--demo", "1",
                 "--demo-length", "5")
    assert proc.returncode == 0, proc.stderr
    return ws


def vot_register_bad_file(tiny_model, inputs, tmp_path, mounts):
    ws = _vot_workspace(tmp_path)
    before = _digest(ws / "trackers.ini")
    proc = lorat("vot", "register", "--workspace", ws, *_model_args(tiny_model, inputs["truncated"]), "--device", "cpu")
    assert_one_line(proc, proc.stderr, "vot", 2, str(inputs["truncated"]), "truncated")
    assert _digest(ws / "trackers.ini") == before


def vot_register_read_only(tiny_model, inputs, tmp_path, mounts):
    pytest.importorskip("vot")
    ro = mounts.mount(tmp_path / "ro", "4m", read_only=True, populate=lambda p: _vot_workspace(p))
    ws = ro / "ws"
    before = _digest(ws / "trackers.ini")
    proc = lorat("vot", "register", "--workspace", ws, *_model_args(tiny_model), "--device", "cpu")
    assert_one_line(proc, proc.stderr, "vot", 2, str(ws / "trackers.ini"), "read-only")
    assert _digest(ws / "trackers.ini") == before


def vot_register_full_disk(tiny_model, inputs, tmp_path, mounts):
    pytest.importorskip("vot")
    disk = mounts.mount(tmp_path / "full", "4m", populate=lambda p: _vot_workspace(p))
    ws = disk / "ws"
    before = _digest(ws / "trackers.ini")
    mounts.fill(disk)
    proc = lorat("vot", "register", "--workspace", ws, *_model_args(tiny_model), "--device", "cpu")
    assert_one_line(proc, proc.stderr, "vot", 1, str(ws / "trackers.ini"), "full")
    assert _digest(ws / "trackers.ini") == before and not partials(disk)


def vot_workspace_bad_file(tiny_model, inputs, tmp_path, mounts):
    pytest.importorskip("vot")
    stack = tmp_path / "stack.yaml"
    stack.write_text("title: [unclosed\n")
    proc = lorat("vot", "workspace", "--workspace", tmp_path / "ws", "--stack", stack, "--demo", "1")
    assert_one_line(proc, proc.stderr, "vot", 2, str(stack))


def vot_workspace_read_only(tiny_model, inputs, tmp_path, mounts):
    pytest.importorskip("vot")
    ro = mounts.mount(tmp_path / "ro", "1m", read_only=True)
    proc = lorat("vot", "workspace", "--workspace", ro / "ws", "--stack", "tests/basic", "--demo", "1")
    assert_one_line(proc, proc.stderr, "vot", 2, str(ro / "ws"), "read-only")


def vot_workspace_full_disk(tiny_model, inputs, tmp_path, mounts):
    pytest.importorskip("vot")
    disk = mounts.mount(tmp_path / "full", "64k")
    proc = lorat("vot", "workspace", "--workspace", disk / "ws", "--stack", "tests/basic", "--demo", "2",
                 "--demo-length", "30")
    assert_one_line(proc, proc.stderr, "vot", 1, str(disk / "ws"), "full")
    assert not partials(disk)


NA_READS_ONLY = "writes nothing: its only output is the terminal"
NA_QUICK = ("reads its inputs and answers in about a second: there is no run to interrupt or resume beyond "
            "start-up, which the start-up row of every command covers")

# command -> fault class -> scenario, or the reason the class does not apply
MATRIX: Dict[str, Dict[str, Union[Callable, str]]] = {
    "track": {"bad-file": track_bad_file, "read-only": track_read_only, "full-disk": track_full_disk,
              "sigint-group": track_sigint_group, "kill9-resume": track_kill9_resume},
    "eval": {"bad-file": eval_bad_file, "read-only": eval_read_only, "full-disk": eval_full_disk,
             "sigint-group": eval_sigint_group, "kill9-resume": eval_kill9_resume},
    "train": {"bad-file": train_bad_file, "read-only": train_read_only, "full-disk": train_full_disk,
              "sigint-group": train_sigint_group, "kill9-resume": train_kill9_resume},
    "export": {"bad-file": export_bad_file, "read-only": export_read_only, "full-disk": export_full_disk,
               "sigint-group": export_sigint_group, "kill9-resume": export_kill9_resume},
    "info": {"bad-file": info_bad_file, "read-only": NA_READS_ONLY, "full-disk": NA_READS_ONLY,
             "sigint-group": NA_QUICK, "kill9-resume": NA_QUICK},
    "selftest": {"bad-file": selftest_bad_file, "read-only": NA_READS_ONLY, "full-disk": NA_READS_ONLY,
                 "sigint-group": NA_QUICK, "kill9-resume": "a rerun repeats the whole self-test (seconds)"},
    "bench": {"bad-file": bench_bad_file, "read-only": bench_read_only,
              "full-disk": "writes one small JSON at the end through atomic_write_text, the same OutputError path "
                           "as demo-data's; its ONNX files go to a TemporaryDirectory, as export's full-disk row runs",
              "sigint-group": bench_sigint_group,
              "kill9-resume": "nothing to resume: a rerun measures again (a minute); a kill -9 leaves its "
                              "TemporaryDirectory (lorat-bench-*) in the system temp folder"},
    "demo-data": {"bad-file": "reads no file: it writes generated data",
                  "read-only": demo_data_read_only, "full-disk": demo_data_full_disk,
                  "sigint-group": demo_data_sigint_group,
                  "kill9-resume": "every file is written atomically; the same command with --force writes all "
                                  "again (the sigint row runs that)"},
    "vot register": {"bad-file": vot_register_bad_file, "read-only": vot_register_read_only,
                     "full-disk": vot_register_full_disk, "sigint-group": NA_QUICK, "kill9-resume": NA_QUICK},
    "vot workspace": {"bad-file": vot_workspace_bad_file, "read-only": vot_workspace_read_only,
                      "full-disk": vot_workspace_full_disk, "sigint-group": NA_QUICK, "kill9-resume": NA_QUICK},
    "vot (toolkit)": {"bad-file": "the toolkit's own commands read the workspace the toolkit wrote; the "
                                  "tracker's files are checked by `lorat vot register`",
                      "read-only": "writes through the toolkit's own code (results, reports)",
                      "full-disk": "writes through the toolkit's own code (results, reports)",
                      "sigint-group": "the toolkit's process handles it; LoRAT's TraX servers are its children "
                                      "and end with it (test_vot.py runs vot evaluate end to end)",
                      "kill9-resume": "the toolkit resumes an evaluation itself (it skips finished sequences)"},
}



def _commands() -> List[str]:
    """Every command a user can run, read from the parser (and the `lorat vot` verbs)."""
    from lorat_tracker.cli import build_parser
    from lorat_tracker.integrations.vot.cli import VERBS

    parser = build_parser()
    sub = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    names = [n for n in sub.choices if n != "vot"]
    return names + [f"vot {v}" for v in VERBS] + ["vot (toolkit)"]


def test_every_command_declares_every_fault_class():
    """A command added to the CLI fails here until its row says how each fault class is met."""
    commands = _commands()
    assert sorted(MATRIX) == sorted(commands), "add the new command's row to MATRIX"
    for command, row in MATRIX.items():
        assert sorted(row) == sorted(FAULTS), command
        for fault, how in row.items():
            assert callable(how) or (isinstance(how, str) and len(how) > 20), (command, fault)


# Every scenario starts `lorat` processes (a second or more each): the matrix is the slow tier's; the quick
# tier keeps the declaration check and the in-process tests below.
CASES = [pytest.param(c, f, id=f"{c.replace(' ', '-')}:{f}", marks=[pytest.mark.slow])
         for c, row in MATRIX.items() for f, how in row.items() if callable(how)]


@pytest.mark.parametrize("command,fault", CASES)
def test_fault(command, fault, tiny_model, inputs, tmp_path, request):
    mounts = request.getfixturevalue("mounts") if fault in ("read-only", "full-disk") else None
    MATRIX[command][fault](tiny_model, inputs, tmp_path, mounts)


@pytest.mark.slow
@pytest.mark.parametrize("command", [c for c in MATRIX if c != "vot (toolkit)"])
def test_ctrl_c_during_start_up_is_130_without_traceback(command, tiny_model, inputs, tmp_path):
    """Every command, signalled while Python and torch are still importing: one line, 130."""
    args = {"track": _track(tiny_model, inputs), "eval": _eval(tiny_model, inputs, tmp_path / "r", tmp_path / "p"),
            "train": _train(tiny_model, inputs, tmp_path / "run"), "export": _export(tiny_model, tmp_path / "m.st"),
            "info": ["info", tiny_model.weights], "selftest": ["selftest"], "bench": _bench(),
            "demo-data": ["demo-data", tmp_path / "d", "--layout", "got10k"],
            "vot register": ["vot", "register", "--workspace", tmp_path / "ws", *_model_args(tiny_model)],
            "vot workspace": ["vot", "workspace", "--workspace", tmp_path / "ws2", "--stack", "tests/basic",
                              "--demo", "1"]}[command]
    child = Child(args, tmp_path / "log")
    time.sleep(0.15)
    child.signal_group(signal.SIGINT)
    assert_interrupted(child.finish(), child.stderr)


# ---------------------------------------------------------------- weights that overflow: nothing silently wrong

@pytest.fixture(scope="module")
def overflowing_weights(tmp_path_factory, tiny_model):
    """Finite values that overflow inside the network (an MLP expansion of 1e30): they load, and used to
    track NaN scores and zero-width boxes with exit 0."""
    from safetensors.torch import load_file, save_file

    state = load_file(str(tiny_model.weights))
    key = "blocks.0.mlp.fc1.lora.B"
    state[key] = state[key].new_full(state[key].shape, 1e30)
    path = tmp_path_factory.mktemp("overflow") / "overflow.bin"
    save_file(state, str(path))
    return path


def test_overflowing_weights_raise_on_every_surface_and_leave_the_tracker_usable(tiny_model, overflowing_weights):
    import numpy as np

    from lorat_tracker import DamagedWeightsError, LoRATTracker
    from lorat_tracker.integrations.got10k import LoRATGot10kTracker
    from lorat_tracker.integrations.opencv import TrackerLoRAT
    from lorat_tracker.integrations.pytracking.tracker import LoRATPytracking
    from PIL import Image

    seq = sd.render_sequence(num_frames=3, seed=2)
    box = seq.boxes[0, 0]
    bad = LoRATTracker.from_pretrained(tiny_model.variant, overflowing_weights, tiny_model.backbone, device="cpu")
    bad.initialize(seq.frames[0], box)
    with pytest.raises(DamagedWeightsError, match="not finite.*damaged"):
        bad.track(seq.frames[1])
    assert np.array_equal(bad.target.box_xywh, box)  # the failed frame changed nothing
    targets = [bad.new_target(seq.frames[0], box) for _ in range(2)]
    with pytest.raises(DamagedWeightsError, match=r"target\(s\) \[0, 1\]"):
        bad.step(targets, seq.frames[1])
    # The adapters pass it on typed (never a NaN box):
    cv = TrackerLoRAT(bad)
    cv.init(seq.frames[0][:, :, ::-1].copy(), tuple(int(v) for v in box))
    with pytest.raises(DamagedWeightsError):
        cv.update(seq.frames[1][:, :, ::-1].copy())
    g = LoRATGot10kTracker(bad)
    g.init(Image.fromarray(seq.frames[0]), box)
    with pytest.raises(DamagedWeightsError):
        g.update(Image.fromarray(seq.frames[1]))
    pt = LoRATPytracking(None, tracker=bad)
    pt.initialize(seq.frames[0], {"init_bbox": list(box)})
    with pytest.raises(DamagedWeightsError):
        pt.track(seq.frames[1])


@pytest.mark.slow
def test_overflowing_weights_at_the_command_line(tiny_model, inputs, overflowing_weights, tmp_path):
    out = tmp_path / "boxes.txt"
    out.write_text("earlier\n")
    proc = lorat(*_track(tiny_model, inputs, "--output", out, weights=overflowing_weights, end=5))
    assert_one_line(proc, proc.stderr, "track", 1, "not finite", "damaged")
    assert out.read_text() == "earlier\n" and not partials(tmp_path)
    proc = lorat(*_export(tiny_model, tmp_path / "m.safetensors", weights=overflowing_weights))
    assert_one_line(proc, proc.stderr, "export", 1, "overflow", "blocks.0.mlp.fc1.weight")
    assert not (tmp_path / "m.safetensors").exists()


@pytest.mark.slow
def test_vot_server_says_the_weights_are_damaged(tiny_model, overflowing_weights, tmp_path):
    pytest.importorskip("trax")
    env = _env(LORAT_VOT_VARIANT=tiny_model.variant, LORAT_VOT_WEIGHTS=str(overflowing_weights),
               LORAT_VOT_BACKBONE=str(tiny_model.backbone), LORAT_VOT_DEVICE="cpu",
               LORAT_VOT_LOG=str(tmp_path / "server.log"))
    proc = subprocess.run([sys.executable, "-m", "lorat_tracker.integrations.vot"], env=env, capture_output=True,
                          text=True, timeout=120, stdin=subprocess.DEVNULL)
    assert proc.returncode == 1
    assert "the weights are damaged" in (tmp_path / "server.log").read_text()


def test_fp16_range_is_checked_at_load_naming_the_tensor(tiny_model):
    import torch

    from lorat_tracker import DamagedWeightsError
    from lorat_tracker.tracker import check_weight_range
    from lorat_tracker.weights import build_model

    model = build_model(tiny_model.variant, tiny_model.weights, tiny_model.backbone)
    with torch.no_grad():
        model.head.cls_mlp.layers[0].weight[0, 0] = 1e5  # fits fp32 and bf16, is inf in fp16
    check_weight_range(model, None)
    check_weight_range(model, torch.bfloat16)
    with pytest.raises(DamagedWeightsError, match=r"head.cls_mlp.layers.0.weight holds values up to 1e\+05, "
                                                  r"beyond the range of fp16"):
        check_weight_range(model, torch.float16)


# ---------------------------------------------------------------- results folders of another tracker

@pytest.mark.slow
def test_a_results_folder_is_resumed_or_skipped_only_by_the_tracker_that_made_it(tiny_model, inputs, tmp_path):
    """A GOT-10k run of an ONNX tracker had the torch run's default name, and into that folder it printed
    'Found results, skipping' and reported torch's numbers; lorat eval did the same ('3 sequences already
    done, 0 to track')."""
    import json as json_

    from safetensors.torch import load_file, save_file

    from lorat_tracker.provenance import PROVENANCE_FILE, default_run_name
    from lorat_tracker.spec import TrackerSpec

    results, reports = tmp_path / "results", tmp_path / "reports"
    proc = lorat(*_eval(tiny_model, inputs, results, reports), "--sequences", "GOT-10k_Val_000001")
    assert proc.returncode == 0, proc.stderr
    folder = results / "GOT-10k" / "tiny-mlp-224"
    record = json_.loads((folder / PROVENANCE_FILE).read_text())
    assert record["backend"] == "torch" and record["precision"] == "fp32" and len(record["weights_sha256"]) == 64
    # Other weights into the same folder: refused in one line before anything is tracked or reported.
    state = load_file(str(tiny_model.weights))
    state["token_type_embed"] = state["token_type_embed"] * 1.01
    other = tmp_path / "other.bin"
    save_file(state, str(other))
    before = sorted(p.name for p in folder.rglob("*"))
    proc = lorat(*_eval(tiny_model, inputs, results, reports, weights=other), "--name", "tiny-mlp-224")
    assert_one_line(proc, proc.stderr, "eval", 2, "holds the results of another tracker", "weights_sha256")
    assert sorted(p.name for p in folder.rglob("*")) == before
    # A folder with results and no record (an older version, another tool): refused too.
    (folder / PROVENANCE_FILE).unlink()
    proc = lorat(*_eval(tiny_model, inputs, results, reports))
    assert_one_line(proc, proc.stderr, "eval", 2, "no record of the tracker that made them")
    # Default names tell backends and precisions apart, for lorat eval and the GOT-10k tracker alike.
    assert default_run_name("B-224", TrackerSpec()) == "B-224"
    assert default_run_name("B-224", TrackerSpec(backend="openvino", precision="bf16")) == "B-224-openvino-bf16"
    assert default_run_name("B-224", TrackerSpec(precision="fp32")) == "B-224-fp32"
