"""``lorat train`` through the command line: resume after SIGINT / SIGKILL equals an uninterrupted run,
two gloo ranks equal one process, a finished run says so, and every user mistake is one line, exit 2,
nothing written or overwritten."""
from __future__ import annotations

import hashlib
import math
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from lorat_tracker import demo as sd
from run_cli import REPO, run_lorat

# 2 epochs x 5 steps of 8 pairs: long enough to interrupt mid-epoch, a few seconds on one core.
RECIPE = ["--epochs", "2", "--pairs-per-epoch", "40", "--batch-size", "8", "--lr", "1e-3", "--warmup-epochs", "0.5",
          "--device", "cpu", "--no-progress"]


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("train_data")
    sd.write_folder(root / "videos", count=4, frames=16, seed=300)
    return root / "videos"


def _args(tiny_model, data_root, out, *extra):
    return ["train", *tiny_model.cli_args(), "--data", f"folder={data_root}", "--out", out, *RECIPE, *extra]


def _weights(out: Path):
    return load_file(str(out / "lorat.bin"))


def _tree(folder: Path):
    """Every file under ``folder`` with its content hash and mode (to prove nothing was touched)."""
    return {str(p.relative_to(folder)): (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mode)
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _metric_values(out: Path):
    import csv

    with open(out / "metrics.csv", newline="") as f:
        return [{k: v for k, v in row.items() if k not in ("pairs_per_s", "seconds")} for row in csv.DictReader(f)]


def _own_stderr(text: str) -> str:
    """stderr without what Python's site module prints about a broken .pth file of the environment."""
    return re.sub(r"Error processing line \d+ of .*?Remainder of file ignored\n", "", text, flags=re.S)


def _env():
    return dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))


def _interrupt(args, sig, when: str, cwd) -> subprocess.CompletedProcess:
    """Start ``lorat ARGS``, send ``sig`` once a stdout line starts with ``when``, wait for the end."""
    proc = subprocess.Popen([sys.executable, "-m", "lorat_tracker", *map(str, args)], cwd=cwd, env=_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    seen = []
    try:
        for line in proc.stdout:
            seen.append(line)
            if line.startswith(when):
                proc.send_signal(sig)
                break
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    return subprocess.CompletedProcess(proc.args, proc.returncode, "".join(seen) + out, err)


def _main(args) -> int:
    """``lorat ARGS`` in this process (saves a Python + torch start-up per run; the same code runs)."""
    from lorat_tracker.cli import main

    return main([str(a) for a in args])


@pytest.fixture(scope="module")
def reference(tiny_model, data_root, tmp_path_factory):
    """One uninterrupted run (data loaded in the main process)."""
    out = tmp_path_factory.mktemp("reference") / "run"
    assert _main(_args(tiny_model, data_root, out, "--workers", "0", "--checkpoint-every", "1")) == 0
    return out


def test_outputs_of_a_run(reference, tiny_model, tmp_path):
    from lorat_tracker import LoRATTracker
    from lorat_tracker.weights import read_weights_file

    names = {p.name for p in reference.iterdir()}
    assert {"run.json", "checkpoint.pth", "lorat.bin", "metrics.csv", "curves.png"} <= names
    rows = (reference / "metrics.csv").read_text().splitlines()
    assert rows[0].startswith("epoch,step,lr,loss") and [r.split(",")[0] for r in rows[1:]] == ["1", "2"]
    # The released format: the same keys and meta tensors as the file training started from.
    released = read_weights_file(tiny_model.weights).tensors
    trained = _weights(reference)
    assert set(trained) == set(released)
    snapshot = load_file(str(reference / "checkpoints" / "epoch-0001.bin"))  # --checkpoint-every 1
    assert set(snapshot) == set(released) and any(not torch.equal(snapshot[k], trained[k]) for k in trained)
    assert not (reference / "checkpoints" / "epoch-0002.bin").exists()  # the last epoch is lorat.bin
    assert any(not torch.equal(trained[k], released[k]) for k in released if k not in ("lora_alpha", "use_rslora"))
    # Files honour the umask (not mkstemp's 0600).
    umask = os.umask(0)
    os.umask(umask)
    for name in ("lorat.bin", "checkpoint.pth", "metrics.csv", "run.json"):
        assert (reference / name).stat().st_mode & 0o777 == 0o666 & ~umask, name
    LoRATTracker.from_pretrained(tiny_model.variant, weights=reference / "lorat.bin", backbone=tiny_model.backbone,
                                 device="cpu")  # loads unchanged
    merged = tmp_path / "merged.safetensors"
    assert _main(["export", "--variant", tiny_model.variant, "--weights", reference / "lorat.bin",
                  "--backbone", tiny_model.backbone, "--out", merged]) == 0 and merged.is_file()


@pytest.mark.slow
def test_interrupted_and_resumed_runs_end_with_the_same_weights(reference, tiny_model, data_root, tmp_path,
                                                                 capsys):
    expected = _weights(reference)
    # Ctrl-C in the middle of epoch 2 (data from a worker process this time): a checkpoint, exit 130.
    out = tmp_path / "sigint"
    args = _args(tiny_model, data_root, out, "--workers", "1", "--log-every", "1")
    proc = _interrupt(args, signal.SIGINT, "epoch 2 step 1/5", tmp_path)
    assert proc.returncode == 130, proc.stderr
    assert "checkpoint written" in proc.stdout and "Traceback" not in _own_stderr(proc.stderr)
    assert not (out / "lorat.bin").exists()
    # The same command again, in a process of its own like every run with data workers in this suite:
    # a process that had run OpenVINO crashed when it later started DataLoader workers (conftest.py).
    proc = run_lorat(*args, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert f"resuming {out} at epoch 2, step 2 of 5" in proc.stdout
    got = _weights(out)
    # Same process layout and thread count, same batches: the same float operations in the same order.
    for k in expected:
        assert torch.equal(got[k], expected[k]), k

    # SIGKILL (no chance to write anything) right after epoch 1's summary: the checkpoint written before
    # that line is the resume point.
    out = tmp_path / "sigkill"
    args = _args(tiny_model, data_root, out, "--workers", "0")
    proc = _interrupt(args, signal.SIGKILL, "epoch 1/2", tmp_path)
    assert proc.returncode == -signal.SIGKILL
    capsys.readouterr()
    assert _main(args) == 0
    assert "at epoch 2, step 0 of 5" in capsys.readouterr().out
    got = _weights(out)
    for k in expected:
        assert torch.equal(got[k], expected[k]), k
    # The CSV of the resumed run has the reference's numbers (all but the timing columns).
    assert _metric_values(out) == _metric_values(reference)

    # Running the finished command again: says so, exit 0, nothing rewritten.
    before = _tree(out)
    assert _main(args) == 0 and "is finished" in capsys.readouterr().out
    assert _tree(out) == before


@pytest.mark.slow
def test_two_torchrun_nodes_train_the_weights_of_one_process(reference, tiny_model, data_root, tmp_path):
    # Two nodes of one process each (c10d rendezvous on 127.0.0.1, gloo), as a job over two machines: DDP
    # across nodes is the same as across the processes of one node, and equals the one-process run.
    from run_cli import finish, launch_nodes

    if shutil.which("torchrun") is None:
        pytest.skip("torchrun not on PATH")
    out = tmp_path / "ddp"
    ended = finish(launch_nodes(*_args(tiny_model, data_root, out, "--workers", "0"), cwd=tmp_path), timeout=300)
    assert all(code == 0 for code, _, _ in ended), ended
    stdout = "".join(o for _, o, _ in ended)
    assert "2 processes" in stdout and stdout.count("epoch 2/2") == 1  # rank 0 reports
    expected, got = _weights(reference), _weights(out)
    start = load_file(str(tiny_model.weights))
    # Each rank computes half of every batch; the loss is normalised by the all-reduced positive count
    # and DDP averages the gradients, so the step equals the one-process step up to float summation
    # order (both runs on this machine, so only the split of the batch differs). Measured: max difference
    # 1.5e-8 after 10 steps, while the weights moved by 4.6e-3 (median; lr 1e-3): the bound 1e-6 is
    # 60x the measured difference and far below what a wrong share, scaling or step would change.
    moved = max((expected[k] - start[k]).abs().max().item() for k in expected if k not in ("lora_alpha", "use_rslora"))
    assert moved > 1e-3
    for k in expected:
        torch.testing.assert_close(got[k], expected[k], rtol=0, atol=1e-6, msg=k)


# ------------------------------------------------------------------------------------------ bad input

def _fails(capsys, args, *needles):
    from lorat_tracker.cli import main

    code = main([str(a) for a in args])
    err = capsys.readouterr().err
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("lorat train: error: "), err
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def test_bad_data_is_one_line_and_writes_nothing(tiny_model, data_root, tmp_path, capsys):
    out = tmp_path / "out"
    empty = tmp_path / "empty"
    empty.mkdir()
    _fails(capsys, _args(tiny_model, empty, out), str(empty))
    no_gt = tmp_path / "no_gt"
    shutil.copytree(data_root, no_gt)
    (no_gt / "video_1" / "groundtruth.txt").unlink()
    _fails(capsys, _args(tiny_model, no_gt, out), "groundtruth.txt")
    bad_line = tmp_path / "bad_line"
    shutil.copytree(data_root, bad_line)
    gt = bad_line / "video_2" / "groundtruth.txt"
    lines = gt.read_text().splitlines()
    lines[6] = "12,34,abc,20"
    gt.write_text("\n".join(lines) + "\n")
    _fails(capsys, _args(tiny_model, bad_line, out), str(gt), "line 7")
    _fails(capsys, ["train", *tiny_model.cli_args(), "--data", f"flickr={data_root}", "--out", out], "flickr")
    _fails(capsys, ["train", *tiny_model.cli_args(), "--data", f"folder={tmp_path / 'missing'}", "--out", out],
           "missing")
    # LaSOT has no validation split: refused, not silently validated on its training sequences
    _fails(capsys, [*_args(tiny_model, data_root, out), "--val", f"lasot={tmp_path}"], "has no validation split")
    assert not out.exists()


def test_weights_of_another_variant(tiny_model, data_root, tmp_path, capsys):
    out = tmp_path / "out"
    from lorat_tracker.selftest import DATA_DIR

    args = _args(tiny_model, data_root, out)
    args[args.index("--variant") + 1] = "tiny-swiglu-224"
    args[args.index("--backbone") + 1] = str(DATA_DIR / "tiny-swiglu" / "backbone.pth")
    _fails(capsys, args, str(tiny_model.weights))
    _fails(capsys, _args(tiny_model, data_root, out, "--precision", "fp16"), "--precision")
    _fails(capsys, _args(tiny_model, data_root, out, "--batch-size", "6", "--grad-accum", "4"), "--batch-size 6")
    assert not out.exists()


def test_out_holding_another_run_or_other_files(reference, tiny_model, data_root, tmp_path, capsys):
    before = _tree(reference)
    line = _fails(capsys, _args(tiny_model, data_root, reference, "--lr", "2e-3"), "--lr 0.001", "not 0.002")
    assert str(reference) in line
    _fails(capsys, _args(tiny_model, data_root, reference, "--pairs-per-epoch", "48"), "--pairs-per-epoch 40")
    assert _tree(reference) == before
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine\n")
    _fails(capsys, _args(tiny_model, data_root, other), "not a lorat train run")
    assert sorted(p.name for p in other.iterdir()) == ["notes.txt"]


def test_unreadable_checkpoint_is_one_line(reference, tiny_model, data_root, tmp_path, capsys):
    out = tmp_path / "run"
    shutil.copytree(reference, out)
    (out / "checkpoint.pth").write_bytes((reference / "checkpoint.pth").read_bytes()[:1000])  # truncated
    before = _tree(out)
    _fails(capsys, _args(tiny_model, data_root, out), "checkpoint.pth cannot be read")
    assert _tree(out) == before


def test_a_first_short_run_shortens_the_default_warmup(tiny_model, data_root, tmp_path, capsys):
    """``--epochs 1`` without --warmup-epochs trains (the default 2 epochs of warm-up would not fit): the
    warm-up becomes half the run, one log line says so, and the rerun is the same run."""
    import json

    out = tmp_path / "short"
    recipe = ["--epochs", "1", "--pairs-per-epoch", "40", "--batch-size", "8", "--lr", "1e-3", "--device", "cpu",
              "--no-progress", "--workers", "0"]
    args = ["train", *tiny_model.cli_args(), "--data", f"folder={data_root}", "--out", out, *recipe]
    assert _main(args) == 0
    printed = capsys.readouterr().out
    notes = [line for line in printed.splitlines() if "warm-up" in line]
    assert notes == ["note: warm-up shortened to 0.5 epochs (the default 2 does not fit --epochs 1); "
                     "pass --warmup-epochs to choose"]
    assert json.loads((out / "run.json").read_text())["identity"]["warmup_epochs"] == 0.5
    # The learning rate of the 5 steps, by hand: timm's CosineLRScheduler (as the official run) with a warm-up
    # of round(0.5 x 5) = 2 iterations from --warmup-lr prefixed to a 5-iteration cosine, stepped after each
    # step (so steps 0 and 1 both run at --warmup-lr); the peak 1e-3 is reached within the run.
    lrs = [h["lr"] for h in torch.load(out / "checkpoint.pth", weights_only=True)["history"]]
    cosine = 1e-6 + 0.5 * (1e-3 - 1e-6) * (1 + math.cos(math.pi / 5))
    assert lrs == pytest.approx([1e-7, 1e-7, 1e-7 + (1e-3 - 1e-7) / 2, 1e-3, cosine], rel=1e-9)
    assert _main(args) == 0 and "is finished" in capsys.readouterr().out  # same identity on the rerun

    # An explicit --warmup-epochs that does not fit is still the user's mistake: one line, exit 2.
    explicit = tmp_path / "explicit"
    args = ["train", *tiny_model.cli_args(), "--data", f"folder={data_root}", "--out", explicit, *recipe,
            "--warmup-epochs", "2"]
    _fails(capsys, args, "--warmup-epochs must be in [0, --epochs), got 2")
    assert not explicit.exists()


def test_resume_on_changed_data_is_refused_naming_what_changed(tiny_model, tmp_path, capsys):
    """The run identity compared data paths only: deleted, added or re-annotated sequences under the same
    path resumed with no word."""
    data = tmp_path / "videos"
    sd.write_folder(data, count=4, frames=16, seed=300)
    out = tmp_path / "run"
    args = ["train", *tiny_model.cli_args(), "--data", f"folder={data}", "--out", out, "--epochs", "3",
            "--pairs-per-epoch", "8", "--batch-size", "8", "--workers", "0", "--device", "cpu", "--no-progress"]
    # Stop after epoch 1 as a user would (the test stops it by letting the run end early: --epochs in the
    # identity cannot change, so a SIGKILL at epoch 1's line stands for it).
    proc = _interrupt(args, signal.SIGKILL, "epoch 1/3", tmp_path)
    assert proc.returncode == -signal.SIGKILL
    capsys.readouterr()
    before = _tree(out)
    shutil.rmtree(data / "video_3")                                   # one sequence deleted
    gt = data / "video_1" / "groundtruth.txt"                         # one re-annotated
    lines = gt.read_text().splitlines()
    gt.write_text("\n".join(["1,1,20,20"] + lines[1:]) + "\n")
    assert _main(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "trained on other data under the same paths" in err
    assert "1 sequence(s) removed (video_3)" in err and "1 sequence(s) with edited annotations (video_1)" in err
    assert "--accept-changed-data" in err
    assert _tree(out) == before  # nothing written
    # Accepted explicitly: it resumes, says so, and keeps the new fingerprint (a second resume is silent).
    assert _main([*args, "--accept-changed-data"]) == 0
    assert "note: the data changed since this run started" in capsys.readouterr().out
