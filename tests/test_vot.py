"""VOT toolkit integration: the real ``vot`` / ``lorat vot`` commands in subprocesses, no mocks.

Offline: workspaces are built from synthetic sequences with ``list.txt`` (nothing to download), and
every subprocess gets a proxy on a closed local port so the toolkit's GitHub version check fails
at once instead of reaching the network.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("trax")
pytest.importorskip("vot")

from lorat_tracker.demo import write_vot_boxes, write_vots_masks  # noqa: E402

from lorat_tracker.boxes import rasterized_xywh  # noqa: E402
from lorat_tracker.images import read_rgb  # noqa: E402  (the OpenCV decode the TraX server uses too)
from lorat_tracker.integrations.vot.regions import mask_bbox_xywh  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
ID = "LoRAT_tiny"


def _env():
    env = dict(os.environ)
    for k in ("NO_PROXY", "no_proxy"):
        env.pop(k, None)
    env.update(HTTP_PROXY="http://127.0.0.1:9", HTTPS_PROXY="http://127.0.0.1:9",
               http_proxy="http://127.0.0.1:9", https_proxy="http://127.0.0.1:9",
               VOT_PERSISTENT_CACHE="0", PYTHONUNBUFFERED="1")
    return env


def run(*cmd, cwd=None, timeout=600) -> subprocess.CompletedProcess:
    return subprocess.run([str(c) for c in cmd], cwd=cwd, env=_env(), capture_output=True, text=True,
                          timeout=timeout)


def vot(*args, **kw):
    """The toolkit's own command line (`vot`, same interpreter)."""
    return run(sys.executable, "-m", "vot", *args, **kw)


def lorat(*args, **kw):
    return run(sys.executable, "-m", "lorat_tracker", *args, **kw)


HOOK_PTH = REPO / "integrations" / "vot" / "lorat_tracker_vot_fixes.pth"
# What site.py does with a .pth in site-packages, done explicitly (for a checkout not installed with pip).
RUN_WITH_HOOK = ("import runpy, site, sys; site.addsitedir(sys.argv.pop(1)); "
                 "runpy.run_module('vot', run_name='__main__', alter_sys=True)")


@pytest.fixture(scope="session")
def plain_vot(tmp_path_factory):
    """`vot` as users run it once lorat-tracker is installed: the interpreter's start-up runs the
    hook's .pth line from site-packages. After `pip install -e .` of this checkout (CI) that is plain
    `python -m vot`; where the installed copy is another checkout, the start-up runs this checkout's
    .pth file through site.addsitedir, the call site.py makes for site-packages, then `vot`'s main."""
    probe = run(sys.executable, "-c", "import sys, lorat_tracker; print(any(type(f).__name__ == 'VotFixFinder' "
                "for f in sys.meta_path)); print(lorat_tracker.__file__)", cwd=tmp_path_factory.mktemp("probe"))
    hooked, package = probe.stdout.split()
    if hooked == "True" and Path(package).resolve().is_relative_to(REPO):
        return vot
    site_dir = tmp_path_factory.mktemp("site")
    (site_dir / HOOK_PTH.name).write_text(HOOK_PTH.read_text())

    def vot_with_hook(*args, **kw):
        env = dict(_env(), PYTHONPATH=str(REPO))
        return subprocess.run([sys.executable, "-c", RUN_WITH_HOOK, str(site_dir), *map(str, args)],
                              env=env, capture_output=True, text=True, timeout=kw.get("timeout", 600))

    return vot_with_hook


HOOK_PROBE = """
import site, sys
mode = sys.argv[2]
site.addsitedir(sys.argv[1])                      # runs the .pth line, as at start-up
from lorat_tracker.integrations.vot import hook
loaded = sorted({m.split(".")[0] for m in sys.modules} & {"vot", "torch", "numpy", "attributee", "trax"})
if mode == "other-version":
    hook.installed_vot_version = lambda: "0.9.1"  # a toolkit without the bugs: the hook leaves it alone
import vot.experiment.multistart as ms, vot.experiment.multirun as mr, vot.tracker as tr
print(loaded, hook.is_installed(), ms.MultiStartExperiment.execute.__module__,
      mr.SupervisedExperiment.execute.__module__, tr.RealtimeTrackerRuntime.update.__module__)
"""


def ok(proc: subprocess.CompletedProcess) -> str:
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    assert "Traceback" not in out, out[-4000:]
    return out


def read_results(path: Path):
    from vot.region.io import read_trajectory

    return read_trajectory(str(path))


def kind(region) -> str:
    return type(region).__name__  # vot.region.Special / Rectangle / Mask


def frame_paths(seq_dir: Path):
    return sorted((seq_dir / "color").glob("*.jpg"))


def make_workspace(tmp: Path, stack: str, sequences: Path, tiny_model) -> Path:
    """Through the command line: `lorat vot workspace` then `lorat vot register`."""
    ws = tmp / "ws"
    ok(lorat("vot", "workspace", "--workspace", ws, "--stack", stack, "--sequences", sequences))
    ok(lorat("vot", "register", "--workspace", ws, *tiny_model.cli_args(), "--name", ID, "--device", "cpu"))
    return ws


def make_workspace_in_process(tmp: Path, stack: str, sequences: Path, tiny_model, name=ID, weights=None) -> Path:
    """The same through the Python functions (saves two interpreter start-ups)."""
    from lorat_tracker.integrations.vot.registration import register
    from lorat_tracker.integrations.vot.workspace import create_workspace

    ws = tmp / "ws"
    quiet = dict(log=lambda *_: None)
    create_workspace(ws, stack, sequences=sequences, **quiet)
    register(ws, tiny_model.variant, weights or tiny_model.weights, tiny_model.backbone, name=name, device="cpu",
             check=False, **quiet)
    return ws


@pytest.fixture(scope="module")
def box_ws(tmp_path_factory, tiny_model):
    tmp = tmp_path_factory.mktemp("vot_box")
    write_vot_boxes(tmp / "src", count=2, frames=10)
    return make_workspace(tmp, "vot2022/shorttermbox", tmp / "src", tiny_model)


@pytest.fixture(scope="module")
def mask_ws(tmp_path_factory, tiny_model):
    tmp = tmp_path_factory.mktemp("vot_mask")
    seqs = write_vots_masks(tmp / "src", count=2, frames=10, objects=2)
    return make_workspace_in_process(tmp, "tests/multiobject", tmp / "src", tiny_model), seqs


# ------------------------------------------------------------------------------ registration file

def test_registration_entry_is_absolute_and_loadable(box_ws):
    import configparser

    ini = configparser.ConfigParser()
    ini.read(box_ws / "trackers.ini")
    entry = ini[ID]
    assert entry["protocol"] == "traxpython" and entry["command"] == "lorat_tracker.integrations.vot"
    assert entry["python"] == sys.executable
    assert Path(entry["paths"]) == REPO and (Path(entry["paths"]) / "integrations" / "vot").is_dir()
    for key in ("env_lorat_vot_weights", "env_lorat_vot_backbone", "env_lorat_vot_log"):
        assert Path(entry[key]).is_absolute(), key
    assert Path(entry["env_lorat_vot_log"]).parent == box_ws / "logs"
    assert int(entry["timeout"]) >= 60
    assert entry["env_lorat_vot_multiobject"] == "1"


# ---------------------------------------------------------------------------- box stack (rectangles)

@pytest.mark.slow
def test_box_stack_plain_vot_matches_core_tracker(box_ws, tiny_model):
    """Plain `vot evaluate` (unsupervised): the answers are the core tracker's boxes, rasterized."""
    ok(vot("evaluate", "--workspace", box_ws, "--experiments", "unsupervised", ID))
    tracker = tiny_model.tracker()
    for name in ("box1", "box2"):
        seq_dir = box_ws / "sequences" / name
        result = box_ws / "results" / ID / "unsupervised" / name / f"{name}_001.bin"
        regions = read_results(result)
        gt = np.loadtxt(seq_dir / "groundtruth.txt", delimiter=",")
        paths = frame_paths(seq_dir)
        assert len(regions) == len(paths) == 10
        assert kind(regions[0]) == "Special" and regions[0].code == 1  # initialization
        tracker.initialize(read_rgb(paths[0]), gt[0])
        for k in range(1, len(paths)):
            tracker.track(read_rgb(paths[k]))
            r = regions[k]
            assert kind(r) == "Rectangle", r
            assert (r.x, r.y, r.width, r.height) == rasterized_xywh(tracker.target.box), (name, k)
        conf = np.loadtxt(result.with_name(f"{name}_001_confidence.value"))
        assert conf.shape == (10,) and np.all((conf >= 0) & (conf <= 1))


def test_start_up_hook_patches_vot_0_9_0_when_imported_and_nothing_else(tmp_path):
    (tmp_path / HOOK_PTH.name).write_text(HOOK_PTH.read_text())
    env = dict(_env(), PYTHONPATH=str(REPO))
    answers = {}
    for mode, extra in (("on", {}), ("off", {"LORAT_VOT_HOOK": "0"}), ("other-version", {})):
        proc = subprocess.run([sys.executable, "-c", HOOK_PROBE, str(tmp_path), mode], env={**env, **extra},
                              capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr[-3000:]
        answers[mode] = proc.stdout.split()
    fixed = "lorat_tracker.integrations.vot.compat"
    # Start-up imports nothing of the toolkit (or torch): the finder waits for `import vot`.
    assert answers["on"] == ["[]", "True", fixed, fixed, fixed]
    assert answers["off"][1:] == ["False", "vot.experiment.multistart", "vot.experiment.multirun", "vot.tracker"]
    assert answers["other-version"][1:] == answers["off"][1:]  # and the finder removed itself


@pytest.mark.slow
def test_box_stack_multistart_with_plain_vot_and_realtime_with_lorat_vot(box_ws, plain_vot):
    """Plain `vot evaluate` runs vot2022/shorttermbox's multistart baseline (which fails in plain 0.9.0
    with `ObjectQuery.state must be a Region`) thanks to the start-up hook; `lorat vot evaluate` then
    runs what is left (realtime), with the fixes applied in-process."""
    res = box_ws / "results" / ID
    if not (res / "unsupervised").is_dir():  # when this test runs alone
        ok(vot("evaluate", "--workspace", box_ws, "--experiments", "unsupervised", ID))
    logfile = box_ws / "logs" / f"{ID}.tracker.log"
    seen = len(logfile.read_text())
    ok(plain_vot("evaluate", "--workspace", box_ws, "--experiments", "baseline", ID))
    assert {p.name for p in (res / "baseline" / "box1").glob("*.bin")} == {"box1_00000000.bin", "box1_00000009.bin"}
    assert not (res / "realtime").exists()
    ok(lorat("vot", "evaluate", "--workspace", box_ws, ID))
    # No `vot` handshake key: one process per (experiment, sequence) serves both anchors.
    new_log = logfile.read_text()[seen:]
    assert new_log.count("INFO starting:") == 4 and new_log.count("INFO initialize:") == 8, new_log
    for exp in ("baseline", "realtime"):
        for name in ("box1", "box2"):
            fwd = read_results(res / exp / name / f"{name}_00000000.bin")
            bwd = read_results(res / exp / name / f"{name}_00000009.bin")
            assert len(fwd) == len(bwd) == 10
            assert all(kind(r) == "Rectangle" for r in list(fwd[1:]) + list(bwd[1:]))
    # The forward run from anchor 0 is the unsupervised run: same process logic, same boxes.
    for name in ("box1", "box2"):
        base = read_results(res / "baseline" / name / f"{name}_00000000.bin")
        unsup = read_results(res / "unsupervised" / name / f"{name}_001.bin")
        assert [str(r) for r in base] == [str(r) for r in unsup]

    ok(lorat("vot", "analysis", "--workspace", box_ws, "--name", "st", ID))
    report = json.loads((box_ws / "analysis" / "st.json").read_text())
    assert set(report) >= {"toolkit", "trackers", "sequences", "results"}
    assert ID in report["trackers"] and set(report["sequences"]) == {"box1", "box2"}
    results = report["results"]
    assert set(results) == {"baseline", "realtime", "unsupervised"}
    for exp in ("baseline", "realtime"):
        names = [a["name"] for a in results[exp]["parameters"]["analyses"]]
        ar = results[exp]["results"][names.index("ar")][0]
        accuracy, robustness = ar[0], ar[1]
        assert 0 < accuracy <= 1 and 0 <= robustness <= 1
    accuracy = results["unsupervised"]["results"][0][0][0]
    assert 0 < accuracy <= 1


def trax_states(output: str):
    """The (x, y, w, h) of each ``@@TRAX:state`` line that `vot test` prints."""
    states = []
    for line in output.splitlines():
        if line.startswith("@@TRAX:state"):
            states.append(tuple(float(v) for v in line.split('"')[1].split(",")))
    return states


@pytest.mark.slow
def test_vot_test_passes_and_unreadable_frame_gets_last_box(box_ws, tmp_path, tiny_model):
    """`vot test ID` on a sequence whose 4th frame is not an image: the test passes, that frame is
    answered with the last box, and tracking goes on exactly like the core tracker skipping it."""
    import shutil

    seq = tmp_path / "box1_bad"
    shutil.copytree(box_ws / "sequences" / "box1", seq)  # follows the links: a private copy
    paths = frame_paths(seq)
    good = {k: read_rgb(p) for k, p in enumerate(paths)}
    paths[3].write_bytes(b"not a jpeg")
    out = ok(vot("--registry", box_ws, "test", ID, "--sequence", seq))
    assert "Test concluded successfuly" in out  # (sic) the toolkit's spelling
    states = trax_states(out)
    assert len(states) == len(paths) == 10
    assert states[3] == states[2]
    tracker = tiny_model.tracker()
    tracker.initialize(good[0], np.loadtxt(seq / "groundtruth.txt", delimiter=",")[0])
    for k in [1, 2] + list(range(4, 10)):
        tracker.track(good[k])
        assert states[k] == rasterized_xywh(tracker.target.box), k
    log = (box_ws / "logs" / f"{ID}.tracker.log").read_text()
    assert "cannot read frame" in log and "00000004.jpg" in log


@pytest.mark.slow
def test_crash_leaves_a_log_in_the_workspace(box_ws, tiny_model):
    from lorat_tracker.integrations.vot.registration import register

    # A DINOv2 backbone passed as LoRAT weights, registered without the load check: the process dies.
    register(box_ws, tiny_model.variant, tiny_model.backbone, name="Broken", device="cpu", check=False,
             log=lambda *_: None)
    proc = vot("evaluate", "--workspace", box_ws, "--experiments", "unsupervised", "Broken")
    assert proc.returncode != 0 or "error" in (proc.stdout + proc.stderr).lower()
    log = (box_ws / "logs" / "Broken.tracker.log").read_text()
    assert "cannot start" in log and "DINOv2 backbone" in log


@pytest.mark.slow
def test_supervised_stack_with_lorat_vot(tmp_path, tiny_model):
    """VOT2013-2019 style `supervised` experiments (broken in plain 0.9.0) run with `lorat vot`."""
    write_vot_boxes(tmp_path / "src", count=1, frames=6)
    ws = make_workspace_in_process(tmp_path, "vot2018/shortterm", tmp_path / "src", tiny_model)
    assert "env_LORAT_VOT_MULTIOBJECT = 0" in (ws / "trackers.ini").read_text()  # auto: one object at a time
    ok(lorat("vot", "evaluate", "--workspace", ws, "--experiments", "baseline", ID))
    runs = sorted((ws / "results" / ID / "baseline" / "box1").glob("box1_*.bin"))
    assert [p.name for p in runs] == ["box1_001.bin", "box1_002.bin", "box1_003.bin"]  # deterministic: early stop
    regions = read_results(runs[0])
    assert len(regions) == 6 and kind(regions[0]) == "Special" and regions[0].code == 1
    assert all(kind(r) in ("Rectangle", "Special") for r in regions[1:])


# ------------------------------------------------------------------ VOTS multi-object (mask) stack

@pytest.mark.slow
def test_vots_mask_stack_batched_filled_boxes(mask_ws, tiny_model):
    """Plain `vot evaluate` + `vot analysis` on a multi-object mask stack: one batched process per
    sequence, answers are filled-box masks equal to the core tracker's batched boxes."""
    ws, seqs = mask_ws
    ok(vot("evaluate", "--workspace", ws, ID))
    tracker = tiny_model.tracker()
    for name, seq in seqs.items():
        seq_dir = ws / "sequences" / name
        paths = frame_paths(seq_dir)
        first = read_rgb(paths[0])
        targets = [tracker.new_target(first, list(map(float, mask_bbox_xywh(seq.masks[o][0])))) for o in range(2)]
        results = [read_results(ws / "results" / ID / "baseline" / name / f"{name}_obj{o + 1}_001.bin")
                   for o in range(2)]
        for k in range(1, len(paths)):
            tracker.step(targets, read_rgb(paths[k]))
            for o in range(2):
                r = results[o][k]
                assert kind(r) == "Mask", r
                assert r.mask.all(), "a filled box"
                box = mask_bbox_xywh(r.mask, r.offset)
                assert box == rasterized_xywh(targets[o].box), (name, o, k)
    log = (ws / "logs" / f"{ID}.tracker.log").read_text()
    assert log.count("initialize: 2 object(s) (mask, mask)") == 2  # both objects in one session
    assert log.count("INFO starting:") == 2  # one process per sequence
    assert log.index("loaded from") < log.index("TraX handshake done")  # model loaded before the handshake

    ok(vot("analysis", "--workspace", ws, "--name", "vots", ID))
    report = json.loads((ws / "analysis" / "vots.json").read_text())
    exp = report["results"]["baseline"]
    names = [a["name"] for a in exp["parameters"]["analyses"]]
    quality = exp["results"][names.index("Quality")][0][0]
    assert 0 < quality <= 1
    assert set(report["sequences"]) == set(seqs)


# --------------------------------------------------------------------------- failures and mistakes

@pytest.mark.parametrize("case", ["missing-weights", "unknown-variant", "missing-workspace"])
def test_bad_registration_arguments_give_one_clear_line(tmp_path, tiny_model, case, capsys):
    from lorat_tracker.cli import main

    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "config.yaml").write_text("registry:\n- ./trackers.ini\nstack: tests/basic\n")
    args = {"workspace": str(ws), "variant": tiny_model.variant, "weights": str(tiny_model.weights)}
    expected = {"missing-weights": "does not exist", "unknown-variant": "unknown variant",
                "missing-workspace": "does not exist"}[case]
    if case == "missing-weights":
        args["weights"] = str(tmp_path / "nope.bin")
    elif case == "unknown-variant":
        args["variant"] = "Z-999"
    else:
        args["workspace"] = str(tmp_path / "no-such-ws")
    argv = ["vot", "register", "--workspace", args["workspace"], "--variant", args["variant"],
            "--weights", args["weights"], "--name", ID]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("lorat vot: error:") and expected in err[0], err
    assert not (ws / "trackers.ini").exists()


@pytest.mark.slow
def test_bad_registration_subprocess_has_no_traceback(tmp_path, tiny_model):
    proc = lorat("vot", "register", "--workspace", tmp_path, "--variant", tiny_model.variant,
                 "--weights", tmp_path / "missing.bin")
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert "not a VOT workspace" in lines[0]


def test_register_updates_own_section_and_keeps_others(tmp_path, tiny_model):
    from lorat_tracker.integrations.vot.registration import register

    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "config.yaml").write_text("stack: tests/basic\n")  # no registry: register adds it
    other = "; my trackers\n[NCC]\nlabel = NCC\nprotocol = traxpython\ncommand = ncc_tracker\n"
    (ws / "trackers.ini").write_text(other)
    quiet = dict(log=lambda *_: None, check=False)
    register(ws, tiny_model.variant, tiny_model.weights, tiny_model.backbone, name=ID, device="cpu", **quiet)
    register(ws, tiny_model.variant, tiny_model.weights, tiny_model.backbone, name=ID, precision="fp32",
             **quiet)
    text = (ws / "trackers.ini").read_text()
    assert text.startswith(other)
    assert text.count(f"[{ID}]") == 1 and "env_LORAT_VOT_PRECISION = fp32" in text
    assert "env_LORAT_VOT_DEVICE" not in text  # the update replaced the whole section
    import yaml

    assert yaml.safe_load((ws / "config.yaml").read_text())["registry"] == ["./trackers.ini"]


def test_register_names_the_command_that_works_here(tmp_path, tiny_model, monkeypatch):
    from lorat_tracker.integrations.vot import hook
    from lorat_tracker.integrations.vot.registration import register

    write_vot_boxes(tmp_path / "src", count=1, frames=3)
    from lorat_tracker.integrations.vot.workspace import create_workspace

    ws = create_workspace(tmp_path / "ws", "vot2022/shorttermbox", sequences=tmp_path / "src", log=lambda *_: None)
    for hooked, command in ((True, "run it:   vot evaluate --workspace"),
                            (False, "run it:   lorat vot evaluate --workspace")):
        monkeypatch.setattr(hook, "is_installed", lambda: hooked)
        lines = []
        register(ws, tiny_model.variant, tiny_model.weights, tiny_model.backbone, name=ID, check=False,
                 log=lines.append)
        assert any(line.startswith(command) for line in lines), lines
    assert "LORAT_VOT_HOOK" in lines[-2]  # says why plain `vot` would fail here


def test_rasterization_matches_official_rule():
    assert rasterized_xywh([10.3, 20.0, 50.7, 60.0]) == (10, 20, 41, 40)
    assert rasterized_xywh([0.0, 0.0, 10.0, 10.0]) == (0, 0, 10, 10)  # covers pixels 0..9
    assert rasterized_xywh([5.99995, 1.0, 7.00001, 2.5]) == (5, 1, 2, 2)
    mask = np.zeros((8, 9), dtype=np.uint8)
    mask[2:5, 3:7] = 1
    assert mask_bbox_xywh(mask, (10, 20)) == (13, 22, 4, 3)
    assert mask_bbox_xywh(np.zeros((3, 3), dtype=np.uint8)) is None


def test_workspace_helper_is_offline_and_leaves_sources_untouched(tmp_path):
    from lorat_tracker.integrations.vot.registration import WorkspaceError
    from lorat_tracker.integrations.vot.workspace import create_workspace

    write_vot_boxes(tmp_path / "src", count=2, frames=4)
    for name in ("box1", "box2"):
        (tmp_path / "src" / name / "anchor.value").unlink()
        (tmp_path / "src" / name / "sequence").unlink()
    before = sorted(p.relative_to(tmp_path / "src") for p in (tmp_path / "src").rglob("*"))
    ws = create_workspace(tmp_path / "ws", "vot2022/shorttermbox", sequences=tmp_path / "src", log=lambda *_: None)
    assert sorted(p.relative_to(tmp_path / "src") for p in (tmp_path / "src").rglob("*")) == before
    assert (ws / "sequences" / "list.txt").read_text().split() == ["box1", "box2"]  # never downloads
    for name in ("box1", "box2"):
        seq = ws / "sequences" / name
        assert (seq / "anchor.value").read_text().split() == ["1", "0", "0", "0"]  # multistart needs anchors
        assert "channels.color=color/%08d.jpg" in (seq / "sequence").read_text()
    demo = create_workspace(tmp_path / "demo", "tests/multiobject", demo=1, demo_objects=2, demo_length=3,
                            log=lambda *_: None)
    assert "name=demo1" in (demo / "sequences" / "demo1" / "sequence").read_text()
    assert len(list((demo / "sequences" / "demo1").glob("groundtruth_*.txt"))) == 2
    with pytest.raises(WorkspaceError, match="already a VOT workspace"):
        create_workspace(ws, "vot2022/shorttermbox", demo=1, log=lambda *_: None)
    with pytest.raises(WorkspaceError, match="unknown stack"):
        create_workspace(tmp_path / "other", "vot2099/nothing", demo=1, log=lambda *_: None)


def test_report_label_says_backend_and_precision_or_what_the_user_chose(box_ws, tiny_model):
    """Every backend showed as 'LoRAT tiny-mlp-224' in the toolkit's reports."""
    import configparser

    from lorat_tracker.integrations.vot.registration import register
    from lorat_tracker.spec import TrackerSpec

    spec = TrackerSpec(variant=tiny_model.variant, weights=str(tiny_model.weights),
                       backbone=str(tiny_model.backbone), device="cpu")
    register(box_ws, spec.replace(precision="fp32"), name="LoRAT_fp32", check=False, log=lambda *_: None)
    register(box_ws, spec, name="LoRAT_mine", check=False, log=lambda *_: None, label="my LoRAT")
    ini = configparser.ConfigParser()
    ini.read(box_ws / "trackers.ini")
    assert ini["LoRAT_fp32"]["label"] == "LoRAT tiny-mlp-224 (fp32)"
    assert ini["LoRAT_mine"]["label"] == "my LoRAT"
    assert ini[ID]["label"] == "LoRAT tiny-mlp-224"
