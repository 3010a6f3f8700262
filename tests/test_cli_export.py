"""``lorat export`` + ``lorat info``: the merged file alone reproduces the tracker; info says what files are."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from run_cli import run_lorat
from lorat_tracker.demo import render_sequence

from lorat_tracker import LoRATTracker
from lorat_tracker.cli import main as lorat_main


@pytest.fixture(scope="module")
def exported(tiny_model, tmp_path_factory):
    out = tmp_path_factory.mktemp("export") / "sub" / "tiny.safetensors"
    r = run_lorat("export", *tiny_model.cli_args(), "--out", out)
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr
    assert out.is_file() and not out.with_name(out.name + ".partial").exists()
    assert f"wrote {out}" in r.stdout and "no --variant or --backbone needed" in r.stdout
    return out


def test_exported_file_alone_gives_identical_boxes(exported, tiny_model):
    seq = render_sequence(num_frames=8, size_wh=(320, 240), seed=11)
    init = seq.boxes[0, 0]
    reference, merged = tiny_model.tracker(), LoRATTracker.from_pretrained(None, weights=exported, device="cpu")
    assert merged.cfg == reference.cfg
    reference.initialize(seq.frames[0], init)
    merged.initialize(seq.frames[0], init)
    for frame in seq.frames[1:]:
        a, b = reference.track(frame), merged.track(frame)
        np.testing.assert_array_equal(a.box, b.box)
        assert a.score == b.score


@pytest.mark.slow
def test_info_on_export(exported, tiny_model):
    r = run_lorat("info", exported)
    assert r.returncode == 0, r.stderr
    assert "merged-export (safetensors)" in r.stdout
    assert f"variant:         {tiny_model.variant}" in r.stdout
    assert "needs backbone:  no" in r.stdout
    assert "parameters:      455,429" in r.stdout
    assert "LoRA:            merged into the backbone (rank 8, alpha 16)" in r.stdout


def test_info_text_for_a_lora_file(capsys, tiny_model):
    assert lorat_main(["info", str(tiny_model.weights)]) == 0
    out = capsys.readouterr().out
    assert "lorat-lora (safetensors)" in out
    assert "LoRA:            rank 8, alpha 16" in out
    assert "needs backbone:  yes" in out
    assert "matching variants: tiny-mlp-224, tiny-mlp-378" in out


def test_info_json_and_backbone_file(capsys, tiny_model):
    assert lorat_main(["info", str(tiny_model.backbone), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["kind"] == "backbone-meta" and data["embed_dim"] == 96 and data["needs_backbone"] is False
    assert lorat_main(["info", str(tiny_model.backbone)]) == 0
    assert "pass it with --backbone" in capsys.readouterr().out


def one_error_line(capsys, *args) -> str:
    rc = lorat_main([str(a) for a in args])
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert rc == 2 and len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


@pytest.mark.parametrize("kind", ["missing", "directory", "corrupt"])
def test_info_bad_file(capsys, tmp_path, kind):
    path = tmp_path / "w.safetensors"
    if kind == "directory":
        path.mkdir()
    elif kind == "corrupt":
        path.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all}" + b"\x00" * 100)
    msg = one_error_line(capsys, "info", path)
    assert msg.startswith("lorat info: error:")
    assert {"missing": "does not exist", "directory": "is a directory", "corrupt": "corrupt"}[kind] in msg


def test_export_mistakes(capsys, tiny_model, tmp_path):
    msg = one_error_line(capsys, "export", *tiny_model.cli_args(), "--out", tmp_path)
    assert "is a folder" in msg
    msg = one_error_line(capsys, "export", *tiny_model.cli_args(), "--out", tiny_model.weights)
    assert "is one of the input files" in msg
    msg = one_error_line(capsys, "export", "--variant", "nope-224", "--weights", tiny_model.weights,
                         "--out", tmp_path / "x.safetensors")
    assert "unknown variant 'nope-224'" in msg
    assert not (tmp_path / "x.safetensors").exists()


def test_help_has_examples(capsys):
    for command, example in (("export", "lorat export --variant B-224"), ("info", "lorat info base.bin")):
        with pytest.raises(SystemExit) as e:
            lorat_main([command, "--help"])
        assert e.value.code == 0
        assert example in capsys.readouterr().out


def test_edited_export_is_one_error_line_for_info_and_track(capsys, tiny_model, tmp_path):
    """A header that is not JSON, or was edited, is exit code 2 and one line - not a JSONDecodeError traceback."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    from lorat_tracker.selftest import DATA_DIR

    out = tmp_path / "merged.safetensors"
    assert lorat_main(["export", *tiny_model.cli_args(), "--out", str(out)]) == 0
    capsys.readouterr()
    with safe_open(str(out), framework="pt") as f:
        metadata, tensors = dict(f.metadata()), {k: f.get_tensor(k) for k in f.keys()}
    frames = DATA_DIR / "sequences" / "apple-2"
    box = (frames / "init_box.txt").read_text().strip()
    for name, config, expect in (
            ("broken.safetensors", metadata["config"][:-3], "configuration is not valid JSON"),
            ("heads.safetensors", metadata["config"].replace('"num_heads": 3', '"num_heads": 4'),
             "the export's configuration was edited")):
        assert config != metadata["config"]
        path = tmp_path / name
        save_file(tensors, str(path), metadata={**metadata, "config": config})
        for args in (["info", path], ["track", frames, "--box", box, "--weights", path, "--device", "cpu"]):
            msg = one_error_line(capsys, *args)
            assert expect in msg and "re-export it with lorat export" in msg, msg


def test_info_on_a_text_file_says_it_is_not_a_weights_file(capsys):
    readme = Path(__file__).resolve().parent.parent / "README.md"
    msg = one_error_line(capsys, "info", readme)
    assert "is not a weights file (a text file)" in msg and "download" not in msg
