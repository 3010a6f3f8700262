"""benchmarks/speed.py reports progress while it runs (a B-224 run on a CPU takes minutes) and its x of the floor;
benchmarks/roofline.py the floor itself."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from run_cli import REPO


@pytest.mark.slow
def test_speed_benchmark_shows_progress_on_stderr():
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / "speed.py"), "--variant", "tiny-mlp-224",
                           "--precision", "fp32,bf16", "--frames", "2", "--warmup", "1", "--iou-frames", "2"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    err = proc.stderr.replace("\r", "\n")
    assert "building tiny-mlp-224" in err
    assert "warm-up (fp32/b1, bf16/b1): 100%" in err and "1/1" in err
    assert "timing (fp32/b1, bf16/b1): 100%" in err and "2/2" in err
    assert "bf16 vs fp32 boxes: 100%" in err and "8/8" in err
    assert "FPS" in proc.stdout and "100%" not in proc.stdout  # the table stays clean on stdout
    assert "x floor" in proc.stdout and "floor fp32:" in proc.stdout  # measured in the same run


@pytest.mark.slow
def test_roofline_benchmark_prints_the_floor_of_each_variant(tmp_path):
    out = tmp_path / "roofline.json"
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / "roofline.py"), "--variant",
                           "tiny-mlp-224,tiny-swiglu-378", "--seconds", "0.05", "--json", str(out)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(out.read_text())
    assert [v["variant"] for v in report["variants"]] == ["tiny-mlp-224", "tiny-swiglu-378"]
    assert report["rates"]["fp32"]["torch"] > 0 and report["variants"][0]["floor_ms"]["fp32"] > 0
    assert "square 2048 GEMM fp32: torch" in proc.stdout
