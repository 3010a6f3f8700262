"""A non-torch backend through every entry point that builds a tracker (issue 15's harness paths).

``lorat track``, ``lorat eval --batch-size``, ``lorat vot register`` + a real ``vot evaluate``,
pytracking (``LORAT_BACKEND``), a real GOT-10k experiment and the OpenCV adapter, each with the ONNX
file of the tiny model on ONNX Runtime or OpenVINO, against torch fp32 on the same frames; and the
command line's one-line refusals (exit 2) of every backend mistake. The ONNX file is exported once
per session (``tiny_onnx``).
"""
from __future__ import annotations

import configparser
import os
import sys
from pathlib import Path

import numpy as np
import pytest

from run_cli import REPO, box_arg, run_lorat

from lorat_tracker import LoRATTracker
from lorat_tracker.cli import main as lorat_main
from lorat_tracker.demo import render_sequence, write_lasot
from lorat_tracker.spec import TrackerSpec

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
pytest.importorskip("openvino")

BOX_TOLERANCE_PX = 1e-4  # fp32 backend vs torch fp32: the bound
# Result files print 3 decimals: two boxes within BOX_TOLERANCE_PX may straddle a rounding boundary
# and print one unit of the last decimal apart (as tests/test_cli_eval_batched.py allows).
PRINTED_TOLERANCE_PX = 0.001 + BOX_TOLERANCE_PX


@pytest.fixture(scope="session")
def tiny_onnx(tmp_path_factory, tiny_model):
    """The tiny model as a dynamic-batch ONNX file (``lorat export --format onnx --dynamic-batch``)."""
    from lorat_tracker.backends.onnx_file import export_onnx
    from lorat_tracker.weights import build_model

    path = tmp_path_factory.mktemp("harness_onnx") / "tiny-mlp-224.onnx"
    export_onnx(build_model(tiny_model.variant, weights=tiny_model.weights, backbone=tiny_model.backbone),
                path, batch=None)
    return path


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    """A 10-frame sequence as a folder of PNGs, with its first box."""
    import cv2

    root = tmp_path_factory.mktemp("harness_clip")
    seq = render_sequence(num_frames=10, size_wh=(320, 240), seed=3)
    for k, frame in enumerate(seq.frames):
        cv2.imwrite(str(root / f"{k:04d}.png"), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    return root, seq


def read_rows(path: Path) -> np.ndarray:
    return np.loadtxt(path, delimiter=",", ndmin=2)


# ------------------------------------------------------------------------------------ lorat track

def test_track_onnxruntime_matches_torch(clip, tiny_model, tiny_onnx, tmp_path, capsys):
    folder, seq = clip
    box = box_arg(seq.boxes[0, 0])
    assert lorat_main(["track", str(folder), "--box", box, *tiny_model.cli_args(), "--device", "cpu",
                       "--precision", "fp32", "--no-progress", "--output", str(tmp_path / "torch.txt")]) == 0
    # as a user runs it, in its own process: no --variant / --backbone, the file carries them
    r = run_lorat("track", folder, "--box", box, "--backend", "onnxruntime", "--weights", tiny_onnx,
                  "--no-progress", "--output", tmp_path / "ort.txt")
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr
    want, got = read_rows(tmp_path / "torch.txt"), read_rows(tmp_path / "ort.txt")
    assert got.shape == want.shape == (10, 5)
    np.testing.assert_allclose(got, want, rtol=0, atol=PRINTED_TOLERANCE_PX)
    # ... and the unprinted boxes of the same backend within the bound
    torch_tracker = tiny_model.tracker(precision="fp32")
    ort = LoRATTracker.from_pretrained(None, weights=tiny_onnx, backend="onnxruntime")
    torch_tracker.initialize(seq.frames[0], seq.boxes[0, 0])
    ort.initialize(seq.frames[0], seq.boxes[0, 0])
    for frame in seq.frames[1:]:
        np.testing.assert_allclose(ort.track(frame).box, torch_tracker.track(frame).box, rtol=0,
                                   atol=BOX_TOLERANCE_PX)


# ------------------------------------------------------------------------------- bad inputs, CLI

@pytest.fixture(scope="module")
def bad_files(tiny_onnx, tmp_path_factory):
    import json

    import onnx

    folder = tmp_path_factory.mktemp("harness_bad")
    truncated = folder / "truncated.onnx"
    truncated.write_bytes(tiny_onnx.read_bytes()[: tiny_onnx.stat().st_size // 2])
    proto = onnx.load(str(tiny_onnx))
    for p in proto.metadata_props:
        if p.key == "config":
            config = json.loads(p.value)
            config["tracking"]["window_penalty"] = 0.3
            p.value = json.dumps(config)
    edited = folder / "edited.onnx"
    onnx.save_model(proto, str(edited))
    return {"truncated": truncated, "edited": edited}


BAD = [  # (extra arguments, the one line's pattern); "{onnx}" is the good export
    (["--backend", "tflite", "--weights", "{onnx}"],
     "argument --backend: invalid choice: 'tflite' (choose from 'torch', 'onnxruntime', 'openvino', 'tensorrt')"),
    (["--backend", "tensorrt", "--weights", "{onnx}"], "backend tensorrt runs on CUDA GPUs only, not on cpu"),
    (["--backend", "tensorrt", "--weights", "{onnx}", "--device", "cpu"], "backend tensorrt runs on CUDA GPUs only"),
    (["--backend", "openvino", "--precision", "fp16", "--weights", "{onnx}"],
     "--precision fp16 does not run on --backend openvino: use auto or fp32 or bf16 or int8"),
    (["--backend", "onnxruntime", "--compile", "on", "--weights", "{onnx}"],
     "--compile on applies to --backend torch only - leave it out for --backend onnxruntime"),
    (["--backend", "onnxruntime", "--variant", "tiny-swiglu-224", "--weights", "{onnx}"],
     "was exported for variant tiny-mlp-224 (224 px search region) but tiny-swiglu-224 (224 px) was asked"),
    (["--backend", "openvino", "--variant", "tiny-mlp-378", "--weights", "{onnx}"],
     "was exported for variant tiny-mlp-224 (224 px search region) but tiny-mlp-378 (378 px) was asked"),
    (["--backend", "onnxruntime", "--weights", "{truncated}"], "the file is truncated or corrupt"),
    (["--backend", "openvino", "--weights", "{edited}"], "was edited or damaged after export"),
    (["--backend", "torch", "--weights", "{onnx}"], "is an ONNX export: run it with --backend onnxruntime, --backend openvino or --backend tensorrt"),
    (["--weights", "{onnx}"], "is an ONNX export: run it with --backend onnxruntime, --backend openvino or --backend tensorrt"),
]


@pytest.fixture(scope="module")
def lasot_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("harness_lasot")
    write_lasot(root, frames=4)
    return root


@pytest.mark.parametrize("args,pattern", BAD, ids=[f"{i}" for i in range(len(BAD))])
@pytest.mark.parametrize("command", ["track", "eval"])
def test_backend_mistakes_are_one_line_exit_2(command, args, pattern, clip, lasot_root, tiny_onnx, bad_files,
                                              tmp_path, capsys, monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # the CPU case, also on a GPU machine
    files = {"onnx": tiny_onnx, **bad_files}
    args = [a.format(**{k: str(v) for k, v in files.items()}) for a in args]
    if command == "track":
        argv = ["track", str(clip[0]), "--box", "10,10,40,30", "--no-progress", "--output", str(tmp_path / "b.txt")]
    else:
        argv = ["eval", "lasot", "--root", str(lasot_root), "--results", str(tmp_path / "r"), "--reports",
                str(tmp_path / "r")]
    try:
        rc = lorat_main(argv + args)
    except SystemExit as e:  # argparse's own refusal (usage lines, then one error line)
        rc = e.code
    err = capsys.readouterr().err
    assert rc == 2, err
    assert "Traceback" not in err
    errors = [line for line in err.splitlines() if "error:" in line]
    assert len(errors) == 1 and pattern in errors[0], err
    assert err.strip().splitlines()[-1] == errors[0]
    if command == "track" and "invalid choice" not in pattern:
        assert len(err.strip().splitlines()) == 1, err  # eval may have said what it found and loads first
    assert not (tmp_path / "b.txt").exists()
    assert not list((tmp_path / "r").rglob("*.txt")) if (tmp_path / "r").exists() else True  # nothing tracked


MISSING_RUNTIME = ("import sys; sys.modules['onnxruntime'] = None; "
                   "from lorat_tracker.cli import main; sys.exit(main(sys.argv[1:]))")


def test_missing_runtime_names_the_extra(clip, tiny_onnx, tmp_path):
    import subprocess

    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
    r = subprocess.run([sys.executable, "-c", MISSING_RUNTIME, "track", str(clip[0]), "--box", "10,10,40,30",
                        "--backend", "onnxruntime", "--weights", str(tiny_onnx), "--no-progress"],
                       env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and 'install it with: pip install "lorat-tracker[onnx]"' in lines[0], r.stderr
    assert "backend onnxruntime needs the onnxruntime package" in lines[0]


# ------------------------------------------------------------------------------ pytracking, OpenCV

def test_pytracking_runs_the_backend_of_LORAT_BACKEND(tiny_onnx, tiny_model, monkeypatch):
    from lorat_tracker.integrations.pytracking import LoRATPytracking, clear_network_cache, params_from_env
    from lorat_tracker.integrations.pytracking.tracker import load_network

    seq = render_sequence(num_frames=6, size_wh=(320, 240), seed=7)
    monkeypatch.setenv("LORAT_BACKEND", "onnxruntime")
    monkeypatch.setenv("LORAT_WEIGHTS", str(tiny_onnx))
    params = params_from_env(None, None)  # the `export` parameter file: the variant is the file's
    assert (params.backend, params.weights, params.variant) == ("onnxruntime", str(tiny_onnx), None)
    clear_network_cache()
    tracker = LoRATPytracking(params)
    tracker.initialize(seq.frames[0], {"init_bbox": list(seq.boxes[0, 0])})
    assert tracker.tracker.backend == "onnxruntime" and tracker.tracker.model is None
    boxes = [tracker.track(f)["target_bbox"] for f in seq.frames[1:]]
    reference = tiny_model.tracker(precision="fp32")
    reference.initialize(seq.frames[0], seq.boxes[0, 0])
    np.testing.assert_allclose(boxes, [reference.track(f).box for f in seq.frames[1:]], rtol=0,
                               atol=BOX_TOLERANCE_PX)
    # The network cache keys on the backend: the same file on OpenVINO is another network.
    same = load_network(TrackerSpec(weights=str(tiny_onnx), backend="onnxruntime"))
    other = load_network(TrackerSpec(weights=str(tiny_onnx), backend="openvino"))
    assert same._forward is tracker.tracker._forward
    assert other.backend == "openvino" and other._forward is not same._forward
    clear_network_cache()


def test_opencv_adapter_takes_the_backend(tiny_onnx, tiny_model):
    import cv2

    from lorat_tracker.integrations.opencv import TrackerLoRAT

    seq = render_sequence(num_frames=6, size_wh=(320, 240), seed=2)
    bgr = [cv2.cvtColor(f, cv2.COLOR_RGB2BGR) for f in seq.frames]
    a = TrackerLoRAT.create(weights=str(tiny_onnx), backend="openvino")
    b = TrackerLoRAT.create(tiny_model.variant, weights=str(tiny_model.weights), backbone=str(tiny_model.backbone),
                            device="cpu", precision="fp32")
    assert a.tracker.backend == "openvino" and a.tracker.model is None
    a.init(bgr[0], seq.boxes[0, 0])
    b.init(bgr[0], seq.boxes[0, 0])
    for frame in bgr[1:]:
        a.update(frame)
        b.update(frame)
        np.testing.assert_allclose(a.last_box, b.last_box, rtol=0, atol=BOX_TOLERANCE_PX)


# --------------------------------------------------------------------------------------- GOT-10k

def test_got10k_experiment_with_openvino_matches_torch(tiny_onnx, tiny_model, tmp_path):
    pytest.importorskip("got10k")
    from lorat_tracker.integrations.got10k import ExperimentLaSOT, LoRATGot10kTracker

    write_lasot(tmp_path / "lasot", frames=8)
    runs = {}
    for name, spec in (("ov", TrackerSpec(weights=str(tiny_onnx), backend="openvino")),
                       ("torch", TrackerSpec(variant=tiny_model.variant, weights=str(tiny_model.weights),
                                             backbone=str(tiny_model.backbone), device="cpu", precision="fp32"))):
        tracker = LoRATGot10kTracker(spec, name=name)
        assert tracker.lorat.backend == spec.backend
        experiment = ExperimentLaSOT(str(tmp_path / "lasot"), result_dir=str(tmp_path / "results"),
                                     report_dir=str(tmp_path / "reports"))
        experiment.run(tracker)
        runs[name] = {f.name: read_rows(f) for f in sorted((tmp_path / "results" / "LaSOT" / name).glob("*.txt"))}
    assert runs["ov"].keys() == runs["torch"].keys() and len(runs["ov"]) == 3
    for seq, boxes in runs["torch"].items():
        assert runs["ov"][seq].shape == boxes.shape == (8, 4)
        np.testing.assert_allclose(runs["ov"][seq], boxes, rtol=0, atol=PRINTED_TOLERANCE_PX, err_msg=seq)


# ---------------------------------------------------------------------------------- lorat eval

@pytest.mark.slow
def test_eval_openvino_batch_size_2_writes_torchs_results(tiny_onnx, tiny_model, tmp_path):
    pytest.importorskip("got10k")
    root = tmp_path / "lasot"
    write_lasot(root, frames=8)
    seq = root / "airplane" / "airplane-9"  # a shorter sequence: the lockstep loop refills a slot mid-run
    for f in sorted((seq / "img").iterdir())[5:]:
        f.unlink()
    for name in ("groundtruth.txt", "full_occlusion.txt", "out_of_view.txt"):
        if (seq / name).is_file():
            lines = (seq / name).read_text().splitlines()
            keep = lines[:5] if len(lines) > 1 else [",".join(lines[0].split(",")[:5])]
            (seq / name).write_text("\n".join(keep) + "\n")
    common = ["eval", "lasot", "--root", root, "--results", tmp_path / "results", "--reports", tmp_path / "reports"]
    r = run_lorat(*common, "--name", "torch", *tiny_model.cli_args(), "--device", "cpu", "--precision", "fp32",
                  cwd=tmp_path, timeout=300)
    assert r.returncode == 0, r.stderr
    r = run_lorat(*common, "--name", "ov", "--backend", "openvino", "--weights", tiny_onnx, "--batch-size", "2",
                  cwd=tmp_path, timeout=300)
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr
    assert "batches of 2" in r.stderr + r.stdout
    results = {name: {f.name: read_rows(f) for f in sorted((tmp_path / "results" / "LaSOT" / name).glob("*.txt"))}
               for name in ("torch", "ov")}
    assert results["ov"].keys() == results["torch"].keys() and len(results["ov"]) == 3
    assert results["ov"]["airplane-9.txt"].shape == (5, 4)
    for name, boxes in results["torch"].items():
        np.testing.assert_allclose(results["ov"][name], boxes, rtol=0, atol=PRINTED_TOLERANCE_PX, err_msg=name)


# ---------------------------------------------------------------------------------------- VOT

def _register(tmp_path, *args, capsys=None):
    from lorat_tracker.demo import write_vot_boxes
    from lorat_tracker.integrations.vot.workspace import create_workspace

    ws = tmp_path / "ws"
    write_vot_boxes(tmp_path / "src", count=1, frames=8)
    create_workspace(ws, "vot2022/shorttermbox", sequences=tmp_path / "src", log=lambda *_: None)
    rc = lorat_main(["vot", "register", "--workspace", str(ws), "--name", "LoRAT_ort", *map(str, args)])
    return ws, rc


def _entry(ws: Path, name="LoRAT_ort"):
    ini = configparser.ConfigParser()
    ini.read(ws / "trackers.ini")
    return ini[name]


@pytest.mark.parametrize("check", [True, False])
def test_vot_register_with_a_backend_loads_nothing_in_torch(check, tiny_onnx, tmp_path, monkeypatch, capsys):
    import lorat_tracker.backends as backends
    import lorat_tracker.weights as weights

    def no_torch_model(*a, **k):
        raise AssertionError("registering an ONNX file built the model in torch")

    monkeypatch.setattr(weights, "build_model", no_torch_model)
    loads = []
    real = backends.load_network
    monkeypatch.setattr(backends, "load_network", lambda *a, **k: loads.append(a) or real(*a, **k))
    ws, rc = _register(tmp_path, "--backend", "onnxruntime", "--weights", tiny_onnx, *([] if check else ["--no-check"]))
    assert rc == 0, capsys.readouterr().err
    entry = _entry(ws)
    assert entry["env_lorat_vot_backend"] == "onnxruntime"
    assert entry["env_lorat_vot_weights"] == str(tiny_onnx) and "env_lorat_vot_variant" not in entry
    assert len(loads) == (1 if check else 0)  # --check loads it once, with its runtime; --no-check not at all
    if check:
        assert entry["label"] == "LoRAT tiny-mlp-224 (onnxruntime)"  # the variant read from the file by the check


def test_vot_register_refuses_a_backend_that_cannot_run(tiny_onnx, tmp_path, monkeypatch, capsys):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    ws, rc = _register(tmp_path, "--backend", "tensorrt", "--weights", tiny_onnx, "--no-check")
    err = capsys.readouterr().err
    assert rc == 2 and len(err.strip().splitlines()) == 1 and "backend tensorrt runs on CUDA GPUs only" in err, err
    assert not (ws / "trackers.ini").is_file() or "LoRAT_ort" not in (ws / "trackers.ini").read_text()
    rc = lorat_main(["vot", "register", "--workspace", str(ws), "--name", "LoRAT_ort", "--backend", "onnxruntime",
                     "--variant", "tiny-swiglu-224", "--weights", str(tiny_onnx)])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and "was exported for variant tiny-mlp-224" in err[-1], err
    monkeypatch.setitem(sys.modules, "openvino", None)  # a missing runtime: said at registration, not in the run
    rc = lorat_main(["vot", "register", "--workspace", str(ws), "--name", "LoRAT_ort", "--backend", "openvino",
                     "--weights", str(tiny_onnx), "--no-check"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and 'pip install "lorat-tracker[openvino]"' in err[0], err
    assert not (ws / "trackers.ini").is_file() or "LoRAT_ort" not in (ws / "trackers.ini").read_text()


@pytest.mark.slow
def test_vot_evaluate_with_onnxruntime_answers_the_core_trackers_boxes(tiny_onnx, tmp_path, capsys):
    pytest.importorskip("vot")
    import subprocess

    from vot.region.io import read_trajectory

    from lorat_tracker.boxes import rasterized_xywh
    from lorat_tracker.images import read_rgb

    ws, rc = _register(tmp_path, "--backend", "onnxruntime", "--weights", tiny_onnx)
    assert rc == 0, capsys.readouterr().err
    env = dict(os.environ, HTTP_PROXY="http://127.0.0.1:9", HTTPS_PROXY="http://127.0.0.1:9",
               http_proxy="http://127.0.0.1:9", https_proxy="http://127.0.0.1:9", VOT_PERSISTENT_CACHE="0")
    for k in ("NO_PROXY", "no_proxy"):
        env.pop(k, None)
    r = subprocess.run([sys.executable, "-m", "vot", "evaluate", "--workspace", str(ws), "--experiments",
                        "unsupervised", "LoRAT_ort"], env=env, capture_output=True, text=True, timeout=600)
    out = r.stdout + r.stderr
    assert r.returncode == 0 and "Traceback" not in out, out[-4000:]
    log = (ws / "logs" / "LoRAT_ort.tracker.log").read_text()
    assert "onnxruntime" in log, log[-2000:]
    tracker = LoRATTracker.from_pretrained(None, weights=tiny_onnx, backend="onnxruntime")
    seq_dir = ws / "sequences" / "box1"
    paths = sorted((seq_dir / "color").glob("*.jpg"))
    regions = read_trajectory(str(ws / "results" / "LoRAT_ort" / "unsupervised" / "box1" / "box1_001.bin"))
    gt = np.loadtxt(seq_dir / "groundtruth.txt", delimiter=",")
    assert len(regions) == len(paths) == 8
    tracker.initialize(read_rgb(paths[0]), gt[0])
    for k in range(1, len(paths)):
        tracker.track(read_rgb(paths[k]))
        r = regions[k]
        assert (r.x, r.y, r.width, r.height) == rasterized_xywh(tracker.target.box), k


# OpenVINO runs in this process: one xdist group, scheduled last (see RUN_LAST in conftest.py).
pytestmark = pytest.mark.xdist_group("openvino")
