"""lorat_tracker.images: one extension list for every folder reader, one decoder function whose two
decoders give each caller the pixels it always got."""
from __future__ import annotations

import cv2
import numpy as np
import pytest
from PIL import Image

from lorat_tracker import datasets, images, video
from lorat_tracker.training.data import read_frame


def _picture(h=37, w=53, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def test_one_extension_list_for_tracking_folders_and_datasets(tmp_path):
    assert video.IMAGE_EXTENSIONS is images.IMAGE_EXTENSIONS and datasets.IMAGE_EXTENSIONS is images.IMAGE_EXTENSIONS
    rgb = _picture()
    names = ["1.jpg", "2.JPEG", "3.png", "4.bmp", "5.tif", "6.TIFF", "7.webp", "8.ppm"]
    for name in names:
        assert cv2.imwrite(str(tmp_path / name), rgb[:, :, ::-1]), name
    for other in ("groundtruth.txt", "absence.label", "notes.jpg.txt"):
        (tmp_path / other).write_text("0\n")
    found = [p.rsplit("/", 1)[-1] for p in datasets.list_images(str(tmp_path))]
    source = video.open_source(str(tmp_path))
    assert found == names and [p.rsplit("/", 1)[-1] for p in source.files] == names
    assert all(images.is_image_file(n) for n in names) and not images.is_image_file("groundtruth.txt")


def test_decoders_give_each_caller_its_pixels(tmp_path):
    rgb = _picture()
    png, jpg, gray = tmp_path / "a.png", tmp_path / "b.jpg", tmp_path / "c.png"
    cv2.imwrite(str(png), rgb[:, :, ::-1])
    cv2.imwrite(str(jpg), rgb[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, 80])
    cv2.imwrite(str(gray), rgb[:, :, 0])
    # Lossless: both decoders give the written pixels.
    assert np.array_equal(images.read_image(png, "opencv"), rgb) and np.array_equal(images.read_image(png, "pil"), rgb)
    # JPEG: "opencv" is cv2.imread + BGR -> RGB (lorat track, selftest, the TraX server) ...
    assert np.array_equal(images.read_rgb(jpg), cv2.cvtColor(cv2.imread(str(jpg)), cv2.COLOR_BGR2RGB))
    # ... and "pil" is what got10k's Tracker.track hands over and the training loader reads.
    with Image.open(jpg) as im:
        expected = np.asarray(im.convert("RGB"))
    assert np.array_equal(images.read_image(jpg, "pil"), expected) and np.array_equal(read_frame(str(jpg)), expected)
    for decoder in images.DECODERS:  # gray files come out as 3 equal channels
        out = images.read_image(gray, decoder)
        assert out.shape == (37, 53, 3) and out.dtype == np.uint8 and np.array_equal(out[:, :, 2], rgb[:, :, 0])


def test_unreadable_files(tmp_path):
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"not an image")
    with pytest.raises(FileNotFoundError, match="cannot read image"):
        images.read_image(bad, "opencv")
    with pytest.raises(OSError):
        images.read_image(bad, "pil")
    with pytest.raises(ValueError, match="unknown image decoder 'turbojpeg'"):
        images.read_image(bad, "turbojpeg")
    with pytest.raises(video.SourceError, match="cannot read frame 0"):
        next(video.open_source(str(bad)).frames())


def test_vot_server_and_got10k_readers(tmp_path):
    pytest.importorskip("got10k")
    from lorat_tracker.integrations.got10k import read_image
    from lorat_tracker.integrations.vot.server import read_frame as vot_read_frame

    jpg = tmp_path / "f.jpg"
    cv2.imwrite(str(jpg), _picture(seed=1)[:, :, ::-1])
    assert np.array_equal(vot_read_frame(str(jpg)), images.read_image(jpg, "opencv"))
    assert vot_read_frame(str(tmp_path / "missing.jpg")) is None
    with Image.open(jpg) as im:  # got10k.trackers.Tracker.track: Image.open, convert('RGB') if not RGB
        assert np.array_equal(read_image(str(jpg)), np.asarray(im if im.mode == "RGB" else im.convert("RGB")))
