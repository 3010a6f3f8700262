"""A tiny end-to-end ``lorat train`` on generated videos, validated on 12 held-out generated sequences in
the GOT-10k val layout (the official validation source): the losses fall, the fine-tuned model tracks the
videos it was trained on better (GOT-10k toolkit AO, through ``lorat eval``) than the bundled model it
started from, and the evaluation of the held-out sequences before and after is in metrics.csv and in
the printed tables.

Every threshold holds with a measured margin on each CPU kind the project meets, not on one: the run
was repeated with seeds 0, 1, 2 under the AVX-512 kernels and under the AVX2-only ones (what an AMD
Zen 3 runs: ATEN_CPU_CAPABILITY=avx2 MKL_ENABLE_INSTRUCTIONS=AVX2 ONEDNN_MAX_CPU_ISA=AVX2 reproduced a
Zen 3's numbers exactly). Other kernels sum in another order, and 256 steps of training amplify that:

    seed / kernels        val loss start -> end   AO training videos   AO 12 held-out   AO 48 held-out
    0 AVX-512 / AVX2      11.62 -> 1.581 / 1.581  0.085 -> .147/.140   .179 -> .233/.195 .219 -> .227/.215
    1 AVX-512 / AVX2      11.34 -> 1.613 / 1.613  0.085 -> .145/.157   .179 -> .245/.236 .219 -> .211/.217
    2 AVX-512 / AVX2      11.01 -> 1.564 / 1.564  0.085 -> .122/.129   .179 -> .239/.217 .219 -> .218/.213

The losses agree to 3 digits on every kernel; a tracker's AO does not (one flipped argmax sends a weak
tracker elsewhere for the rest of a sequence). The random-weight test backbone learns its training
videos (AO +0.037 to +0.072) but does not measurably generalise: on 48 held-out sequences the AO stays
at 0.21-0.23. The 12-sequence gain that this test asserted before (>= 0.03) was that sample's luck and
failed on a Zen 3 (0.195). So the held-out AO is asserted only not to collapse."""
from __future__ import annotations

import csv
import json

import pytest

pytest.importorskip("got10k")

from lorat_tracker import demo as sd  # noqa: E402
from run_cli import run_lorat  # noqa: E402

HELD_OUT = 12      # AO over fewer sequences jumps with a single lost target
OBJECT_CELLS = 16  # a busy object texture: the random-weight test backbone can tell it from the background
VIDEOS = dict(count=16, frames=40, seed=1000, object_cells=OBJECT_CELLS)


def _ao(tmp_path, name, weights, tiny_model, root):
    """The GOT-10k toolkit's AO of ``weights`` on the GOT-10k-layout ``root``, through ``lorat eval``."""
    args = [a if a != str(tiny_model.weights) else str(weights) for a in tiny_model.cli_args()]
    proc = run_lorat("eval", "got10k-val", "--root", root, *args, "--device", "cpu", "--name", name,
                     "--results", tmp_path / "results", "--reports", tmp_path / "reports", timeout=600)
    assert proc.returncode == 0, proc.stderr
    with open(tmp_path / "reports" / "GOT-10k" / name / "performance.json") as f:
        return json.load(f)[name]["overall"]["ao"]


@pytest.mark.slow
def test_fine_tuning_on_generated_videos_learns_them_and_keeps_held_out_tracking(tiny_model, tmp_path):
    sd.write_folder(tmp_path / "videos", **VIDEOS)
    # The same videos in the GOT-10k layout, for `lorat eval` (same render seeds: the same frames and boxes).
    sd.write_got10k(tmp_path / "videos-got10k", subset="val", **VIDEOS)
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
    # The random-weight test model starts with badly calibrated scores (validation loss ~11); measured end
    # over start 0.136-0.142 on every seed and kernel above, so 0.3 has a margin of 2x.
    assert float(rows[2]["loss"]) < float(rows[1]["loss"])
    assert float(rows[2]["val_loss"]) < 0.3 * float(rows[0]["val_loss"])
    assert rows[1]["val_AO"] == ""  # evaluated every 2 epochs only

    # It learns the videos it was trained on: measured +0.037 to +0.072 (seed 0: +0.055 / +0.062).
    videos = tmp_path / "videos-got10k"
    before = _ao(tmp_path, "start", tiny_model.weights, tiny_model, videos)
    after = _ao(tmp_path, "trained", out / "lorat.bin", tiny_model, videos)
    start, trained = float(rows[0]["val_AO"]), float(rows[2]["val_AO"])
    print(f"AO on the training videos: {before:.3f} -> {after:.3f}; held out: {start:.3f} -> {trained:.3f}")
    assert after > before + 0.02
    # Held out, tracking does not collapse: measured +0.016 to +0.066 on these 12 sequences.
    assert trained > start - 0.02
