"""Frame sources for ``lorat track`` and anyone's own loop: video files, frame folders, globs, cameras.

``open_source(spec)`` takes what a user types - ``clip.mp4``, ``frames/``, ``'frames/*.jpg'``,
``0`` (camera index), ``rtsp://...`` - and returns a ``FrameSource`` whose ``frames(start, end)``
yields ``(index, rgb)`` with ``rgb`` an (H, W, 3) uint8 RGB array (the tracker's one image format;
OpenCV's BGR is converted here, once). OpenCV does all decoding; nothing here parses a container.
"""
from __future__ import annotations

import contextlib
import glob
import os
import re
import warnings
from typing import Iterator, List, Optional, Tuple

import cv2
import numpy as np

from .errors import SourceError, SourceNotFoundError
from .images import IMAGE_EXTENSIONS, DamagedFrameWarning, is_image_file, is_truncated_jpeg, quiet_stderr, read_image

def _natural_key(path: str):
    """'frame10.png' after 'frame9.png': digit runs compare as numbers."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", os.path.basename(path))]


def _to_rgb(bgr: np.ndarray) -> np.ndarray:
    if bgr.ndim == 2:
        return cv2.cvtColor(bgr, cv2.COLOR_GRAY2RGB)
    if bgr.shape[2] == 4:
        return cv2.cvtColor(bgr, cv2.COLOR_BGRA2RGB)
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


class FrameSource:
    """A sequence of RGB frames; ``num_frames`` is None when unknown (live sources, some containers)."""

    description: str = ""
    is_live: bool = False
    num_frames: Optional[int] = None
    fps: Optional[float] = None
    damaged: Tuple[int, ...] = ()  # indices of the damaged frames read so far (a DamagedFrameWarning each)

    @property
    def files(self) -> List[str]:
        """The files this source reads (frame images or the video file); empty for cameras and streams."""
        return []

    def frames(self, start: int = 0, end: Optional[int] = None) -> Iterator[Tuple[int, np.ndarray]]:
        """Frames ``start``..``end`` (both inclusive, 0-based; ``end=None``: to the last one)."""
        raise NotImplementedError

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class ImageFolderSource(FrameSource):
    """Image files, in natural name order (``1.png, 2.png, ..., 10.png``)."""

    def __init__(self, paths: List[str], description: str):
        self.paths = paths
        self.description = description
        self.num_frames = len(paths)
        self.damaged: List[int] = []  # indices of damaged frames read so far

    @property
    def files(self) -> List[str]:
        return list(self.paths)

    def frames(self, start=0, end=None):
        last = self.num_frames - 1 if end is None else min(end, self.num_frames - 1)
        for index in range(start, last + 1):
            path = self.paths[index]
            damaged = is_truncated_jpeg(path)
            try:
                with quiet_stderr() if damaged else contextlib.nullcontext():
                    image = read_image(path, "opencv")  # OpenCV, as for the videos (images.py)
            except FileNotFoundError:
                raise SourceError(f"cannot read frame {index} ({path}): not an image OpenCV can decode") from None
            if damaged:
                self.damaged.append(index)
                warnings.warn(f"frame {index} ({path}) is damaged (a JPEG cut short): tracked as decoded, the "
                              "missing part grey", DamagedFrameWarning, stacklevel=2)
            yield index, image


class VideoCaptureSource(FrameSource):
    """Anything ``cv2.VideoCapture`` opens: a video file, a camera index or a stream URL."""

    def __init__(self, target, description: str, is_live: bool):
        self.description = description
        self._file = target if isinstance(target, str) and not is_live else None
        self.is_live = is_live
        self.capture = cv2.VideoCapture(target)
        if not self.capture.isOpened():
            what = "camera" if isinstance(target, int) else ("stream" if is_live else "video")
            raise SourceError(f"cannot open {what} {description}: OpenCV could not read it (not a video, "
                              "a codec this OpenCV build lacks, or the device/stream is unavailable)")
        if not is_live:
            count = int(self.capture.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
            self.num_frames = count if count > 0 else None  # some containers do not say
        fps = float(self.capture.get(cv2.CAP_PROP_FPS) or 0)
        self.fps = fps if 0 < fps < 1000 else None

    @property
    def files(self) -> List[str]:
        return [self._file] if self._file else []

    def frames(self, start=0, end=None):
        index = 0
        # Read up to --start instead of seeking: CAP_PROP_POS_FRAMES is inexact for many codecs.
        while index < start:
            if not self.capture.grab():
                return
            index += 1
        while end is None or index <= end:
            ok, frame = self.capture.read()
            if not ok or frame is None:
                return
            yield index, _to_rgb(frame)
            index += 1

    def close(self):
        self.capture.release()


def open_source(spec) -> FrameSource:
    """A ``FrameSource`` for what a user typed: video file, folder, glob, camera index or URL."""
    text = os.fspath(spec) if not isinstance(spec, int) else str(spec)
    if isinstance(spec, int) or (re.fullmatch(r"\d+", text) and not os.path.exists(text)):
        return VideoCaptureSource(int(text), f"camera {text}", is_live=True)
    if "://" in text:
        return VideoCaptureSource(text, text, is_live=True)
    if os.path.isdir(text):
        paths = sorted((os.path.join(text, name) for name in os.listdir(text)
                        if is_image_file(name)), key=_natural_key)
        if not paths:
            raise SourceError(f"folder {text} holds no image files ({', '.join(IMAGE_EXTENSIONS)})")
        return ImageFolderSource(paths, f"{text} ({len(paths)} frames)")
    if os.path.isfile(text):
        if is_image_file(text):
            return ImageFolderSource([text], text)
        return VideoCaptureSource(text, text, is_live=False)
    if glob.has_magic(text):
        paths = sorted((p for p in glob.glob(text) if os.path.isfile(p)), key=_natural_key)
        if not paths:
            raise SourceNotFoundError(f"no files match {text}")
        return ImageFolderSource(paths, f"{text} ({len(paths)} frames)")
    raise SourceNotFoundError(f"{text} does not exist: pass a video file, a folder of frames, a glob such as "
                              "'frames/*.jpg' (quoted), a camera index or a stream URL")
