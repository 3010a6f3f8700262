"""``lorat track`` end to end: mp4 / folder / glob sources, GT-file boxes, outputs, Ctrl-C, user mistakes."""
from __future__ import annotations

import os
import re
from pathlib import Path

import cv2
import numpy as np
import pytest

from run_cli import box_arg, run_lorat
from lorat_tracker.demo import render_sequence

from lorat_tracker.cli import main as lorat_main

NUM_FRAMES = 10


def read_lines(path: Path):
    return [ln for ln in path.read_text().splitlines() if ln.strip()]


def parse_rows(lines):
    rows = []
    for ln in lines:
        parts = ln.split(",")
        assert len(parts) == 5, ln
        rows.append([float(p) for p in parts])
    return np.array(rows)


def count_video_frames(path: Path) -> int:
    cap = cv2.VideoCapture(str(path))
    assert cap.isOpened(), path
    n = 0
    while True:
        ok, _ = cap.read()
        if not ok:
            break
        n += 1
    cap.release()
    return n


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    """A 10-frame 320x240 synthetic sequence as an mp4 (mp4v), a folder of PNGs and a GT file."""
    root = tmp_path_factory.mktemp("clip")
    seq = render_sequence(num_frames=NUM_FRAMES, size_wh=(320, 240), seed=3)
    mp4 = root / "clip.mp4"
    writer = cv2.VideoWriter(str(mp4), cv2.VideoWriter_fourcc(*"mp4v"), 25, seq.size_wh)
    assert writer.isOpened()
    frames = root / "frames"
    frames.mkdir()
    for i, rgb in enumerate(seq.frames):
        bgr = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
        writer.write(bgr)
        cv2.imwrite(str(frames / f"{i + 1:08d}.png"), bgr)
    writer.release()
    gt = root / "groundtruth.txt"
    gt.write_text("\n".join("\t".join(f"{v:g}" for v in b) for b in seq.boxes[0]) + "\n")
    return {"root": root, "mp4": mp4, "frames": frames, "gt": gt, "seq": seq}


def test_track_mp4_matches_core_tracker(clip, tiny_model, tmp_path):
    boxes_txt, video = tmp_path / "out" / "boxes.txt", tmp_path / "annotated.mp4"
    init = clip["seq"].boxes[0, 0]
    r = run_lorat("track", clip["mp4"], "--box", box_arg(init), *tiny_model.cli_args(), "--device", "cpu",
                  "--output", boxes_txt, "--video", video, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr
    assert "10 frames (0..9)" in r.stderr and "fps mean" in r.stderr and str(boxes_txt) in r.stderr
    rows = parse_rows(read_lines(boxes_txt))
    assert rows.shape == (NUM_FRAMES, 5)
    np.testing.assert_allclose(rows[0], [*init, 1.0])
    assert count_video_frames(video) == NUM_FRAMES

    # The CLI adds nothing to the boxes: the core tracker on the same decoded frames gives the same numbers.
    cap = cv2.VideoCapture(str(clip["mp4"]))
    frames = []
    while True:
        ok, bgr = cap.read()
        if not ok:
            break
        frames.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
    tracker = tiny_model.tracker()
    tracker.initialize(frames[0], init)
    expected = [tracker.track(f) for f in frames[1:]]
    np.testing.assert_allclose(rows[1:, :4], [p.box for p in expected], atol=6e-4)
    np.testing.assert_allclose(rows[1:, 4], [p.score for p in expected], atol=6e-5)


@pytest.mark.slow
def test_track_folder_gt_box_end_inclusive_and_avi(clip, tiny_model, tmp_path):
    boxes_txt, video = tmp_path / "boxes.txt", tmp_path / "annotated.avi"
    r = run_lorat("track", clip["frames"], "--box", clip["gt"], *tiny_model.cli_args(), "--device", "cpu",
                  "--end", 4, "--output", boxes_txt, "--video", video, "--no-progress")
    assert r.returncode == 0, r.stderr
    rows = parse_rows(read_lines(boxes_txt))
    assert rows.shape == (5, 5)  # frames 0..4: --end is inclusive
    np.testing.assert_allclose(rows[0, :4], clip["seq"].boxes[0, 0])
    assert count_video_frames(video) == 5


@pytest.mark.slow
def test_track_glob_start_to_stdout(clip, tiny_model):
    start = 6
    init = clip["seq"].boxes[0, start]
    pattern = str(clip["frames"] / "*.png")
    r = run_lorat("track", pattern, "--box", " ".join(f"{v:g}" for v in init), *tiny_model.cli_args(),
                  "--device", "cpu", "--start", start)
    assert r.returncode == 0, r.stderr
    rows = parse_rows(r.stdout.splitlines())  # stdout carries nothing but the boxes
    assert rows.shape == (NUM_FRAMES - start, 5)
    np.testing.assert_allclose(rows[0, :4], init)
    assert f"({start}..{NUM_FRAMES - 1})" in r.stderr


# ------------------------------------------------------------------------------------ user mistakes

def lorat_error(capsys, *args) -> str:
    """Run the CLI in-process; a user mistake must give exit 2 and one line on stderr, no traceback."""
    rc = lorat_main([str(a) for a in args])
    err = capsys.readouterr().err
    assert rc == 2, err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and "Traceback" not in err, err
    assert lines[0].startswith("lorat ") and "error:" in lines[0]
    return lines[0]


def test_missing_source(capsys, tiny_model, tmp_path):
    msg = lorat_error(capsys, "track", tmp_path / "nope.mp4", "--box", "1,2,3,4", *tiny_model.cli_args())
    assert "nope.mp4 does not exist" in msg


def test_glob_matching_nothing(capsys, tiny_model, tmp_path):
    msg = lorat_error(capsys, "track", tmp_path / "*.jpg", "--box", "1,2,3,4", *tiny_model.cli_args())
    assert "no files match" in msg


def test_unreadable_video(capsys, tiny_model, tmp_path):
    bad = tmp_path / "broken.mp4"
    bad.write_bytes(b"this is not a video" * 100)
    msg = lorat_error(capsys, "track", bad, "--box", "1,2,3,4", *tiny_model.cli_args())
    assert "broken.mp4" in msg and ("cannot open" in msg or "no frame" in msg)


def test_empty_folder(capsys, tiny_model, tmp_path):
    msg = lorat_error(capsys, "track", tmp_path, "--box", "1,2,3,4", *tiny_model.cli_args())
    assert "holds no image files" in msg


def test_box_outside_frame(capsys, clip, tiny_model):
    msg = lorat_error(capsys, "track", clip["frames"], "--box", "400,300,20,20", *tiny_model.cli_args())
    assert "outside the 320x240 image" in msg


@pytest.mark.parametrize("box, expect", [("1,2,3", "has 3 numbers"), ("a,b,c,d", "neither x,y,w,h"),
                                         ("10,10,0,5", "width or height <= 0"),
                                         ("missing/gt.txt", "does not exist")])
def test_bad_box(capsys, clip, tiny_model, box, expect):
    msg = lorat_error(capsys, "track", clip["frames"], "--box", box, *tiny_model.cli_args())
    assert expect in msg


def test_box_file_with_text(capsys, clip, tiny_model, tmp_path):
    gt = tmp_path / "gt.txt"
    gt.write_text("x,y,w,h\n1,2,3,4\n")
    msg = lorat_error(capsys, "track", clip["frames"], "--box", gt, *tiny_model.cli_args())
    assert "first line" in msg


def test_start_beyond_end(capsys, clip, tiny_model):
    msg = lorat_error(capsys, "track", clip["frames"], "--box", "1,2,30,40", "--start", 10, *tiny_model.cli_args())
    assert "--start 10 is beyond the end" in msg and "10 frames" in msg
    msg = lorat_error(capsys, "track", clip["mp4"], "--box", "1,2,30,40", "--start", 50, *tiny_model.cli_args())
    assert "--start 50 is beyond the end" in msg


def test_end_before_start(capsys, clip, tiny_model):
    msg = lorat_error(capsys, "track", clip["frames"], "--box", "1,2,30,40", "--start", 5, "--end", 2,
                      *tiny_model.cli_args())
    assert "--end 2 is before --start 5" in msg


def test_unknown_variant(capsys, clip, tiny_model):
    msg = lorat_error(capsys, "track", clip["frames"], "--box", "1,2,30,40", "--variant", "B-999",
                      "--weights", tiny_model.weights)
    assert "unknown variant 'B-999'" in msg and "B-224" in msg


def test_weights_of_another_variant(capsys, clip, tiny_model):
    other = Path(tiny_model.weights).parent.parent / "tiny-swiglu" / "lorat.bin"
    msg = lorat_error(capsys, "track", clip["frames"], "--box", "1,2,30,40", "--variant", tiny_model.variant,
                      "--weights", other, "--backbone", tiny_model.backbone)
    assert "lorat.bin" in msg and tiny_model.variant in msg


@pytest.mark.parametrize("kind", ["directory", "corrupt", "missing", "empty"])
def test_bad_weights_file(capsys, clip, tiny_model, tmp_path, kind):
    path = tmp_path / "weights.bin"
    if kind == "directory":
        path.mkdir()
    elif kind == "corrupt":
        path.write_bytes(b"PK\x03\x04" + os.urandom(2000))
    elif kind == "empty":
        path.write_bytes(b"")
    msg = lorat_error(capsys, "track", clip["frames"], "--box", "1,2,30,40", "--variant", tiny_model.variant,
                      "--weights", path, "--backbone", tiny_model.backbone)
    expect = {"directory": "is a directory", "corrupt": "corrupt", "missing": "does not exist",
              "empty": "empty"}[kind]
    assert expect in msg


def test_bad_video_extension(capsys, clip, tiny_model, tmp_path):
    msg = lorat_error(capsys, "track", clip["frames"], "--box", "1,2,30,40", *tiny_model.cli_args(),
                      "--video", tmp_path / "out.gif")
    assert "unsupported extension .gif" in msg


def test_mistake_in_a_real_process_has_no_traceback(clip, tiny_model):
    r = run_lorat("track", clip["frames"], "--box", "1;2;3", *tiny_model.cli_args())
    assert r.returncode == 2
    assert "Traceback" not in r.stderr
    assert r.stderr.strip().splitlines() == ["lorat track: error: --box '1;2;3' has 3 numbers; expected 4: x,y,w,h"]


def test_help_has_example(capsys):
    with pytest.raises(SystemExit) as e:
        lorat_main(["track", "--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert "examples:" in out and "lorat track clip.mp4 --box" in out and "INCLUSIVE" in out


def test_folder_order_is_natural(tmp_path):
    from lorat_tracker.video import open_source

    for name in ("10.png", "2.png", "1.png", "notes.txt"):
        (tmp_path / name).write_bytes(b"")
    assert [Path(p).name for p in open_source(tmp_path).paths] == ["1.png", "2.png", "10.png"]


def test_frame_size_change_is_one_warning_line(capsys, clip, tiny_model, tmp_path):
    frames = tmp_path / "frames"
    frames.mkdir()
    for i, rgb in enumerate(clip["seq"].frames[:4]):
        if i >= 2:
            rgb = cv2.resize(rgb, (300, 220))
        cv2.imwrite(str(frames / f"{i}.png"), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    video = tmp_path / "a.avi"
    rc = lorat_main(["track", str(frames), "--box", box_arg(clip["seq"].boxes[0, 0]), *map(str, tiny_model.cli_args()),
                     "--device", "cpu", "--no-progress", "--video", str(video), "-o", str(tmp_path / "b.txt")])
    err = capsys.readouterr().err
    assert rc == 0, err
    warning_lines = [ln for ln in err.splitlines() if "warning" in ln]
    assert len(warning_lines) == 1 and warning_lines[0].startswith("lorat track: warning: frame size 300x220")
    assert count_video_frames(video) == 4


# ------------------------------------------------------------------------- outputs that are inputs

def test_output_naming_an_input_is_refused_and_nothing_is_overwritten(capsys, clip, tiny_model):
    frame = clip["frames"] / "00000003.png"
    before = {p: p.read_bytes() for p in (frame, clip["mp4"], clip["gt"])}
    # The same file through another spelling (a relative path with ..) is still recognised.
    mp4_other_spelling = os.path.relpath(clip["root"] / ".." / clip["root"].name / "clip.mp4")
    cases = [(clip["frames"], "--output", frame, "is an input frame of"),
             (clip["mp4"], "--output", clip["mp4"], "is the input"),
             (clip["mp4"], "--video", clip["mp4"], "is the input"),
             (clip["mp4"], "--video", mp4_other_spelling, "is the input"),
             (clip["frames"], "--output", clip["gt"], "is the --box file")]
    for source, option, target, expect in cases:
        msg = lorat_error(capsys, "track", source, "--box", clip["gt"], *tiny_model.cli_args(), option, target)
        assert f"{option} {target} {expect}" in msg and "overwrite" in msg, msg
    assert {p: p.read_bytes() for p in before} == before


# ------------------------------------------------------------------------- messages speak in flags

PYTHON_ADVICE = re.compile(r"\b(variant|weights|backbone|device|precision)=")


def test_cli_errors_speak_in_flags_not_python(capsys, clip, tiny_model, tmp_path):
    """The core says `pass backbone=PATH` to Python callers; the CLI user reads `--backbone FILE`."""
    common = [clip["frames"], "--box", clip["gt"]]
    cases = [
        # no backbone file and no timm name to fetch one
        (["--variant", tiny_model.variant, "--weights", tiny_model.weights], "pass --backbone FILE"),
        # the two files swapped
        (["--variant", tiny_model.variant, "--weights", tiny_model.backbone, "--backbone", tiny_model.weights],
         "pass it as --backbone FILE and the LoRAT .bin as --weights FILE"),
        # a width-384 tiny file under a base-size variant: the variant to pass instead is a flag
        (["--variant", "B-224", "--weights", tiny_model.weights, "--backbone", tiny_model.backbone],
         "B-224 expects 768"),
    ]
    import torch

    if not torch.cuda.is_available():
        cases.append(([*tiny_model.cli_args(), "--device", "cuda"], "use --device cpu"))
    for args, expect in cases:
        msg = lorat_error(capsys, "track", *common, *args)
        assert expect in msg, msg
        assert not PYTHON_ADVICE.search(msg), msg


def test_core_messages_name_options_as_data_not_in_python_spelling():
    """The core's advice names options in templates (LoRATError.naming: {backbone:FILE}), rendered in each
    caller's spelling; no message literal spells one the Python way for the CLI to rewrite."""
    from lorat_tracker.errors import WeightsError
    from lorat_tracker.spec import FLAGS, EnvSpelling, options

    names = "|".join(o.name for o in options())
    python_advice = re.compile(r"\b(%s)=(PATH|'[^']*'|\)|$)" % names)
    core = Path(__file__).resolve().parent.parent / "lorat_tracker"
    modules = ["tracker.py", "config.py", "batched.py", "video.py"]
    modules += sorted(str(p.relative_to(core)) for p in (core / "weights").glob("*.py"))
    modules += sorted(str(p.relative_to(core)) for p in (core / "backends").glob("*.py"))
    modules += sorted(str(p.relative_to(core)) for p in (core / "segmentation").glob("*.py"))
    templates = 0
    for module in modules:
        text = (core / module).read_text()
        templates += len(re.findall(r"\{\{?(?:%s)(?::[^}]*)?\}" % names, text))
        for literal in re.findall(r"f?\"[^\"\n]*\"", text):
            assert not python_advice.search(literal), (module, literal)
    assert templates >= 10
    e = WeightsError.naming("pass {backbone:FILE}, or {variant:L-224} on {device:cpu}")
    assert str(e) == "pass backbone=PATH, or variant='L-224' on device='cpu'"
    assert e.render(FLAGS) == "pass --backbone FILE, or --variant L-224 on --device cpu"
    assert e.render(EnvSpelling("LORAT_")) == "pass LORAT_BACKBONE=FILE, or LORAT_VARIANT=L-224 on LORAT_DEVICE=cpu"


def test_absurd_box_and_damaged_frames(tiny_model, tmp_path):
    """--box 0,0,1e30,1e30 was accepted and every box had zero width; a JPEG cut short was tracked with
    only libjpeg's own line on the terminal."""
    seq = render_sequence(num_frames=8, size_wh=(160, 120), seed=5, object_size=(30, 24))
    frames = tmp_path / "frames"
    frames.mkdir()
    for i, rgb in enumerate(seq.frames):
        cv2.imwrite(str(frames / f"{i:04d}.jpg"), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    proc = run_lorat("track", frames, "--box", "0,0,1e30,1e30", *tiny_model.cli_args(), "--device", "cpu")
    assert proc.returncode == 2 and "more than 4 times the size of the 160x120 image" in proc.stderr
    damaged = frames / "0003.jpg"
    damaged.write_bytes(damaged.read_bytes()[:1500])
    box = ",".join(str(int(v)) for v in seq.boxes[0, 0])
    proc = run_lorat("track", frames, "--box", box, *tiny_model.cli_args(), "--device", "cpu", "--no-progress",
                     "--output", tmp_path / "boxes.txt")
    assert proc.returncode == 0, proc.stderr
    assert "corrupt jpeg" not in proc.stderr.lower() and "premature end" not in proc.stderr.lower()
    assert proc.stderr.count("frame 3 (") == 1 and "is damaged (a JPEG cut short)" in proc.stderr
    assert "1 damaged frame(s), tracked as decoded: 3" in proc.stderr
    assert len(read_lines(tmp_path / "boxes.txt")) == 8
