"""Fixes for got10k 0.1.3 on today's stack, applied from outside (nothing in site-packages is edited).

``apply()`` runs when ``lorat_tracker.integrations.got10k`` is imported and is idempotent. What it patches:

* numpy 2 removed ``np.NaN`` (and ``np.NAN``/``np.Inf``); ``got10k.experiments.vot`` uses ``np.NaN``.
  The aliases are added back only where missing.
* ``ExperimentVOT._calc_iou`` builds an array from a mix of shape-(1,) arrays and scalar NaN, which
  numpy >= 1.24 refuses ("inhomogeneous shape"); replaced by a version that makes every IoU a float.
* ``OTB``, ``TColor128`` and ``VOT`` datasets download every sequence missing on disk (and
  ``ExperimentOTB`` forces ``download=True``), which fails offline and on partial copies; their
  ``_download`` becomes a no-op, so only local data is used.
* ``ExperimentOTB._record`` (used by OTB, UAV123, NfS, DTB70, TColor128) and
  ``ExperimentGOT10k._record`` write through a temporary file and ``os.replace``, the time file
  first and the result file last: ``run()`` skips every sequence whose result file exists, so an
  interrupted run must never leave a truncated one.
* ``UAV123._check_integrity`` wants more than 3 entries in the root, but the official release
  unpacks to just ``anno/`` and ``data_seq/``; it now only requires the folder to exist (the
  plugin's own layout check, ``benchmark_layouts.check_uav123``, says what is missing).
* Every dataset's ``_check_integrity`` prints ``Warning: sequence X not exists.`` for each sequence
  of its list that is not on disk: 97 lines for a partial OTB-2015, and LaSOT/UAV123/NfS/... alike.
  Those lines are collected into one ``logging`` record (logger ``lorat_tracker.integrations.got10k``,
  level INFO, so silent unless asked for); anything else the check prints still goes to stdout.
"""
from __future__ import annotations

import contextlib
import functools
import io
import logging
import os
import re
import sys

import numpy as np

_APPLIED = False


def _calc_iou(self, boxes, anno, bound, burnin=False):
    """``ExperimentVOT._calc_iou`` with every per-frame IoU made a float (ragged input otherwise)."""
    from got10k.utils.metrics import poly_iou

    if burnin:
        boxes = boxes.copy()
        init_inds = [i for i, box in enumerate(boxes) if box == [1.0]]
        for ind in init_inds:
            boxes[ind:ind + self.burnin] = [[0]] * self.burnin
    ious = [float(np.asarray(poly_iou(np.array(a), b, bound)).reshape(-1)[0]) if len(a) > 1 else np.nan
            for a, b in zip(boxes, anno)]
    return np.array(ious, dtype=np.float64)


def _no_download(self, *args, **kwargs):
    """Offline: use what is on disk; the layout check reports anything missing."""
    return None


def _uav123_check_integrity(self, root_dir, version):
    if not os.path.isdir(root_dir):
        raise FileNotFoundError(f"UAV123 root {root_dir} does not exist")


def _otb_record(self, record_file, boxes, times):
    from .experiments import atomic_savetxt

    record_dir = os.path.dirname(record_file)
    time_file = os.path.join(record_dir, "times", os.path.basename(record_file).replace(".txt", "_time.txt"))
    atomic_savetxt(time_file, np.asarray(times, dtype=np.float64), fmt="%.8f")
    atomic_savetxt(record_file, np.asarray(boxes, dtype=np.float64), fmt="%.3f", delimiter=",")


def _got10k_record(self, record_file, boxes, times):
    from .experiments import atomic_savetxt

    time_file = record_file[:record_file.rfind("_")] + "_time.txt"
    times = np.asarray(times, dtype=np.float64)[:, np.newaxis]
    # Repetition 1 starts the time file afresh (a leftover from an interrupted run is replaced);
    # later repetitions add a column, as the toolkit does.
    if os.path.exists(time_file) and not record_file.endswith("_001.txt"):
        exist_times = np.loadtxt(time_file, delimiter=",", ndmin=2)
        if len(exist_times) == len(times):
            times = np.concatenate((exist_times, times), axis=1)
    atomic_savetxt(time_file, times, fmt="%.8f", delimiter=",")
    atomic_savetxt(record_file, np.asarray(boxes, dtype=np.float64), fmt="%.3f", delimiter=",")


_MISSING = re.compile(r"^Warning: sequence (.+) not exists\.$")
log = logging.getLogger("lorat_tracker.integrations.got10k")


def _quiet_check(check):
    """Wrap a dataset's ``_check_integrity``: its per-sequence "not exists" prints become one log record."""
    if getattr(check, "_lorat_quiet", False):
        return check

    @functools.wraps(check)
    def wrapper(self, *args, **kwargs):
        out = io.StringIO()
        try:
            with contextlib.redirect_stdout(out):
                return check(self, *args, **kwargs)
        finally:
            missing, other = [], []
            for line in out.getvalue().splitlines():
                match = _MISSING.match(line.strip())
                (missing.append(match.group(1)) if match else other.append(line))
            if other:
                sys.stdout.write("\n".join(other) + "\n")
            if missing:
                log.info("%s: %d listed sequences are not under %s (using the ones found): %s",
                         type(self).__name__, len(missing), args[0] if args else "the root", ", ".join(missing))

    wrapper._lorat_quiet = True
    return wrapper


def apply() -> None:
    """Apply every fix once (safe to call again)."""
    global _APPLIED
    if _APPLIED:
        return
    for alias, value in (("NaN", np.nan), ("NAN", np.nan), ("Inf", np.inf)):
        if alias not in np.__dict__:
            setattr(np, alias, value)
    from got10k.datasets import otb, tcolor128, uav123, vot as vot_dataset
    from got10k.experiments import vot as vot_experiment

    otb.OTB._download = _no_download
    tcolor128.TColor128._download = _no_download
    vot_dataset.VOT._download = _no_download
    uav123.UAV123._check_integrity = _uav123_check_integrity
    import got10k.datasets as datasets

    for cls in vars(datasets).values():
        if isinstance(cls, type) and "_check_integrity" in vars(cls):
            cls._check_integrity = _quiet_check(cls._check_integrity)
    vot_experiment.ExperimentVOT._calc_iou = _calc_iou
    from got10k.experiments import ExperimentGOT10k, ExperimentOTB

    ExperimentOTB._record = _otb_record
    ExperimentGOT10k._record = _got10k_record
    _APPLIED = True


def is_applied() -> bool:
    return _APPLIED


def otb_sequence_names(version=2015) -> list:
    """The sequence names of an OTB version, from got10k's own table (the private ``OTB.__version_dict``:
    got10k 0.1.3 exposes it only name-mangled)."""
    from got10k.datasets import OTB

    table = getattr(OTB, "_OTB__version_dict", None)
    if table is None or version not in table:
        raise ImportError(f"this got10k has no OTB sequence list for version {version} as got10k 0.1.3 has - "
                          'install that version: pip install "lorat-tracker[got10k]"')
    return list(table[version])
