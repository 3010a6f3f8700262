"""The run folder ``--out``: whether it is new, this run to resume, or something to refuse, and its
``run.json`` (the identity of the run, the command, the process count).

Running the same command again resumes; a command that would change what is trained (another data
set, batch, learning rate, ...) is refused with the field that differs, and nothing in the folder is
touched: everything here reads, except ``write_run_file``.

The data under the same paths can change too (sequences deleted or added, a ``groundtruth.txt``
edited): ``run.json`` keeps a fingerprint of it (``data_fingerprint``: every sequence's name, frame
count and a digest of its annotations), and a resume on other data is refused naming what changed,
unless ``--accept-changed-data`` says to go on (then logged, and the fingerprint updated).
"""
from __future__ import annotations

import hashlib
import json
import os
import sys
import time
from typing import Dict, List, Optional, Sequence

import numpy as np

from ..errors import LoRATError
from .config import TrainConfig

RUN_FILE = "run.json"
CHECKPOINT_FILE = "checkpoint.pth"  # named here because its presence decides "resume"


class RunFolderError(LoRATError, ValueError):
    """``--out`` holds something else: another run's configuration, or files that are not a run."""


def check_run_folder(cfg: TrainConfig) -> str:
    """What ``cfg.out`` holds: "new", "resume" (a checkpoint of this run) or "restart" (run.json of this
    run but no checkpoint yet). Raises RunFolderError when it holds anything else; reads, never writes."""
    out = cfg.out
    if not os.path.exists(out):
        return "new"
    if not os.path.isdir(out):
        raise RunFolderError(f"--out {out} is a file: pass a folder for the run")
    run_file = os.path.join(out, RUN_FILE)
    if not os.path.isfile(run_file):
        if os.listdir(out):
            raise RunFolderError(f"--out {out} is not empty and holds no {RUN_FILE} (not a lorat train run) - "
                                 "pass a new or empty folder")
        return "new"
    try:
        with open(run_file) as f:
            saved = json.load(f)["identity"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise RunFolderError(f"{run_file} is unreadable ({e}) - pass another --out, or delete that folder to "
                             "start over") from None
    mine = json.loads(json.dumps(cfg.identity()))  # through JSON, as saved (tuples -> lists...)
    for key in TrainConfig.IDENTITY:
        if saved.get(key) != mine.get(key):
            flag = "--" + key.replace("_", "-")
            raise RunFolderError(f"--out {out} holds a run with {flag} {_show(saved.get(key))}, not "
                                 f"{_show(mine.get(key))} - rerun with the same options to resume it, or pass "
                                 "another --out")
    return "resume" if os.path.isfile(os.path.join(out, CHECKPOINT_FILE)) else "restart"


Fingerprint = Dict[str, Dict[str, list]]


def data_fingerprint(sources: Sequence[str], sets) -> Fingerprint:
    """What the run trains on, per source ("kind=ROOT:WEIGHT"): every sequence's name, frame count and a
    digest of its annotations (boxes and flags of every track). Stored in run.json; a resume compares it."""
    out = {}
    for spec, sequences in zip(sources, sets):
        entry = {}
        for seq in sequences:
            h = hashlib.sha256()
            for track in seq.tracks:
                h.update(np.ascontiguousarray(track.boxes, dtype=np.float64).tobytes())
                h.update(np.ascontiguousarray(track.valid, dtype=np.bool_).tobytes())
            entry[seq.name] = [len(seq.frames), h.hexdigest()[:16]]
        out[spec] = entry
    return out


def data_changes(saved: Fingerprint, current: Fingerprint) -> List[str]:
    """What differs between two fingerprints, in words (at most a few names per kind of change)."""
    changes = []
    for spec in sorted(set(saved) | set(current)):
        old, new = saved.get(spec), current.get(spec)
        if old is None or new is None:
            changes.append(f"source {spec} {'added' if old is None else 'removed'}")
            continue
        removed = sorted(set(old) - set(new))
        added = sorted(set(new) - set(old))
        frames = sorted(n for n in set(old) & set(new) if old[n][0] != new[n][0])
        edited = sorted(n for n in set(old) & set(new) if old[n][0] == new[n][0] and old[n][1] != new[n][1])
        for what, names in (("removed", removed), ("added", added), ("with another frame count", frames),
                            ("with edited annotations", edited)):
            if names:
                shown = ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")
                changes.append(f"{len(names)} sequence(s) {what} ({shown})")
    return changes


def saved_fingerprint(cfg: TrainConfig) -> Optional[Fingerprint]:
    """The fingerprint in ``OUT/run.json`` (None: a run folder written before fingerprints were kept)."""
    try:
        with open(os.path.join(cfg.out, RUN_FILE)) as f:
            return json.load(f).get("data")
    except (OSError, ValueError, AttributeError):
        return None


def check_same_data(cfg: TrainConfig, current: Fingerprint, log, write: bool = True) -> None:
    """Refuse to resume on data that changed under the same paths, naming what changed; with
    ``cfg.accept_changed_data`` log it and keep the new fingerprint instead."""
    saved = saved_fingerprint(cfg)
    if saved is None:
        return
    changes = data_changes(saved, current)
    if not changes:
        return
    what = "; ".join(changes)
    if not cfg.accept_changed_data:
        raise RunFolderError(f"--out {cfg.out} was trained on other data under the same paths: {what} - restore "
                             "the data, pass another --out, or pass --accept-changed-data to resume on it")
    log(f"note: the data changed since this run started ({what}); resuming on it (--accept-changed-data)")
    if write:
        update_run_file(cfg, data=current)


def _show(value) -> str:
    if isinstance(value, list):
        return " ".join(value) if value else "(none)"
    return "(none)" if value is None else str(value)


def write_run_file(cfg: TrainConfig, world: int, data: Optional[Fingerprint] = None) -> None:
    """``OUT/run.json``: the identity a rerun is compared with, how this run was started, and the
    fingerprint of its data."""
    from ..io import atomic_write_text

    info = {"identity": cfg.identity(), "command": " ".join(sys.argv),
            "created": time.strftime("%Y-%m-%d %H:%M:%S"), "world_size": world,
            "steps_per_epoch": cfg.steps_per_epoch, "data": data}
    atomic_write_text(os.path.join(cfg.out, RUN_FILE), json.dumps(info, indent=1) + "\n")


def update_run_file(cfg: TrainConfig, **entries) -> None:
    from ..io import atomic_write_text

    path = os.path.join(cfg.out, RUN_FILE)
    with open(path) as f:
        info = json.load(f)
    info.update(entries)
    atomic_write_text(path, json.dumps(info, indent=1) + "\n")
