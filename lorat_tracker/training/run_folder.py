"""The run folder ``--out``: whether it is new, this run to resume, or something to refuse, and its
``run.json`` (the identity of the run, the command, the process count).

Running the same command again resumes; a command that would change what is trained (another data
set, batch, learning rate, ...) is refused with the field that differs, and nothing in the folder is
touched: everything here reads, except ``write_run_file``.
"""
from __future__ import annotations

import json
import os
import sys
import time

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


def _show(value) -> str:
    if isinstance(value, list):
        return " ".join(value) if value else "(none)"
    return "(none)" if value is None else str(value)


def write_run_file(cfg: TrainConfig, world: int) -> None:
    """``OUT/run.json``: the identity a rerun is compared with, and how this run was started."""
    from ..io import atomic_write_text

    info = {"identity": cfg.identity(), "command": " ".join(sys.argv),
            "created": time.strftime("%Y-%m-%d %H:%M:%S"), "world_size": world,
            "steps_per_epoch": cfg.steps_per_epoch}
    atomic_write_text(os.path.join(cfg.out, RUN_FILE), json.dumps(info, indent=2) + "\n")
