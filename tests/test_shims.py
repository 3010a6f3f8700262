"""Other libraries' private APIs stay behind one shim module per library; the tracker's own hook is public."""
from __future__ import annotations

import ast

import numpy as np
import pytest

from run_cli import REPO

# library -> the one module of this project allowed to touch its private names
SHIMS = {"got10k": "integrations/got10k/compat.py", "vot": "integrations/vot/shim.py",
         "segment_anything": "lorat_tracker/segmentation/sam_shim.py"}


def private_uses(path):
    """(library, name) for each private name of a SHIMS library the file imports or reaches."""
    tree = ast.parse(path.read_text())
    aliases, found = {}, []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                if a.name.split(".")[0] in SHIMS:
                    aliases[(a.asname or a.name).split(".")[0]] = a.name.split(".")[0]
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] in SHIMS:
            lib = node.module.split(".")[0]
            for a in node.names:
                if a.name.startswith("_"):
                    found.append((lib, a.name))
                aliases[a.asname or a.name] = lib
        elif isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "import_module" and node.args \
                and isinstance(node.args[0], ast.Constant) and str(node.args[0].value).split(".")[0] in SHIMS:
            found.append((str(node.args[0].value).split(".")[0], "import_module"))  # resolved below by name
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__"):
            base = node.value
            while isinstance(base, ast.Attribute):
                base = base.value
            if isinstance(base, ast.Name) and base.id in aliases:
                found.append((aliases[base.id], node.attr))
    return [f for f in found if f[1] != "import_module"]


def test_no_private_api_of_got10k_vot_or_segment_anything_outside_its_shim():
    offenders = []
    for folder in ("lorat_tracker", "integrations", "benchmarks"):
        for path in sorted((REPO / folder).rglob("*.py")):
            rel = str(path.relative_to(REPO))
            for lib, name in private_uses(path):
                if SHIMS[lib] != rel:
                    offenders.append(f"{rel}: {lib} {name}")
    assert not offenders, offenders
    assert ("segment_anything", "_build_sam") not in private_uses(REPO / "lorat_tracker/segmentation/checkpoint.py")


def test_the_scan_finds_a_private_use(tmp_path):
    f = tmp_path / "m.py"
    f.write_text("from got10k.experiments import ExperimentGOT10k\nfrom vot.dataset.dummy import _generate\n"
                 "ExperimentGOT10k._evaluate(None, 1, 2)\n")
    assert sorted(private_uses(f)) == [("got10k", "_evaluate"), ("vot", "_generate")]


def test_got10k_scores_equal_the_toolkits_own():
    pytest.importorskip("got10k")
    from got10k.experiments import ExperimentGOT10k

    from lorat_tracker.integrations.got10k.training import got10k_scores

    rng = np.random.default_rng(0)
    for n in (1, 7, 500):
        ious = rng.random(n)
        ious[::3] = 0.75  # on the thresholds: strict > as the toolkit
        ious[::5] = 0.5
        ao, sr, _, curve = ExperimentGOT10k._evaluate(None, ious, np.zeros(0))
        assert got10k_scores(ious) == (float(ao), float(sr), float(curve[75]))


def test_shims_say_in_one_line_when_the_private_api_changed(monkeypatch):
    pytest.importorskip("segment_anything")
    import importlib

    build_sam = importlib.import_module("segment_anything.build_sam")  # the package's build_sam is a function

    from lorat_tracker.segmentation.checkpoint import SamNotInstalledError
    from lorat_tracker.segmentation.sam_shim import build_empty_sam

    monkeypatch.delattr(build_sam, "_build_sam")
    with pytest.raises(SamNotInstalledError, match="no _build_sam.*as version 1.0 has"):
        build_empty_sam(768, 12, 12, (2, 5, 8, 11))
    pytest.importorskip("vot")
    from vot.dataset import dummy

    from lorat_tracker.cli import UsageError
    from lorat_tracker.integrations.vot.shim import generate_dummy_sequence

    monkeypatch.setattr(dummy, "_generate", lambda path, n: None)
    with pytest.raises(UsageError, match="or pass --sequences instead of --demo"):
        generate_dummy_sequence("x", 3)


def test_recording_network_inputs_is_a_public_hook(tiny_model):
    from lorat_tracker.demo import render_sequence

    tracker = tiny_model.tracker(precision="fp32")
    seq = render_sequence(3)
    seen = []
    with tracker.recording_network_inputs(lambda z, x, m: seen.append((tuple(z.shape), tuple(x.shape)))):
        tracker.initialize(seq.frames[0], seq.boxes[0, 0])
        tracker.track(seq.frames[1])
    tracker.track(seq.frames[2])  # outside the block: not recorded
    assert seen == [((1, 3, 112, 112), (1, 3, 224, 224))]
