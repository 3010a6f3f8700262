"""Images in and out of the one format the tracker takes: RGB ``uint8`` numpy arrays of shape (H, W, 3).

One decoder function, ``read_image(path, decoder)``, and one list of image file extensions. PIL and
OpenCV may decode the same JPEG differently in the last bit of a pixel, and every box depends on
every pixel, so the decoder is an explicit choice of each caller, kept as each has always been:

========================================================  ========  =====================================
caller                                                    decoder   why
========================================================  ========  =====================================
``lorat track`` frame folders / files (``video``),        opencv    OpenCV decodes the videos too;
``lorat selftest``, ``run_batched``'s default (read_rgb)            the golden outputs were made so
VOT TraX server (``integrations/vot/server``)             opencv    cv2 + BGR -> RGB, as always
batched ``lorat eval`` (``integrations.got10k.            pil       got10k's ``Tracker.track`` decodes
read_image``)                                                       with PIL: batched = sequential runs
training frames (``training.data.read_frame``)            pil       the official loader (PIL, no EXIF
                                                                    rotation)
========================================================  ========  =====================================

``as_rgb_image`` validates (and, for gray / RGBA, converts) an array a user hands in; ``image_size``
reads only a file's header. cv2 and PIL are imported when first needed.
"""
from __future__ import annotations

import contextlib
import os
from typing import Tuple

import numpy as np

from .errors import DatasetLayoutError, InvalidImageError

# Every file extension read as a frame: in folders given to ``lorat track`` and in dataset sequence
# folders. All are formats that both OpenCV and PIL decode.
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".jp2")

DECODERS = ("opencv", "pil")


def is_image_file(name: str) -> bool:
    """Whether a file name has one of ``IMAGE_EXTENSIONS`` (any case)."""
    return os.fspath(name).lower().endswith(IMAGE_EXTENSIONS)


def read_image(path, decoder: str) -> np.ndarray:
    """An image file as RGB uint8 (H, W, 3), decoded by ``decoder`` (see the module's table).

    "opencv": ``cv2.imread(IMREAD_COLOR)`` then BGR -> RGB; a file OpenCV cannot decode raises
    ``FileNotFoundError``. "pil": ``Image.open`` then ``convert("RGB")`` when not RGB already, no EXIF
    rotation (got10k's toolkit and the official training loader); PIL's own errors (``OSError``,
    ``ValueError``, ``SyntaxError``) pass through.
    """
    if decoder == "opencv":
        import cv2

        image = cv2.imread(os.fspath(path), cv2.IMREAD_COLOR)
        if image is None or image.size == 0:
            raise FileNotFoundError(f"cannot read image {path}")
        return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    if decoder == "pil":
        from PIL import Image

        with Image.open(os.fspath(path)) as im:
            return np.array(im if im.mode == "RGB" else im.convert("RGB"))
    raise ValueError(f"unknown image decoder {decoder!r}: use one of {', '.join(DECODERS)}")


class DamagedFrameWarning(UserWarning):
    """A frame file that is damaged (a JPEG cut short): it is used as the decoder could read it."""


def is_truncated_jpeg(path) -> bool:
    """A JPEG file without its end-of-image marker (a copy cut short): libjpeg decodes what is there
    and fills the rest with grey, printing only a warning of its own to standard error."""
    path = os.fspath(path)
    if not path.lower().endswith((".jpg", ".jpeg")):
        return False
    try:
        with open(path, "rb") as f:
            head = f.read(2)
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - 64))
            tail = f.read().rstrip(b"\x00")
    except OSError:
        return False
    return head == b"\xff\xd8" and not tail.endswith(b"\xff\xd9")


@contextlib.contextmanager
def quiet_stderr():
    """File descriptor 2 sent to /dev/null for the block: a C library's own messages (libjpeg's 'Corrupt
    JPEG data: premature end of data segment') would otherwise land on the user's terminal next to the
    project's one line about the same frame."""
    import sys

    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError, AttributeError):
        yield
        return
    try:
        with open(os.devnull, "wb") as null:
            os.dup2(null.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def read_rgb(path) -> np.ndarray:
    """``read_image(path, "opencv")``: the project's default frame reader (selftest, ``run_batched``)."""
    return read_image(path, "opencv")


def image_size(path: str) -> Tuple[int, int]:
    """(width, height) of an image file from its header (PIL reads no pixels for this)."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            return im.size
    except (OSError, ValueError) as e:
        raise DatasetLayoutError(f"{path} is not a readable image ({e}) - replace or remove the frame") from e


def as_rgb_image(image) -> np.ndarray:
    """Validate a user image: (H, W, 3) uint8 RGB; (H, W) and (H, W, 1) gray, (H, W, 4) RGBA converted."""
    if not isinstance(image, np.ndarray):
        hint = " (a PIL image: pass np.asarray(image.convert('RGB')))" if hasattr(image, "convert") else ""
        raise InvalidImageError(f"image must be a numpy array of shape (H, W, 3), dtype uint8, RGB; "
                                f"got {type(image).__name__}{hint}")
    if image.dtype != np.uint8:
        raise InvalidImageError(f"image must have dtype uint8 (0..255), got {image.dtype} - convert it, e.g. "
                                "(img * 255).clip(0, 255).astype(np.uint8) for 0..1 floats")
    if image.size == 0:
        raise InvalidImageError(f"image is empty (shape {image.shape})")
    if image.ndim == 2:
        return np.repeat(image[:, :, None], 3, axis=2)
    if image.ndim == 3 and image.shape[2] == 3:
        # torch.from_numpy warns on read-only arrays (np.asarray of a PIL image): copy those once.
        return image if image.flags.writeable else image.copy()
    if image.ndim == 3 and image.shape[2] == 1:
        return np.repeat(image, 3, axis=2)
    if image.ndim == 3 and image.shape[2] == 4:
        return image[:, :, :3]
    raise InvalidImageError(f"image must have shape (H, W, 3) RGB (or (H, W) gray, (H, W, 4) RGBA), "
                            f"got {image.shape}")
