"""``--masks sam2``: SAM 2.1 masks of LoRAT's boxes through Meta's ``sam2`` package.

The model is Meta's own hiera-tiny SAM 2.1 config with random weights (``build_sam2(config,
ckpt_path=None)`` under a fixed seed), saved in the released file layout (``{"model": state_dict}``);
nothing is downloaded. The reference is Meta's ``SAM2ImagePredictor`` on a model Meta's
``build_sam2(config, ckpt_path=FILE)`` loaded from that file: the refiner must give its masks, 0
differing pixels.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

pytest.importorskip("sam2")

from lorat_tracker.demo import render_sequence  # noqa: E402
from run_cli import box_arg  # noqa: E402
from lorat_tracker.segmentation import BoxToMask, SamCheckpointError, Sam2BoxToMask  # noqa: E402
from lorat_tracker.segmentation.sam2 import (clip_box, detect_sam2_architecture, normalize_size,  # noqa: E402
                                             read_sam2_checkpoint)

CONFIG = "configs/sam2.1/sam2.1_hiera_t.yaml"


@pytest.fixture(scope="module")
def sam2_file(tmp_path_factory):
    from sam2.build_sam import build_sam2

    torch.manual_seed(0)
    model = build_sam2(CONFIG, ckpt_path=None, device="cpu")
    path = tmp_path_factory.mktemp("sam2") / "sam2.1_hiera_tiny.pt"
    torch.save({"model": model.state_dict()}, path)
    return path


@pytest.fixture(scope="module")
def frame():
    seq = render_sequence(num_frames=2, size_wh=(320, 240), num_objects=2, seed=11)
    return seq.frames[1], seq.boxes[:, 1]  # (H, W, 3) RGB, (objects, 4) x y w h


def test_size_and_version_are_read_from_the_file(sam2_file):
    state, arch = read_sam2_checkpoint(sam2_file)
    assert (arch.size, arch.version, arch.embed_dim, arch.blocks) == ("tiny", "2.1", 96, 12)
    assert arch.config == CONFIG
    assert normalize_size("hiera_t") == normalize_size("T") == "tiny" and normalize_size("b+") == "base_plus"
    with pytest.raises(Exception, match="unknown SAM 2 size 'huge'"):
        normalize_size("huge")
    # SAM 2.0 files lack SAM 2.1's no_obj_embed_spatial and are built from the package's sam2 configs.
    state.pop("no_obj_embed_spatial")
    assert detect_sam2_architecture(state, "x").config == "configs/sam2/sam2_hiera_t.yaml"


def test_clip_box_keeps_the_prompt_in_the_frame():
    np.testing.assert_array_equal(clip_box([-5, 10, 400, 250], (320, 240)), [0, 10, 320, 240])


@pytest.mark.slow
def test_masks_equal_meta_predictor_pixel_for_pixel(sam2_file, frame):
    from sam2.build_sam import build_sam2
    from sam2.sam2_image_predictor import SAM2ImagePredictor

    image, boxes = frame
    refiner = Sam2BoxToMask.from_pretrained(sam2_file, device="cpu")
    assert refiner.model_type == "tiny" and "SAM 2.1 hiera tiny" in refiner.name
    masks = refiner(image, boxes)
    assert refiner.last_failures == []

    predictor = SAM2ImagePredictor(build_sam2(CONFIG, ckpt_path=str(sam2_file), device="cpu"))
    predictor.set_image(image)
    h, w = image.shape[:2]
    for box, mask in zip(boxes, masks):
        x, y, bw, bh = box
        expected, _, _ = predictor.predict(box=clip_box([x, y, x + bw, y + bh], (w, h)), multimask_output=False)
        assert mask.dtype == bool and mask.shape == (h, w)
        assert int((mask != (expected[0] > 0.5)).sum()) == 0  # 0 differing pixels
        assert 0 < mask.sum() < mask.size  # a real mask, not an empty or full one that would match anything
    # A box wholly outside the frame gives no SAM call: the (empty) filled box, said so.
    result = refiner.refine(image, [[400, 300, 20, 20]])[0]
    assert result.fallback == "the box lies outside the frame" and not result.mask.any()


def test_wrong_files_are_one_typed_error(sam2_file, tmp_path):
    import tiny_sam

    sam_v1 = tiny_sam.save_checkpoint(tmp_path / "sam_tiny.pth")
    with pytest.raises(SamCheckpointError, match="is a SAM \\(v1\\) checkpoint, not SAM 2 - use masks='sam'"):
        Sam2BoxToMask.from_pretrained(sam_v1, device="cpu")
    with pytest.raises(SamCheckpointError, match="is a SAM 2 checkpoint, not SAM v1 - use masks='sam2'"):
        BoxToMask.from_pretrained(sam2_file, device="cpu")
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(sam2_file.read_bytes()[:100_000])
    with pytest.raises(SamCheckpointError, match="SAM 2 checkpoint"):
        Sam2BoxToMask.from_pretrained(truncated, device="cpu")
    state = torch.load(sam2_file, weights_only=True)["model"]
    edited = dict(state)
    edited.pop("sam_mask_decoder.iou_token.weight")
    torch.save({"model": edited}, tmp_path / "edited.pt")
    with pytest.raises(SamCheckpointError, match="lacks 1 tensors \\(sam_mask_decoder.iou_token.weight\\)"):
        Sam2BoxToMask.from_pretrained(tmp_path / "edited.pt", device="cpu")
    with pytest.raises(SamCheckpointError, match="is SAM 2.1 hiera tiny .* but small was asked"):
        Sam2BoxToMask.from_pretrained(sam2_file, model_type="small", device="cpu")


# ------------------------------------------------------------------------------------ lorat track --masks sam2

@pytest.fixture(scope="module")
def frames(tmp_path_factory):
    import cv2

    folder = tmp_path_factory.mktemp("sam2_clip") / "img"
    folder.mkdir()
    seq = render_sequence(num_frames=2, size_wh=(320, 180), seed=5)
    for i, f in enumerate(seq.frames):
        cv2.imwrite(str(folder / f"{i:04d}.png"), cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
    return folder, seq.boxes[0][0]


@pytest.mark.slow
def test_track_writes_sam2_masks(frames, sam2_file, tiny_model, tmp_path, capsys):
    import cv2

    from lorat_tracker.cli import main as lorat_main
    from lorat_tracker.images import read_rgb

    folder, box = frames
    code = lorat_main(["track", str(folder), "--box", box_arg(box), *tiny_model.cli_args(), "--device", "cpu",
                       "--masks", "sam2", "--sam-checkpoint", str(sam2_file), "--sam-type", "tiny",
                       "--mask-dir", str(tmp_path / "m"), "--output", str(tmp_path / "b.txt"), "--no-progress"])
    assert code == 0, capsys.readouterr().err
    pngs = sorted((tmp_path / "m").iterdir())
    assert [p.name for p in pngs] == ["00000000.png", "00000001.png"]
    refiner = Sam2BoxToMask.from_pretrained(sam2_file, device="cpu")
    tracker = tiny_model.tracker()
    images = [read_rgb(p) for p in sorted(folder.iterdir())]
    tracker.initialize(images[0], box)
    tracker.track(images[1])
    expected = [refiner(images[0], [box])[0], refiner(images[1], tracker.target.box[None], box_format="xyxy")[0]]
    for png, mask in zip(pngs, expected):
        assert np.array_equal(cv2.imread(str(png), cv2.IMREAD_UNCHANGED) == 255, mask), png


@pytest.mark.parametrize("case", ["v1-file", "sam2-file-as-sam", "wrong-size", "v1-size", "fp16", "no-checkpoint",
                                  "not-installed"])
def test_sam2_mistakes_give_one_line(frames, sam2_file, tiny_model, tmp_path, capsys, monkeypatch, case):
    import sys

    import tiny_sam

    from lorat_tracker.cli import main as lorat_main

    folder, box = frames
    mask_dir = ["--mask-dir", str(tmp_path / "m")]
    sam2 = ["--masks", "sam2", "--sam-checkpoint", str(sam2_file)]
    if case == "v1-file":
        sam2 = ["--masks", "sam2", "--sam-checkpoint", str(tiny_sam.save_checkpoint(tmp_path / "sam_tiny.pth"))]
    extra, expected = {
        "v1-file": (sam2, "is a SAM (v1) checkpoint, not SAM 2 - use --masks sam"),
        "sam2-file-as-sam": (["--masks", "sam", "--sam-checkpoint", str(sam2_file)],
                             "is a SAM 2 checkpoint, not SAM v1 - use --masks sam2"),
        "wrong-size": ([*sam2, "--sam-type", "large"], "is SAM 2.1 hiera tiny"),
        "v1-size": ([*sam2, "--sam-type", "vit_b"], "--sam-type vit_b is a size of --masks sam, not of --masks sam2"),
        "fp16": ([*sam2, "--sam-precision", "fp16"], "SAM 2 runs in fp32 or bf16"),
        "no-checkpoint": (["--masks", "sam2"], "--masks sam2 needs --sam-checkpoint FILE"),
        "not-installed": (sam2, 'SAM2_BUILD_CUDA=0 pip install --no-build-isolation "lorat-tracker[sam2]"'),
    }[case]
    if case == "not-installed":
        for name in ("sam2", "sam2.build_sam", "sam2.sam2_image_predictor"):
            monkeypatch.setitem(sys.modules, name, None)
    code = lorat_main(["track", str(folder), f"--box={box_arg(box)}", *tiny_model.cli_args(), "--device", "cpu",
                       "--output", str(tmp_path / "b.txt"), "--no-progress", *extra, *mask_dir])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("lorat track: error:") and expected in err[0], err
    assert not (tmp_path / "b.txt").exists() and not (tmp_path / "m").exists()


# ------------------------------------------------------------------------------ VOTS: plain `vot evaluate`

@pytest.mark.slow
def test_vots_stack_gets_sam2_masks_through_plain_vot_evaluate(tmp_path, tiny_model, sam2_file):
    pytest.importorskip("trax")
    pytest.importorskip("vot")
    from test_vot import frame_paths, kind, lorat, ok, read_results, vot
    from test_vot_sam import full_mask

    from lorat_tracker.demo import write_vots_masks
    from lorat_tracker.images import read_rgb
    from lorat_tracker.integrations.vot.regions import mask_bbox_xywh
    from lorat_tracker.integrations.vot.workspace import create_workspace

    name_id = "LoRAT_tiny_SAM2"
    seqs = write_vots_masks(tmp_path / "src", count=1, frames=2, objects=2)
    ws = create_workspace(tmp_path / "ws", "tests/multiobject", sequences=tmp_path / "src", log=lambda *_: None)
    ok(lorat("vot", "register", "--workspace", ws, *tiny_model.cli_args(), "--name", name_id, "--device", "cpu",
             "--masks", "sam2", "--sam-checkpoint", sam2_file))
    ini = (ws / "trackers.ini").read_text()
    assert "label = LoRAT tiny-mlp-224 + SAM 2.1 tiny" in ini and "timeout = 315" in ini  # 300 + 3 * (3.0 s a frame + 20 objects * 0.1 s), (out, ini)
    ok(vot("evaluate", "--workspace", ws, name_id))

    refiner = Sam2BoxToMask.from_pretrained(sam2_file, device="cpu")
    tracker = tiny_model.tracker()
    for name, seq in seqs.items():
        paths = frame_paths(ws / "sequences" / name)
        targets = [tracker.new_target(read_rgb(paths[0]), list(map(float, mask_bbox_xywh(seq.masks[o][0]))))
                   for o in range(2)]
        results = [read_results(ws / "results" / name_id / "baseline" / name / f"{name}_obj{o + 1}_001.bin")
                   for o in range(2)]
        for k in range(1, len(paths)):
            image = read_rgb(paths[k])
            tracker.step(targets, image)
            expected = refiner(image, np.stack([t.box for t in targets]), box_format="xyxy")
            for o in range(2):
                assert kind(results[o][k]) == "Mask"
                assert np.array_equal(full_mask(results[o][k], seq.size_wh), expected[o]), (o, k)
    log = (ws / "logs" / f"{name_id}.tracker.log").read_text()
    assert "SAM 2.1 hiera tiny (sam2.1_hiera_tiny.pt) loaded" in log and "SAM gave no mask" not in log
