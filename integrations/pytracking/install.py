"""Copy the tracker and parameter files into a visionml/pytracking checkout.

pytracking finds trackers only as folders inside its own tree (``pytracking/tracker/<name>`` and
``pytracking/parameter/<name>/<param>.py``), so a plugin is a pair of folders to copy.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import List

from lorat_tracker.errors import LoRATError

TEMPLATES = Path(__file__).resolve().parent / "templates"
_FOLDERS = ("pytracking/tracker/lorat", "pytracking/parameter/lorat")


class PytrackingCheckoutError(LoRATError, ValueError):
    """A path that is not the root of a pytracking checkout."""


def install_templates(checkout, overwrite: bool = False) -> List[Path]:
    """Copy ``pytracking/tracker/lorat`` and ``pytracking/parameter/lorat`` into ``checkout``; returns the files."""
    root = Path(os.fspath(checkout)).expanduser()
    if (root / "tracker").is_dir() and (root / "parameter").is_dir() and not (root / "pytracking").is_dir():
        root = root.parent  # the inner pytracking/ package was given
    if not ((root / "pytracking" / "tracker").is_dir() and (root / "pytracking" / "parameter").is_dir()):
        raise PytrackingCheckoutError(
            f"{checkout} is not a pytracking checkout: it has no pytracking/tracker and pytracking/parameter "
            "folders - pass the folder you cloned visionml/pytracking into")
    written = []
    for folder in _FOLDERS:
        src, dst = TEMPLATES / folder, root / folder
        if dst.exists() and not overwrite:
            raise PytrackingCheckoutError(f"{dst} exists already - pass --overwrite to replace it")
        dst.mkdir(parents=True, exist_ok=True)
        for path in sorted(src.glob("*.py")):
            shutil.copyfile(path, dst / path.name)
            written.append(dst / path.name)
    return written
