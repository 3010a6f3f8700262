"""Fixes for vot-toolkit 0.9.0, applied in-process by monkey-patching (site-packages is never edited).

* V0  ``import vot`` fails on Python >= 3.11 with attributee 0.1.10 (``dataclass_transform() takes 0
  positional arguments``). The ``vot`` extra pins attributee==0.1.9; if 0.1.10 is there anyway,
  ``typing.dataclass_transform`` is made to accept being used as a bare decorator before ``vot`` loads.
* V1  ``multistart`` experiments (the VOT2020-2022 short-term ``baseline`` and ``realtime``) fail with
  ``ObjectQuery.state must be a Region``: ``MultiStartExperiment.execute`` is replaced by a corrected
  copy (region instead of ObjectStatus, query offset 0 in the anchor's proxy sequence, per-frame times,
  regions and properties stored as regions and properties).
* V2  ``realtime`` experiments: ``RealtimeTrackerRuntime`` has no ``run()``; it gets
  ``OnlineTrackerRuntime.run``.
* V3  ...then ``Tracker does not support multiple objects`` because the realtime wrapper updates a
  single-object runtime with ``None``; ``None`` becomes ``[]``.
* V4  ``supervised`` experiments (the VOT2013-2019 short-term ``baseline``/``realtime``) fail with
  ``multiple objects were provided for initialization`` (single-object tracker) or on
  ``list.properties`` (multi-object tracker): ``SupervisedExperiment.execute`` is replaced by a
  corrected copy that passes lists, unwraps the answer and accepts the realtime wrapper.

Plain ``vot`` gets the same fixes from the start-up hook (``hook``: a ``.pth`` file that the
installation puts into site-packages) when vot-toolkit 0.9.0 is imported. ``run_vot(argv)`` is the
``vot`` command line with these fixes, no update check (it would reach
GitHub) and an exit status that reports errors (``vot`` itself exits 0 after a tracker error).
"""
from __future__ import annotations

import logging
import sys
from typing import List, Optional

_applied = False


def _fix_attributee() -> None:
    """V0: only acts if ``vot``/attributee is not imported yet and the typing API is the 3.11 one."""
    import typing

    if "attributee" in sys.modules or not hasattr(typing, "dataclass_transform"):
        return
    try:
        from importlib.metadata import version

        if version("attributee") != "0.1.10":
            return
    except Exception:
        return
    original = typing.dataclass_transform
    if getattr(original, "_lorat_patched", False):
        return

    def dataclass_transform(*args, **kwargs):
        if len(args) == 1 and not kwargs and isinstance(args[0], type):
            return original()(args[0])  # used as a bare class decorator by attributee 0.1.10
        return original(*args, **kwargs)

    dataclass_transform._lorat_patched = True
    typing.dataclass_transform = dataclass_transform


def _multistart_execute(self, tracker, sequence, force: bool = False, callback=None) -> None:
    """``MultiStartExperiment.execute`` of vot-toolkit 0.9.0 with its bugs fixed (V1)."""
    from vot.dataset.proxy import FrameMapSequence
    from vot.experiment.multistart import find_anchors
    from vot.region import Special
    from vot.tracker import ObjectQuery, Trajectory

    results = self.results(tracker, sequence)
    forward, backward = find_anchors(sequence, self.anchor)
    if len(forward) == 0 and len(backward) == 0:
        raise RuntimeError("Sequence does not contain any anchors")
    total = len(forward) + len(backward)
    current = 0
    with self._get_runtime(tracker, sequence) as runtime:
        for i, reverse in [(f, False) for f in forward] + [(f, True) for f in backward]:
            name = f"{sequence.name}_{i:08d}"
            if Trajectory.exists(results, name) and not force:
                continue
            if reverse:
                proxy = FrameMapSequence(sequence, list(reversed(range(0, i + 1))))
            else:
                proxy = FrameMapSequence(sequence, list(range(i, len(sequence))))
            init = self._get_initialization(proxy, 0)
            # Fixed: a Region (not the ObjectStatus), offset 0 within the proxy (not the anchor index).
            status = runtime.run(proxy, [ObjectQuery(init.region, dict(init.properties), 0)])
            trajectory = Trajectory(len(proxy))
            # Fixed: RunResult.times is one float per frame; objects hold ObjectStatus, not regions.
            trajectory.set(0, Special(Trajectory.INITIALIZATION), {"time": status.times[0]})
            for frame in range(1, len(proxy)):
                state = status.objects[0][frame]
                properties = dict(state.properties)
                properties["time"] = status.times[frame]
                trajectory.set(frame, state.region, properties)
            trajectory.write(results, name)
            current = current + 1
            if callback:
                callback(current / total)


def _first(status):
    return status[0] if isinstance(status, list) else status


def _supervised_execute(self, tracker, sequence, force: bool = False, callback=None) -> None:
    """``SupervisedExperiment.execute`` of vot-toolkit 0.9.0 with its bugs fixed (V4).

    0.9.0 initializes with a bare ObjectStatus (a single-object TraX runtime rejects it: "multiple
    objects were provided"), updates with ``None`` (rejected the same way), reads ``.properties`` off
    the list the runtime returns, and refuses the realtime wrapper as "not an online runtime".
    """
    from vot.experiment.multirun import SupervisedExperiment
    from vot.region import Special, calculate_overlap
    from vot.tracker import OnlineTrackerRuntime, RealtimeTrackerRuntime, Trajectory

    if len(sequence.objects()) != 1:
        raise ValueError("SupervisedExperiment only works on single-target sequences.")
    results = self.results(tracker, sequence)
    with self._get_runtime(tracker, sequence) as runtime:
        if not isinstance(runtime, (OnlineTrackerRuntime, RealtimeTrackerRuntime)):
            raise ValueError("SupervisedExperiment requires an online tracker runtime.")
        for i in range(1, self.repetitions + 1):
            name = f"{sequence.name}_{i:03d}"
            if Trajectory.exists(results, name) and not force:
                continue
            if self._can_stop(tracker, sequence):
                return
            trajectory = Trajectory(len(sequence))
            frame = 0
            while frame < len(sequence):
                _, elapsed = runtime.initialize(sequence.frame(frame), [self._get_initialization(sequence, frame)])
                trajectory.set(frame, Special(Trajectory.INITIALIZATION), {"time": elapsed})
                frame = frame + 1
                while frame < len(sequence):
                    status, elapsed = runtime.update(sequence.frame(frame), [])
                    target = _first(status)
                    properties = dict(target.properties)
                    properties["time"] = elapsed
                    if calculate_overlap(target.region, sequence.groundtruth(frame), sequence.size) <= self.failure_overlap:
                        trajectory.set(frame, Special(SupervisedExperiment.FAILURE), properties)
                        frame = frame + self.skip_initialize
                        if self.skip_tags:
                            while frame < len(sequence):
                                if not [t for t in sequence.tags(frame) if t in self.skip_tags]:
                                    break
                                frame = frame + 1
                        break
                    trajectory.set(frame, target.region, properties)
                    frame = frame + 1
            if callback:
                callback(i / self.repetitions)
            trajectory.write(results, name)


def _realtime_update(self, frame, new=None):
    """``RealtimeTrackerRuntime.update`` of 0.9.0, updating the wrapped runtime with ``[]``, not ``None`` (V3)."""
    assert new is None or len(new) == 0, "Adding new objects is not supported in realtime tracker runtime"
    if self._time > self._interval:
        self._time = self._time - self._interval
        return self._status, 0
    self._status = None
    self._time = 0
    status, time = self._runtime.update(frame, [])
    if time > self._interval:
        if self._countdown > 0:
            self._countdown = self._countdown - 1
            self._time = 0
        else:
            self._time = time - self._interval
            self._status = status
    return status, time


def _patch_tracker(module) -> None:
    """V2, V3 on ``vot.tracker``."""
    if "run" not in module.RealtimeTrackerRuntime.__dict__:
        module.RealtimeTrackerRuntime.run = module.OnlineTrackerRuntime.run   # V2
    module.RealtimeTrackerRuntime.update = _realtime_update                  # V3


def _patch_multistart(module) -> None:
    module.MultiStartExperiment.execute = _multistart_execute                 # V1


def _patch_multirun(module) -> None:
    module.SupervisedExperiment.execute = _supervised_execute                 # V4


# toolkit module -> the fix applied to it (each idempotent); the start-up hook (``hook``) applies
# them as the modules are imported, ``apply()`` imports them all and applies them at once.
PATCHES = {
    "vot.tracker": _patch_tracker,
    "vot.experiment.multistart": _patch_multistart,
    "vot.experiment.multirun": _patch_multirun,
}


def apply() -> None:
    """Apply V0-V4 (idempotent). Call before running toolkit code."""
    global _applied
    if _applied:
        return
    _fix_attributee()
    import importlib

    for name, patch in PATCHES.items():
        patch(importlib.import_module(name))
    _applied = True


class _ErrorCounter(logging.Handler):
    def __init__(self):
        super().__init__(level=logging.ERROR)
        self.count = 0

    def emit(self, record):
        self.count += 1


def run_vot(argv: List[str]) -> int:
    """``vot ARGV...`` in this process with the fixes; 0 on success, 1 if the toolkit reported an error."""
    _fix_attributee()
    import vot
    import vot.utilities.cli as cli

    apply()
    cli.check_updates = lambda: (False, None)  # no network: the version check would query GitHub
    counter = _ErrorCounter()
    logger = vot.get_logger()
    logger.addHandler(counter)
    saved = sys.argv
    sys.argv = ["vot"] + list(argv)
    code: Optional[int] = 0
    try:
        cli.main()
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    finally:
        sys.argv = saved
        logger.removeHandler(counter)
    if code == 0 and counter.count:
        return 1
    return int(code or 0)
