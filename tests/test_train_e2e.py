"""A tiny end-to-end ``lorat train`` on generated videos, validated on 12 held-out generated sequences
in the GOT-10k val layout (the official validation source): the losses fall, and the fine-tuned
model tracks the held-out sequences better (GOT-10k toolkit AO) than the bundled model it started
from, with the evaluation of both in metrics.csv and in the printed tables."""
from __future__ import annotations

import csv

import pytest

pytest.importorskip("got10k")

from lorat_tracker import demo as sd  # noqa: E402
from run_cli import run_lorat  # noqa: E402

HELD_OUT = 12      # AO over fewer sequences jumps with a single lost target
OBJECT_CELLS = 16  # a busy object texture: the random-weight test backbone can tell it from the background


@pytest.mark.slow
def test_fine_tuning_on_generated_videos_tracks_held_out_ones_better(tiny_model, tmp_path):
    sd.write_folder(tmp_path / "videos", count=16, frames=40, seed=1000, object_cells=OBJECT_CELLS)
    sd.write_got10k(tmp_path / "GOT-10k", subset="val", count=HELD_OUT, frames=20, seed=5000,
                    object_cells=OBJECT_CELLS)
    out = tmp_path / "run"
    # 4,096 pairs, batch 16, lr 3e-3 decaying (cosine) to 1e-4: ~2 min on one core of a busy machine.
    # In a process of its own, as a user runs it (and as every run with data workers in this suite: a
    # process that had run OpenVINO crashed when it later started DataLoader workers, see conftest.py).
    proc = run_lorat("train", *tiny_model.cli_args(), "--data", f"folder={tmp_path / 'videos'}",
                     "--val", f"got10k={tmp_path / 'GOT-10k'}", "--out", out, "--epochs", "2",
                     "--pairs-per-epoch", "2048", "--batch-size", "16", "--lr", "3e-3", "--min-lr", "1e-4",
                     "--warmup-epochs", "0", "--val-pairs", "48", "--eval-every", "2", "--workers", "1",
                     "--device", "cpu", "--no-progress", timeout=900)
    text = proc.stdout
    assert proc.returncode == 0, proc.stderr
    assert "tracking evaluation of the starting weights (12 sequences, 228 frames)" in text
    assert "tracking evaluation after epoch 2 (12 sequences, 228 frames)" in text

    with open(out / "metrics.csv", newline="") as f:
        rows = {int(r["epoch"]): r for r in csv.DictReader(f)}
    assert sorted(rows) == [0, 1, 2]
    # The random-weight test model starts with badly calibrated scores (validation loss ~11).
    assert float(rows[2]["loss"]) < float(rows[1]["loss"])
    assert float(rows[2]["val_loss"]) < 0.3 * float(rows[0]["val_loss"])
    assert rows[1]["val_AO"] == ""  # evaluated every 2 epochs only
    start, trained = float(rows[0]["val_AO"]), float(rows[2]["val_AO"])
    print(f"held-out AO: start {start:.3f}, fine-tuned {trained:.3f}")
    # Measured with --seed 0 / 1 / 2 (other pair samples and augmentations): 0.179 -> 0.233 / 0.245 /
    # 0.239, so a gain of at least 0.05 on every seed tried; about half of it is asserted. (Kept constant
    # at 3e-3 to the end instead, the final AO scattered: 0.272 / 0.270 / 0.160.)
    assert trained > start + 0.03
