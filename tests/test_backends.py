"""Backends: the ONNX export and the ONNX Runtime / OpenVINO networks reproduce torch fp32's boxes.

Every reference case (whole sequences) through each installed CPU runtime, compared with torch fp32
on the same machine; the dynamic and fixed-batch paths of ``step``; the export's digest and the bad
inputs (another variant's file, truncated, edited, unknown backend, TensorRT on the CPU, a missing
runtime) as one typed line.
"""
from __future__ import annotations

import json
import os
import sys

import numpy as np
import pytest

from conftest import TinyModel, fp32_box_bound
from run_cli import run_lorat
from lorat_tracker.demo import render_sequence

from lorat_tracker import LoRATTracker
from lorat_tracker.backends import BACKENDS, import_runtime, load_network
from lorat_tracker.backends.onnx_file import export_onnx, onnx_digest, read_onnx
from lorat_tracker.cli import main as lorat_main
from lorat_tracker.errors import BackendError, BackendNotInstalledError, ConfigError, WeightsError
from lorat_tracker.selftest import reference_cases, run_case
from lorat_tracker.weights import build_model, export_merged

onnx = pytest.importorskip("onnx")  # installed here; the [onnx] extra elsewhere
CPU_BACKENDS = ("onnxruntime", "openvino")
BOX_TOLERANCE_PX = 1e-4  # fp32 backend vs torch fp32: the bound
SCORE_TOLERANCE = 1e-5


@pytest.fixture(scope="module")
def onnx_files(tmp_path_factory):
    """A dynamic-batch ONNX export of every reference variant, and its torch model."""
    folder = tmp_path_factory.mktemp("onnx")
    out = {}
    for variant in sorted({c.variant for c in reference_cases()}):
        model, geometry = variant.rsplit("-", 1)
        tiny = TinyModel(model, geometry)
        net = build_model(variant, weights=tiny.weights, backbone=tiny.backbone)
        path = folder / f"{variant}.onnx"
        export_onnx(net, path, batch=None)
        out[variant] = (path, net)
    return out


def test_onnxruntime_runs_each_exact_gelu_as_one_node(onnx_files, monkeypatch):
    """torch's exporter writes GELU as five nodes ONNX Runtime does not fuse; the backend fuses them
    (ONNX Runtime's transformer optimiser) into one com.microsoft.Gelu computing the same erf formula."""
    import onnx
    import onnxruntime as ort

    from lorat_tracker.backends import ort as ort_backend

    rng = np.random.default_rng(0)
    gelus = 0
    for variant, (path, net) in onnx_files.items():
        plain = onnx.load(str(path))
        fused = onnx.load_from_string(ort_backend.fused_gelu_model(str(path), net.cfg))
        ops = [n.op_type for n in fused.graph.node]
        erf = sum(n.op_type == "Erf" for n in plain.graph.node)
        gelus += erf
        assert ops.count("Gelu") == erf and "Erf" not in ops, variant
        cfg = net.cfg
        feeds = {"z": rng.standard_normal((2, 3, cfg.template.size, cfg.template.size), dtype=np.float32),
                 "x": rng.standard_normal((2, 3, cfg.search.size, cfg.search.size), dtype=np.float32),
                 "z_feat_mask": rng.integers(0, 2, (2, cfg.template_grid, cfg.template_grid)).astype(np.int64)}
        a = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, feeds)
        b = ort.InferenceSession(fused.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, feeds)
        for u, v in zip(a, b):
            assert np.abs(u - v).max() <= 1e-5, variant
    assert gelus, "no reference variant has a GELU: the fusion went untested"
    monkeypatch.setattr(ort_backend, "FUSE_MAX_BYTES", 0)  # too big to hold in memory: the file as it is
    path, net = next(iter(onnx_files.values()))
    assert ort_backend.fused_gelu_model(str(path), net.cfg) == str(path)


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_every_reference_case_matches_torch_fp32(backend, onnx_files):
    worst = 0.0
    for variant, cases in _cases_by_variant().items():
        path, net = onnx_files[variant]
        torch_tracker = LoRATTracker(net, device="cpu", precision="fp32")
        tracker = LoRATTracker.from_pretrained(None, weights=path, backend=backend)
        assert tracker.backend == backend and tracker.model is None and tracker.cfg == net.cfg
        for case in cases:
            want_boxes, want_scores = run_case(torch_tracker, case)
            boxes, scores = run_case(tracker, case)
            assert len(boxes) == len(case.frames)
            bound = fp32_box_bound(want_boxes, net.cfg.search.area_factor)  # rounding (conftest.py)
            assert (np.abs(np.asarray(boxes) - want_boxes).max(axis=1) <= bound).all(), \
                f"{backend} {variant}/{case.sequence}: {np.abs(np.asarray(boxes) - want_boxes).max()} px"
            np.testing.assert_allclose(scores, want_scores, rtol=0, atol=SCORE_TOLERANCE)
            # ... and therefore the official pipeline's golden boxes within the self-test's standard
            np.testing.assert_allclose(boxes, case.boxes, rtol=0, atol=1e-3)
            worst = max(worst, float(np.abs(boxes - want_boxes).max()))
    assert worst > 0 or backend == "torch"  # different kernels: bit equality would mean torch ran


def _cases_by_variant():
    out = {}
    for case in reference_cases():
        out.setdefault(case.variant, []).append(case)
    return out


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_step_with_several_targets_dynamic_fixed_and_split_batches(backend, onnx_files, tmp_path):
    path, net = onnx_files["tiny-mlp-224"]
    seq = render_sequence(num_frames=6, size_wh=(320, 240), num_objects=3, seed=5)
    fixed = tmp_path / "batch2.onnx"
    assert export_onnx(net, fixed, batch=2).batch == 2
    reference = LoRATTracker(net, device="cpu", precision="fp32")
    dynamic = LoRATTracker.from_pretrained(None, weights=path, backend=backend)
    two = LoRATTracker.from_pretrained("tiny-mlp-224", weights=fixed, backend=backend)  # 3 targets: padded to 4
    split = LoRATTracker.from_pretrained(None, weights=path, backend=backend)
    split._forward.max_batch = 2  # TensorRT's profile limit path: 3 targets run as 2 + 1
    trackers = (reference, dynamic, two, split)
    targets = [[tr.new_target(seq.frames[0], box) for box in seq.boxes[:, 0]] for tr in trackers]
    for frame in seq.frames[1:]:
        results = [tr.step(t, frame) for tr, t in zip(trackers, targets)]
        want = np.stack([p.box for p in results[0]])
        for got in results[1:]:
            np.testing.assert_allclose(np.stack([p.box for p in got]), want, rtol=0, atol=BOX_TOLERANCE_PX)
            np.testing.assert_allclose([p.score for p in got], [p.score for p in results[0]], atol=SCORE_TOLERANCE)


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.slow
def test_constructor_takes_a_torch_model(backend, onnx_files):
    _, net = onnx_files["tiny-swiglu-224"]
    seq = render_sequence(num_frames=5, seed=3)
    a, b = LoRATTracker(net, device="cpu", precision="fp32"), LoRATTracker(net, backend=backend)
    assert b.model is net and b.precision == "fp32"
    a.initialize(seq.frames[0], seq.boxes[0, 0])
    b.initialize(seq.frames[0], seq.boxes[0, 0])
    for frame in seq.frames[1:]:
        np.testing.assert_allclose(b.track(frame).box, a.track(frame).box, rtol=0, atol=BOX_TOLERANCE_PX)


@pytest.mark.slow
def test_export_leaves_the_callers_model_as_it_was(onnx_files, tmp_path):
    """Exported on the CPU in eval mode, then back to the caller's device and mode (a CUDA model given to
    LoRATTracker(net, backend=...) stayed on the CPU before; here the mode shows it)."""
    _, net = onnx_files["tiny-mlp-224"]
    net.train()
    try:
        export_onnx(net, tmp_path / "again.onnx", batch=1)
        assert net.training and next(net.parameters()).device.type == "cpu"
    finally:
        net.eval()


@pytest.mark.slow
def test_cli_export_round_trip_and_info(tiny_model, tmp_path, capsys):
    out = tmp_path / "tiny.onnx"
    r = run_lorat("export", *tiny_model.cli_args(), "--format", "onnx", "--out", out)
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr and f"wrote {out}" in r.stdout
    info = read_onnx(out)
    assert (info.stored_variant, info.batch, info.cfg) == (tiny_model.variant, 1, tiny_model.tracker().cfg)
    assert lorat_main(["info", str(out)]) == 0
    text = capsys.readouterr().out
    for line in (f"variant:         {tiny_model.variant}", "batch:           1",
                 "search region:   224x224 px (search grid 16x16)", f"digest:          {info.digest} (verified)"):
        assert line in text
    assert lorat_main(["info", str(out), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["batch"] == 1 and data["cfg"]["name"] == tiny_model.variant
    seq = render_sequence(num_frames=4, seed=2)
    reference = tiny_model.tracker(precision="fp32")
    reference.initialize(seq.frames[0], seq.boxes[0, 0])
    runs = [LoRATTracker.from_pretrained(None, weights=out, backend=b) for b in CPU_BACKENDS]
    for tr in runs:
        tr.initialize(seq.frames[0], seq.boxes[0, 0])
    for frame in seq.frames[1:]:
        want = reference.track(frame).box
        for tr in runs:
            np.testing.assert_allclose(tr.track(frame).box, want, rtol=0, atol=BOX_TOLERANCE_PX)


@pytest.mark.slow
def test_merged_export_is_converted_once_and_cached_beside_it(onnx_files, tmp_path):
    _, net = onnx_files["tiny-mlp-224"]
    merged = tmp_path / "tiny.safetensors"
    export_merged(net, merged)
    cached = tmp_path / "tiny.safetensors.onnx"
    first = LoRATTracker.from_pretrained(None, weights=merged, backend="onnxruntime")
    assert cached.is_file() and first._forward.info.path == str(cached)
    stamp = cached.stat().st_mtime_ns
    LoRATTracker.from_pretrained(None, weights=merged, backend="openvino")
    assert cached.stat().st_mtime_ns == stamp  # reused, not converted again
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".partial")]
    # Another merged file under the same name: the cache no longer belongs to it and is remade.
    other_net = build_model("tiny-swiglu-224", weights=TinyModel("tiny-swiglu").weights,
                            backbone=TinyModel("tiny-swiglu").backbone)
    export_merged(other_net, merged)
    again = LoRATTracker.from_pretrained(None, weights=merged, backend="onnxruntime")
    assert again.cfg.name == "tiny-swiglu-224" and read_onnx(cached).stored_variant == "tiny-swiglu-224"


@pytest.mark.slow
def test_cached_conversion_keeps_the_exports_configuration(onnx_files, tmp_path):
    """The first caller's variant (same network, other tracking settings) is applied to that caller only:
    the cache holds the export's own configuration, which a later variant-less load gets."""
    import yaml

    from lorat_tracker.config import load_config

    _, net = onnx_files["tiny-mlp-224"]
    merged = tmp_path / "tiny.safetensors"
    export_merged(net, merged)
    custom = load_config("tiny-mlp-224").to_dict()
    custom["name"], custom["tracking"]["window_penalty"] = "my-tiny", 0.3
    (tmp_path / "my-tiny.yaml").write_text(yaml.safe_dump(custom))
    first = LoRATTracker.from_pretrained(str(tmp_path / "my-tiny.yaml"), weights=merged, backend="onnxruntime")
    assert (first.cfg.name, first.cfg.tracking.window_penalty) == ("my-tiny", 0.3)
    assert read_onnx(tmp_path / "tiny.safetensors.onnx").stored_variant == "tiny-mlp-224"
    later = LoRATTracker.from_pretrained(None, weights=merged, backend="onnxruntime")
    assert (later.cfg.name, later.cfg.tracking.window_penalty) == ("tiny-mlp-224", 0.45)


def test_digest_covers_weights_and_configuration_not_metadata(onnx_files):
    path, _ = onnx_files["tiny-mlp-224"]
    proto = onnx.load(str(path))
    props = {p.key: p.value for p in proto.metadata_props}
    assert props["digest"] == onnx_digest(proto, props)
    proto.metadata_props.add(key="note", value="added by a user")  # other metadata is not hashed
    assert onnx_digest(proto, {**props, "note": "added by a user"}) == props["digest"]
    config = json.loads(props["config"])
    config["tracking"]["window_penalty"] = 0.0
    assert onnx_digest(proto, {**props, "config": json.dumps(config)}) != props["digest"]
    # what the file says it computes is hashed too: an int8 file cannot pass for fp32, nor change its batch
    assert onnx_digest(proto, {**props, "precision": "int8"}) != props["digest"]
    assert onnx_digest(proto, {**props, "batch": "4"}) != props["digest"]
    init = proto.graph.initializer[0]
    array = onnx.numpy_helper.to_array(init).copy()
    array.reshape(-1)[0] += 1.0
    init.CopyFrom(onnx.numpy_helper.from_array(array, init.name))
    assert onnx_digest(proto, props) != props["digest"]


def _edited(path, tmp_path, edit, name="edited.onnx"):
    proto = onnx.load(str(path))
    edit(proto)
    out = tmp_path / name
    onnx.save_model(proto, str(out))
    return out


def _set_prop(key, value):
    def edit(proto):
        for p in proto.metadata_props:
            if p.key == key:
                p.value = value
    return edit


@pytest.mark.slow
def test_bad_onnx_files_are_refused_with_one_line(onnx_files, tmp_path):
    path, _ = onnx_files["tiny-mlp-224"]
    other, _ = onnx_files["tiny-mlp-378"]
    with pytest.raises(WeightsError, match="exported for variant tiny-mlp-378 .* but tiny-mlp-224"):
        LoRATTracker.from_pretrained("tiny-mlp-224", weights=other, backend="onnxruntime")
    with pytest.raises(WeightsError, match="exported for variant tiny-swiglu-224"):
        read_onnx(onnx_files["tiny-swiglu-224"][0], variant="tiny-mlp-224")
    truncated = tmp_path / "truncated.onnx"
    truncated.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(WeightsError, match="truncated or corrupt"):
        LoRATTracker.from_pretrained(None, weights=truncated, backend="openvino")
    config = json.loads({p.key: p.value for p in onnx.load(str(path)).metadata_props}["config"])
    config["tracking"]["window_penalty"] = 0.3
    edited = _edited(path, tmp_path, _set_prop("config", json.dumps(config)))
    with pytest.raises(WeightsError, match="edited or damaged after export"):
        LoRATTracker.from_pretrained(None, weights=edited, backend="onnxruntime")

    def bump_weight(proto):
        init = max(proto.graph.initializer, key=lambda t: len(t.raw_data))
        data = bytearray(init.raw_data)
        data[0] ^= 1
        init.raw_data = bytes(data)

    with pytest.raises(WeightsError, match="edited or damaged after export"):
        read_onnx(_edited(path, tmp_path, bump_weight, "weight.onnx"))
    for key, value in (("batch", "many"), ("precision", "int8")):  # hashed metadata: one line, not a ValueError
        with pytest.raises(WeightsError, match="edited or damaged after export"):
            read_onnx(_edited(path, tmp_path, lambda p: p.metadata_props.add(key=key, value=value), f"{key}.onnx"))
    with pytest.raises(ConfigError, match="batch must be a positive integer"):
        export_onnx(onnx_files["tiny-mlp-224"][1], tmp_path / "bool.onnx", batch=True)
    foreign = _edited(path, tmp_path, lambda p: p.ClearField("metadata_props"), "foreign.onnx")
    with pytest.raises(WeightsError, match="not one written by lorat export"):
        read_onnx(foreign)
    with pytest.raises(WeightsError, match="does not exist"):
        read_onnx(tmp_path / "missing.onnx")
    # The CLI: one line, exit 2, for each
    for bad, pattern in ((truncated, "truncated or corrupt"), (edited, "edited or damaged"),
                         (foreign, "not one written by lorat export")):
        r = run_lorat("info", bad)
        assert r.returncode == 2 and "Traceback" not in r.stderr
        assert len(r.stderr.strip().splitlines()) == 1 and pattern in r.stderr


def test_backend_choices_that_cannot_run_are_refused(onnx_files, tiny_model):
    path, net = onnx_files["tiny-mlp-224"]
    with pytest.raises(BackendError, match="unknown backend 'tflite': use one of torch, onnxruntime, openvino, tensorrt"):
        LoRATTracker.from_pretrained(None, weights=path, backend="tflite")
    with pytest.raises(BackendError, match="unknown backend"):
        LoRATTracker(net, backend="ORT")
    with pytest.raises(BackendError, match="backend tensorrt runs on CUDA GPUs only, not on cpu"):
        LoRATTracker.from_pretrained(None, weights=path, backend="tensorrt", device="cpu")
    with pytest.raises(BackendError, match="backend onnxruntime runs precision fp32 or int8, not 'bf16'"):
        LoRATTracker.from_pretrained(None, weights=path, backend="onnxruntime", precision="bf16")
    with pytest.raises(BackendError, match="or backend='torch' or backend='openvino' for bf16"):
        LoRATTracker.from_pretrained(None, weights=path, backend="onnxruntime", precision="bf16")
    with pytest.raises(BackendError, match="backend openvino cannot run on cuda"):
        load_network("openvino", None, path, None, _device("cuda"), "fp32")
    # the advice names the backends that run the precision (never backend='torch' for int8)
    with pytest.raises(BackendError, match=r"not 'int8' - pass one of those, or backend='onnxruntime' or "
                                           r"backend='openvino' for int8 \(int8: a file from quantize_int8\)$"):
        load_network("tensorrt", None, path, None, _device("cuda"), "int8")
    with pytest.raises(ConfigError, match="applies to backend 'torch' only"):
        LoRATTracker(net, backend="openvino", compile=True)
    assert issubclass(BackendError, ConfigError)


def _device(name):
    import torch

    return torch.device(name)


@pytest.mark.parametrize("backend,module,extra", [("onnxruntime", "onnxruntime", "onnx"),
                                                  ("openvino", "openvino", "openvino"),
                                                  ("tensorrt", "tensorrt", "tensorrt")])
def test_missing_runtime_names_the_extra(backend, module, extra, monkeypatch):
    monkeypatch.setitem(sys.modules, module, None)  # `import module` now raises ImportError
    with pytest.raises(BackendNotInstalledError) as e:
        import_runtime(backend)
    assert f'install it with: pip install "lorat-tracker[{extra}]"' in str(e.value)
    assert BACKENDS[backend].extra == extra


def test_missing_onnx_package_names_the_extra(tiny_model, monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "onnx", None)
    r = lorat_main(["export", *tiny_model.cli_args(), "--format", "onnx", "--out", str(tmp_path / "t.onnx")])
    assert r == 2 and not (tmp_path / "t.onnx").exists()
    with pytest.raises(BackendNotInstalledError, match=r'pip install "lorat-tracker\[onnx\]"'):
        read_onnx(tmp_path / "t.onnx")


def test_cli_export_argument_mistakes(tiny_model, tmp_path, capsys):
    args = tiny_model.cli_args()
    assert lorat_main(["export", *args, "--format", "onnx", "--out", str(tmp_path / "t.safetensors")]) == 2
    assert "name ends in .onnx" in capsys.readouterr().err
    assert lorat_main(["export", *args, "--dynamic-batch", "--out", str(tmp_path / "m.safetensors")]) == 2
    assert "apply to --format onnx only" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        lorat_main(["export", *args, "--format", "onnx", "--batch", "0", "--out", str(tmp_path / "t.onnx")])
    assert e.value.code == 2


def test_tensorrt_on_a_gpu(onnx_files):
    pytest.importorskip("tensorrt")
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("TensorRT needs a CUDA GPU")
    path, net = onnx_files["tiny-mlp-224"]
    seq = render_sequence(num_frames=5, seed=4)
    a = LoRATTracker(net, device="cuda", precision="fp32")
    b = LoRATTracker.from_pretrained(None, weights=path, backend="tensorrt", device="cuda", precision="fp32")
    a.initialize(seq.frames[0], seq.boxes[0, 0])
    b.initialize(seq.frames[0], seq.boxes[0, 0])
    for frame in seq.frames[1:]:
        np.testing.assert_allclose(b.track(frame).box, a.track(frame).box, rtol=0, atol=1e-2)


def test_onnx_file_with_the_torch_backend_says_which_backends_run_it(onnx_files):
    path, _ = onnx_files["tiny-mlp-224"]
    with pytest.raises(WeightsError, match="is an ONNX export: run it with backend='onnxruntime'"):
        LoRATTracker.from_pretrained(None, weights=path)


def test_extras_install_each_runtime():
    import configparser

    from run_cli import REPO

    cfg = configparser.ConfigParser()
    cfg.read(REPO / "setup.cfg")
    extras = {k: v.split() for k, v in cfg["options.extras_require"].items()}
    assert "lorat_tracker.backends" in cfg["options"]["packages"].split()
    for spec in BACKENDS.values():
        if spec.extra is None:
            continue
        assert spec.install_hint == f'pip install "lorat-tracker[{spec.extra}]"'
        packages = [p.split(">")[0].split("=")[0] for p in extras[spec.extra]]
        assert spec.package in packages and "onnx" in packages and "onnxscript" in packages, (spec.extra, packages)


def test_int8_calibrated_on_frames_reports_its_agreement(onnx_files, tmp_path):
    pytest.importorskip("nncf")  # the [openvino] extra installs it
    from lorat_tracker.backends.quantize import quantize_int8
    from lorat_tracker.images import read_rgb

    path, _ = onnx_files["tiny-mlp-224"]
    cases = _cases_by_variant()["tiny-mlp-224"]
    calibration = [([read_rgb(f) for f in cases[0].frames], cases[0].init_box)]
    out = tmp_path / "int8.onnx"
    info = quantize_int8(path, calibration, out)
    assert info.precision == "int8" and f"{len(cases[0].frames) - 1} tracker inputs" in info.calibration
    ops = {n.op_type for n in onnx.load(str(out)).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    fp32 = LoRATTracker.from_pretrained(None, weights=path, backend="openvino")
    int8 = LoRATTracker.from_pretrained(None, weights=out, backend="openvino")  # auto = the file's int8
    assert int8.precision == "int8"
    boxes32, _ = run_case(fp32, cases[1])  # a sequence it was not calibrated on
    boxes8, _ = run_case(int8, cases[1])
    agreement = _iou(boxes32, boxes8)
    assert np.abs(boxes8 - boxes32).max() > 1e-4  # really quantised, not the fp32 graph again
    # Free-running, the tiny random model drifts apart after a few frames (one flipped argmax
    # compounds): that is the agreement to report, not a bound. The first frames, cropped from the
    # same state, must agree closely, or the quantised graph is broken.
    assert agreement[1:3].min() > 0.95, agreement
    with pytest.raises(BackendError, match="holds int8 weights"):
        LoRATTracker.from_pretrained(None, weights=out, backend="openvino", precision="fp32")
    with pytest.raises(BackendError, match="precision int8 needs a file made by"):
        LoRATTracker.from_pretrained(None, weights=path, backend="openvino", precision="int8")


def _iou(a, b):
    """Per-row IoU of [x, y, w, h] boxes."""
    x1, y1 = np.maximum(a[:, 0], b[:, 0]), np.maximum(a[:, 1], b[:, 1])
    x2 = np.minimum(a[:, 0] + a[:, 2], b[:, 0] + b[:, 2])
    y2 = np.minimum(a[:, 1] + a[:, 3], b[:, 1] + b[:, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    return inter / (a[:, 2] * a[:, 3] + b[:, 2] * b[:, 3] - inter)


def test_iou_helper_by_hand():
    a = np.array([[0.0, 0, 10, 10]])
    np.testing.assert_allclose(_iou(a, np.array([[5.0, 0, 10, 10]])), [50 / 150])


# OpenVINO runs in this process: one xdist group, scheduled last (see RUN_LAST in conftest.py).
pytestmark = pytest.mark.xdist_group("openvino")
