"""The bundled configs and self-test data are found after a non-editable install (from a wheel)."""
from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_wheel_carries_configs_and_selftest_data(tmp_path):
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                    "-w", str(tmp_path / "dist"), str(REPO)], check=True, timeout=300,
                   cwd=tmp_path, capture_output=True)
    wheel = next((tmp_path / "dist").glob("lorat_tracker-*.whl"))
    site = tmp_path / "site"
    with zipfile.ZipFile(wheel) as z:
        names = z.namelist()
        z.extractall(site)
    assert "lorat_tracker/configs/B-224.yaml" in names
    assert not any(n.startswith("integrations/") for n in names)  # no top-level package to collide with
    assert "lorat_tracker/selftest_data/tiny-mlp/lorat.bin" in names
    assert any(n.startswith("lorat_tracker/integrations/vot/") for n in names)
    for split in ("got10k_vot_train_split.txt", "got10k_vot_val_split.txt", "lasot_test_split.txt"):
        assert f"lorat_tracker/data/{split}" in names  # the dataset readers' split lists
    code = ("import lorat_tracker, lorat_tracker.config as c; "
            "assert lorat_tracker.__file__.startswith(%r), lorat_tracker.__file__; "
            "assert 'g-378' in c.available_variants(); print(c.load_config('g-378').search_grid)" % str(site))
    env = dict(os.environ, PYTHONPATH=str(site))
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "27"
