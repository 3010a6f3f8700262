"""``TrackerSpec``: one definition of the tracker options, and every surface built from it."""
from __future__ import annotations

import argparse
import dataclasses
import json
import subprocess
import sys
from typing import Optional

import pytest

from run_cli import REPO

from lorat_tracker.errors import ConfigError, WeightsNotFoundError
from lorat_tracker.spec import (FLAGS, PYTHON, EnvSpelling, SpecError, SpecFileNotFoundError, TrackerSpec, option,
                                options)

# The variable names trackers.ini files and pytracking users have today: they must keep working.
VOT_NAMES = {"variant": "LORAT_VOT_VARIANT", "weights": "LORAT_VOT_WEIGHTS", "backbone": "LORAT_VOT_BACKBONE",
             "device": "LORAT_VOT_DEVICE", "precision": "LORAT_VOT_PRECISION", "masks": "LORAT_VOT_MASKS",
             "sam_checkpoint": "LORAT_VOT_SAM_CHECKPOINT", "sam_type": "LORAT_VOT_SAM_TYPE",
             "sam_precision": "LORAT_VOT_SAM_PRECISION"}
PYTRACKING_NAMES = {"variant": "LORAT_VARIANT", "weights": "LORAT_WEIGHTS", "backbone": "LORAT_BACKBONE",
                    "device": "LORAT_DEVICE", "precision": "LORAT_PRECISION"}


@pytest.fixture
def files(tmp_path):
    paths = {}
    for name in ("weights.bin", "backbone.pth", "sam.pth"):
        (tmp_path / name).write_bytes(b"x")
        paths[name.split(".")[0]] = str(tmp_path / name)
    return paths


def full_spec(files) -> TrackerSpec:
    """Every option away from its default."""
    return TrackerSpec(variant="B-378", weights=files["weights"], backbone=files["backbone"], device="cuda:1",
                       precision="bf16", compile="cudagraph", threads=3, masks="sam", sam_checkpoint=files["sam"],
                       sam_type="vit_l", sam_precision="bf16")


def error(spec: TrackerSpec) -> SpecError:
    with pytest.raises(SpecError) as info:
        spec.check()
    return info.value


# ------------------------------------------------------------------------------------- check()

def test_spec_choices_are_the_cores():
    from lorat_tracker import constants, runtime
    from lorat_tracker.segmentation import refiner

    assert runtime.COMPILE_MODES is constants.COMPILE_MODES and refiner.PRECISIONS == constants.SAM_PRECISIONS
    by_name = {o.name: o for o in options()}
    assert by_name["precision"].choices is constants.NETWORK_PRECISIONS
    assert by_name["backend"].choices is constants.BACKEND_NAMES
    assert [by_name["compile"].parse(c) for c in ("off", "on", "cudagraph", "inductor", "onednn")] == \
        list(constants.COMPILE_MODES)


def test_check_accepts_a_good_spec_and_returns_it(files):
    spec = full_spec(files)
    assert spec.check() is spec
    assert TrackerSpec(weights=files["weights"]).check().precision == "auto"
    # the command line's words for compile mean the same in Python (they were refused as "not a compile mode")
    on = TrackerSpec(weights=files["weights"], compile="on").check()
    assert on == TrackerSpec(weights=files["weights"], compile=True)
    assert TrackerSpec(compile="off").compile is False and TrackerSpec(compile="inductor").compile == "inductor"


def test_check_errors_carry_their_option(files, tmp_path):
    w = files["weights"]
    bad_yaml, binary = tmp_path / "bad.yaml", tmp_path / "model.bin"
    bad_yaml.write_text("name: [\n")
    binary.write_bytes(b"\x90\xff\x00 a weights file")
    cases = [
        (TrackerSpec(), "weights", "no weights given: --weights FILE is needed"),
        (TrackerSpec(weights=str(tmp_path / "nope.bin")), "weights", f"--weights {tmp_path / 'nope.bin'} does not exist"),
        (TrackerSpec(weights=str(tmp_path)), "weights", f"--weights {tmp_path} is a directory"),
        (TrackerSpec(weights=w, backbone=str(tmp_path / "no.pth")), "backbone", "--backbone"),
        (TrackerSpec(weights=w, variant="Z-999"), "variant", "unknown variant 'Z-999'"),
        (TrackerSpec(weights=w, variant=str(tmp_path / "v.yaml")), "variant", "no such variant file"),
        (TrackerSpec(weights=w, variant=str(binary)), "variant", "cannot be read (not a text file)"),
        (TrackerSpec(weights=w, variant=str(bad_yaml)), "variant", "cannot be read (not valid YAML)"),
        (TrackerSpec(weights=w, device="gpu"), "device", "--device gpu is not a device: use cpu, cuda, cuda:N or mps"),
        (TrackerSpec(weights=w, precision="fp8"), "precision", "--precision fp8 is not one of auto, fp32, fp16, bf16"),
        (TrackerSpec(weights=w, compile="max"), "compile", "--compile max is not a compile mode"),
        (TrackerSpec(weights=w, threads=0), "threads", "--threads 0 is not a thread count"),
        (TrackerSpec(weights=w, masks="yes"), "masks", "--masks yes is not one of none, sam"),
        (TrackerSpec(weights=w, masks="sam"), "sam_checkpoint", "--masks sam needs --sam-checkpoint FILE"),
        (TrackerSpec(weights=w, sam_checkpoint=files["sam"]), "sam_checkpoint",
         "--sam-checkpoint is used only with --masks sam - add --masks sam"),
        (TrackerSpec(weights=w, sam_type="vit_b"), "sam_type", "--sam-type is used only with --masks sam"),
        (TrackerSpec(weights=w, masks="sam", sam_checkpoint=str(tmp_path / "no.pth")), "sam_checkpoint",
         "--sam-checkpoint"),
        (TrackerSpec(weights=w, masks="sam", sam_checkpoint=files["sam"], sam_type="vit_x"), "sam_type",
         "--sam-type vit_x is not one of vit_b, vit_l, vit_h"),
        (TrackerSpec(weights=w, masks="sam", sam_checkpoint=files["sam"], sam_precision="fp64"), "sam_precision",
         "--sam-precision fp64"),
    ]
    for spec, option_name, text in cases:
        e = error(spec)
        assert e.option == option_name, (spec, e.option)
        assert text in e.render(FLAGS), (text, e.render(FLAGS))
        assert isinstance(e, ConfigError) and isinstance(e, ValueError)
    missing = error(TrackerSpec(weights=str(tmp_path / "nope.bin")))
    assert isinstance(missing, SpecFileNotFoundError) and isinstance(missing, WeightsNotFoundError)
    assert isinstance(missing, FileNotFoundError)


def test_one_error_three_spellings(tmp_path):
    e = error(TrackerSpec(masks="sam", weights=str(tmp_path / "w.bin")))
    assert e.render(FLAGS).startswith("--masks sam needs --sam-checkpoint FILE")
    assert e.render(EnvSpelling("LORAT_VOT_")).startswith("LORAT_VOT_MASKS=sam needs LORAT_VOT_SAM_CHECKPOINT=FILE")
    assert str(e) == e.render(PYTHON) and str(e).startswith("masks='sam' needs sam_checkpoint=PATH")
    spelled = e.spelled(EnvSpelling("LORAT_"))
    assert spelled.option == "sam_checkpoint" and str(spelled).startswith("LORAT_MASKS=sam needs LORAT_SAM_CHECKPOINT")
    import pickle

    again = pickle.loads(pickle.dumps(spelled))
    assert type(again) is SpecError and again.option == spelled.option and str(again) == str(spelled)


def test_spec_of_takes_a_spec_or_the_older_call_forms():
    spec = TrackerSpec(variant="B-224", weights="base.bin")
    assert TrackerSpec.of(spec) is spec and TrackerSpec.of(spec, device="cpu") == spec.replace(device="cpu")
    assert TrackerSpec.of("B-224", weights="base.bin") == spec == TrackerSpec.of(variant="B-224", weights="base.bin")
    assert TrackerSpec.of(spec, device=None, precision=None) is spec  # None is "not given"
    assert TrackerSpec.of(spec.replace(precision="bf16"), weights="other.bin", precision=None).precision == "bf16"


def test_adapters_keep_the_spec_and_take_the_keywords_given(tiny_model):
    """Each adapter's keywords override the spec they are given, and a keyword left out keeps the spec's
    value (the OpenCV factory used to reset precision to auto; pytracking's lorat_params dropped device)."""
    pytest.importorskip("got10k")
    from lorat_tracker.integrations import opencv
    from lorat_tracker.integrations.got10k import LoRATGot10kTracker
    from lorat_tracker.integrations.pytracking import lorat_params

    spec = TrackerSpec(variant=tiny_model.variant, weights=str(tiny_model.weights), backbone=str(tiny_model.backbone),
                       device="cpu", precision="bf16")
    assert opencv.create(spec).tracker.precision == "bf16"
    assert opencv.create(spec, precision="fp32").tracker.precision == "fp32"
    params = lorat_params(spec=spec.replace(device="cuda"), device="cpu", threads=1)
    assert (params.device, params.precision, params.threads) == ("cpu", "bf16", 1)
    assert lorat_params(spec=spec, variant="tiny-mlp-378").variant == "tiny-mlp-378"
    tracker = spec.build()
    for wrong in ({"device": "cuda"}, {"precision": "fp16"}):
        with pytest.raises(TypeError, match="not both"):
            LoRATGot10kTracker(tracker, **wrong)
    # Box-only surfaces refuse masks (a SAM run per frame, thrown away) before loading anything.
    from lorat_tracker.integrations.pytracking import load_network

    sam = spec.replace(masks="sam", sam_checkpoint=str(tiny_model.weights))
    for build, surface in ((lambda: opencv.create(sam), "OpenCV-style tracker"),
                           (lambda: LoRATGot10kTracker(sam), "GOT-10k toolkit tracker"),
                           (lambda: load_network(sam), "pytracking tracker")):
        with pytest.raises(SpecError, match=f"masks='sam': the {surface} returns boxes only") as info:
            build()
        assert info.value.option == "masks"


def test_check_imports_no_torch(tmp_path):
    """check(), the argparse surface and the env surface work in a process that never loads torch."""
    code = r"""
import argparse, json, sys
from lorat_tracker.spec import FLAGS, SpecError, TrackerSpec
p = argparse.ArgumentParser()
TrackerSpec.add_arguments(p)
spec = TrackerSpec.from_args(p.parse_args(["--weights", sys.argv[1], "--variant", "B-224", "--threads", "2"]))
spec.check()
TrackerSpec.from_env("LORAT_VOT_", spec.to_env("LORAT_VOT_")).check()
try:
    spec.replace(device="gpu").check()
except SpecError as e:
    print(json.dumps([e.option, e.render(FLAGS)]))
print(json.dumps(sorted(m for m in ("torch", "numpy", "timm", "cv2") if m in sys.modules)))
"""
    (tmp_path / "w.bin").write_bytes(b"x")
    proc = subprocess.run([sys.executable, "-c", code, str(tmp_path / "w.bin")], capture_output=True, text=True,
                          cwd=REPO, env={**__import__("os").environ, "PYTHONPATH": str(REPO)}, timeout=60)
    assert proc.returncode == 0, proc.stderr
    first, heavy = proc.stdout.strip().splitlines()
    assert json.loads(first) == ["device", "--device gpu is not a device: use cpu, cuda, cuda:N or mps"]
    assert json.loads(heavy) == []


# -------------------------------------------------------------------------------- round trips

def test_env_round_trip_and_variable_names(files):
    spec = full_spec(files)
    env = spec.to_env("LORAT_VOT_")
    assert all(isinstance(v, str) for v in env.values())
    for name, variable in VOT_NAMES.items():
        assert env[variable] == str(getattr(spec, name))
    assert env["LORAT_VOT_THREADS"] == "3" and env["LORAT_VOT_COMPILE"] == "cudagraph"
    assert TrackerSpec.from_env("LORAT_VOT_", env) == spec
    for name, variable in PYTRACKING_NAMES.items():
        assert spec.to_env("LORAT_")[variable] == str(getattr(spec, name))
    assert TrackerSpec.from_env("LORAT_", spec.to_env("LORAT_")) == spec

    plain = TrackerSpec(weights=files["weights"], compile=True)
    env = plain.to_env("LORAT_VOT_")
    assert not any("SAM" in k for k in env) and "LORAT_VOT_DEVICE" not in env  # unset / not applying: left out
    assert TrackerSpec.from_env("LORAT_VOT_", env) == plain
    # an empty variable is unset; the base supplies what the environment does not
    base = TrackerSpec(variant="B-224", weights="base.bin")
    got = TrackerSpec.from_env("LORAT_", {"LORAT_WEIGHTS": "", "LORAT_DEVICE": "cpu"}, base=base)
    assert got == base.replace(device="cpu")
    with pytest.raises(SpecError) as info:
        TrackerSpec.from_env("LORAT_VOT_", {"LORAT_VOT_THREADS": "many"})
    assert info.value.option == "threads" and str(info.value).startswith("LORAT_VOT_THREADS=many is not valid")


def _argv(spec: TrackerSpec):
    argv = []
    for o in options():
        value = getattr(spec, o.name)
        if value is not None and value != o.default:
            argv += [o.flag, o.format(value)]
    return argv


def test_args_round_trip(files):
    parser = argparse.ArgumentParser()
    TrackerSpec.add_arguments(parser)
    spec = full_spec(files)
    args = parser.parse_args(_argv(spec))
    assert TrackerSpec.from_args(args) == spec
    assert TrackerSpec.from_args(parser.parse_args([])) == TrackerSpec()
    assert _argv(spec)[_argv(spec).index("--compile") + 1] == "cudagraph"
    assert parser.parse_args(["--compile", "on"]).compile is True
    assert parser.parse_args(["--compile", "off"]).compile is False


def test_add_arguments_groups_required_help_and_suppressed_defaults(files):
    p = argparse.ArgumentParser()
    TrackerSpec.add_arguments(p, groups=("model",), required=("weights",), help={"variant": "my help"})
    flags = {a.option_strings[0]: a for a in p._actions if a.option_strings and a.dest != "help"}
    assert sorted(flags) == ["--backbone", "--variant", "--weights"]
    assert flags["--weights"].required and flags["--variant"].help == "my help"
    q = argparse.ArgumentParser()
    TrackerSpec.add_arguments(q, suppress_defaults=True)
    args = q.parse_args(["--device", "cpu"])
    base = full_spec(files)
    assert vars(args) == {"device": "cpu"} and TrackerSpec.from_args(args, base=base) == base.replace(device="cpu")


# ------------------------------------------------------------------------- one-field extensibility

BACKENDS = ("torch", "onnxruntime", "openvino", "tensorrt")


@dataclasses.dataclass(frozen=True)
class SpecWithEngine(TrackerSpec):
    """A new option is one field, nothing else."""
    engine: Optional[str] = option(None, group="runtime", metavar="FILE", file="build it with `lorat export`",
                                   help="a compiled engine file")


def test_a_new_option_is_one_field(files, tmp_path):
    engine = tmp_path / "x.engine"
    engine.write_bytes(b"engine")
    spec = SpecWithEngine(weights=files["weights"], engine=str(engine))
    parser = argparse.ArgumentParser()
    SpecWithEngine.add_arguments(parser)
    assert SpecWithEngine.from_args(parser.parse_args(["--weights", files["weights"], "--engine", str(engine)])) == spec
    assert spec.to_env("LORAT_VOT_")["LORAT_VOT_ENGINE"] == str(engine)
    assert SpecWithEngine.from_env("LORAT_VOT_", spec.to_env("LORAT_VOT_")) == spec
    assert spec.check() is spec
    e = error(spec.replace(engine=str(tmp_path / "y.engine")))
    assert e.option == "engine" and e.render(EnvSpelling("LORAT_")).endswith("does not exist - build it with `lorat export`")
    assert "--engine" in parser.format_help()


def test_backend_is_a_field_of_every_surface(files):
    spec = TrackerSpec(weights=files["weights"], backend="openvino")
    parser = argparse.ArgumentParser()
    TrackerSpec.add_arguments(parser)
    assert TrackerSpec.from_args(parser.parse_args(["--weights", files["weights"], "--backend", "openvino"])) == spec
    assert spec.to_env("LORAT_VOT_")["LORAT_VOT_BACKEND"] == "openvino"
    assert TrackerSpec.from_env("LORAT_VOT_", spec.to_env("LORAT_VOT_")) == spec
    assert TrackerSpec.from_env("LORAT_", {"LORAT_WEIGHTS": files["weights"], "LORAT_BACKEND": "openvino"}) == spec
    assert spec.tracker_kwargs()["backend"] == "openvino"
    assert spec.check() is spec and spec.replace(precision="int8").check().precision == "int8"
    e = error(spec.replace(backend="cuda"))
    assert e.option == "backend" and e.render(FLAGS) == "--backend cuda is not one of " + ", ".join(BACKENDS)
    e = error(spec.replace(precision="fp16"))
    assert e.option == "precision" and e.render(FLAGS) == \
        "--precision fp16 does not run on --backend openvino: use auto or fp32 or bf16 or int8"
    e = error(spec.replace(backend="torch", precision="int8"))
    assert e.option == "precision" and "--backend torch" in e.render(FLAGS)
    e = error(spec.replace(compile="cudagraph"))
    assert e.option == "compile" and e.render(FLAGS) == \
        "--compile cudagraph applies to --backend torch only - leave it out for --backend openvino"


# ------------------------------------------------------------------------------------ build()

def test_build_is_from_pretrained_and_threads_is_the_opt_in(tiny_model):
    import numpy as np
    import torch

    from lorat_tracker import LoRATTracker

    spec = TrackerSpec(variant=tiny_model.variant, weights=str(tiny_model.weights), backbone=str(tiny_model.backbone),
                       device="cpu", precision="fp32")
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        built = spec.build()
        assert torch.get_num_threads() == 2  # threads=None leaves torch's setting alone
        reference = LoRATTracker.from_pretrained(tiny_model.variant, weights=tiny_model.weights,
                                                 backbone=tiny_model.backbone, device="cpu", precision="fp32")
        image = np.random.default_rng(0).integers(0, 255, (120, 160, 3), dtype=np.uint8)
        for t in (built, reference):
            t.initialize(image, [40, 30, 30, 25])
        assert np.array_equal(built.track(image).box, reference.track(image).box) and built.masks is None
        spec.replace(threads=1).build()
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


def test_threads_reach_the_vot_server_and_pytracking(tiny_model, monkeypatch):
    """LORAT_VOT_THREADS / LORAT_THREADS (and --threads) set the thread count of the process that tracks."""
    import torch

    from lorat_tracker.integrations.pytracking import LoRATPytracking, clear_network_cache, params_from_env
    from lorat_tracker.integrations.vot import server

    env = {"LORAT_VOT_WEIGHTS": str(tiny_model.weights), "LORAT_VOT_VARIANT": tiny_model.variant,
           "LORAT_VOT_BACKBONE": str(tiny_model.backbone), "LORAT_VOT_DEVICE": "cpu", "LORAT_VOT_THREADS": "1"}
    spec = server.read_spec(server.build_parser().parse_args([]), environ=env)
    assert spec.threads == 1 and spec.weights == str(tiny_model.weights)
    assert server.read_spec(server.build_parser().parse_args(["--threads", "2"]), environ=env).threads == 2

    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        server.load_tracker(spec)
        assert torch.get_num_threads() == 1
        torch.set_num_threads(2)
        for name, value in (("LORAT_WEIGHTS", tiny_model.weights), ("LORAT_BACKBONE", tiny_model.backbone),
                            ("LORAT_DEVICE", "cpu"), ("LORAT_THREADS", "1")):
            monkeypatch.setenv(name, str(value))
        params = params_from_env(tiny_model.variant, weights=None)
        assert params.threads == 1
        clear_network_cache()
        LoRATPytracking(params).initialize_features()
        assert torch.get_num_threads() == 1
    finally:
        clear_network_cache()
        torch.set_num_threads(before)


def test_pytracking_params_errors_name_the_params_attribute(tmp_path):
    from lorat_tracker.integrations.pytracking import LoRATPytracking, lorat_params

    with pytest.raises(SpecError) as info:
        LoRATPytracking(lorat_params("B-224", weights=str(tmp_path / "nope.bin"))).initialize_features()
    assert info.value.option == "weights" and str(info.value).startswith(f"params.weights = '{tmp_path / 'nope.bin'}'")


def test_cli_names_the_flag_from_the_errors_option(capsys, tmp_path):
    """`lorat track/eval/vot register` print a spec error in flags, straight from its option."""
    from lorat_tracker.cli import main

    (tmp_path / "w.bin").write_bytes(b"x")
    w = str(tmp_path / "w.bin")
    binary = str(tmp_path / "lorat.bin")
    (tmp_path / "lorat.bin").write_bytes(b"\x90\xff\x00 a weights file")
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "config.yaml").write_text("registry:\n- ./trackers.ini\nstack: tests/basic\n")
    cases = [(["track", "clip.mp4", "--box", "1,2,3,4", "--weights", w, "--threads", "0"],
              "lorat track: error: --threads 0 is not a thread count"),
             (["eval", "otb", "--root", str(tmp_path), "--weights", w, "--device", "tpu"],
              "lorat eval: error: --device tpu is not a device"),
             (["vot", "register", "--workspace", str(ws), "--weights", w, "--compile", "fast"],
              "lorat vot: error: --compile fast is not a compile mode"),
             # a weights file passed as --variant: one line, not the YAML decoder's traceback
             (["track", "clip.mp4", "--box", "1,2,3,4", "--weights", w, "--variant", binary],
              f"lorat track: error: variant config file {binary} cannot be read (not a text file)")]
    for argv, expected in cases:
        assert main(argv) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith(expected), err
