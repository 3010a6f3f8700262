"""The bundled configs and self-test data are found after a non-editable install (from a wheel), and
both installs (wheel and editable) carry the VOT start-up hook at the top of site-packages."""
from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
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

    # The VOT start-up hook: a .pth at the wheel's root (= the top of site-packages), the repository's file.
    hook = REPO / "integrations" / "vot" / "lorat_tracker_vot_fixes.pth"
    assert hook.name in names and (site / hook.name).read_text() == hook.read_text()
    # -S: no site-packages at start-up (where an installed copy's hook may run), then the wheel's
    # folder processed as site-packages is: its .pth line must install the finder from the wheel's code.
    code = ("import site, sys; assert not any(type(f).__name__ == 'VotFixFinder' for f in sys.meta_path); "
            "site.addsitedir(%r); import lorat_tracker; "
            "assert lorat_tracker.__file__.startswith(%r), lorat_tracker.__file__; "
            "print(any(type(f).__name__ == 'VotFixFinder' for f in sys.meta_path))" % (str(site), str(site)))
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "LORAT_VOT_HOOK")}
    out = subprocess.run([sys.executable, "-S", "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "True", out.stderr


def test_editable_install_carries_the_vot_hook(tmp_path):
    # What `pip install -e .` installs (CI does that): setuptools' PEP 660 editable wheel of this checkout.
    code = "import sys; from setuptools import build_meta; print(build_meta.build_editable(sys.argv[1]))"
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path)], cwd=REPO, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    with zipfile.ZipFile(tmp_path / out.stdout.strip().splitlines()[-1]) as z:
        names = z.namelist()
        assert "lorat_tracker_vot_fixes.pth" in names, names
        assert z.read("lorat_tracker_vot_fixes.pth").decode() == \
            (REPO / "integrations" / "vot" / "lorat_tracker_vot_fixes.pth").read_text()


def test_hook_line_is_silent_without_the_hook_module(tmp_path):
    """The .pth line runs at every Python start-up: a lorat_tracker on sys.path that lacks the hook
    (an older checkout on PYTHONPATH) must neither print site.py's error nor fail; with the hook
    module present the finder is installed."""
    hook = REPO / "integrations" / "vot" / "lorat_tracker_vot_fixes.pth"
    site_dir = tmp_path / "site"
    site_dir.mkdir()
    (site_dir / hook.name).write_text(hook.read_text())
    old = tmp_path / "old" / "lorat_tracker"
    old.mkdir(parents=True)
    (old / "__init__.py").write_text("")
    code = ("import site, sys; sys.path.insert(0, %r); site.addsitedir(%r); "
            "print(any(type(f).__name__ == 'VotFixFinder' for f in sys.meta_path))")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "LORAT_VOT_HOOK")}
    for first, expected in ((old.parent, "False"), (REPO, "True")):
        out = subprocess.run([sys.executable, "-S", "-c", code % (str(first), str(site_dir))], env=env,
                             capture_output=True, text=True, timeout=60)
        assert out.returncode == 0 and out.stderr == "", out.stderr
        assert out.stdout.strip() == expected
