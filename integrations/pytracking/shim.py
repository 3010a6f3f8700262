"""What this package relies on in visionml/pytracking beyond its tracker interface, in one place.

Checked against visionml/pytracking at commit 7eb9e74 (``pytracking/evaluation/tracker.py``):
``Tracker.__init__(name, parameter_name, ...)`` sets ``self.parameter_name`` and then calls the tracker
module's ``get_tracker_class()``, in the main process, before ``run_dataset`` starts; its
``get_parameters()`` imports ``pytracking.parameter.<name>.<parameter_name>`` and calls ``parameters()``.
``run_tracker.py`` and ``run_experiment.py`` are the scripts that go on to ``run_dataset``; the analysis
(``trackerlist`` + ``print_results``/``plot_results``) builds the same ``Tracker`` objects but never
their parameters, so the check runs only under those two scripts (an analysis environment needs no
``LORAT_WEIGHTS``). If a later pytracking changes any of that, ``check_parameters_of_caller`` finds no
such caller and does nothing: the parameters are then checked when pytracking builds them for the
first sequence (which ends a sequential run there; ``--threads N`` then prints the error per sequence).
"""
from __future__ import annotations

import os
import sys

from .tracker import PytrackingSetupError

RUN_SCRIPTS = ("run_tracker.py", "run_experiment.py")  # pytracking's scripts that run the tracker
_MAX_DEPTH = 4  # get_tracker_class() is called by Tracker.__init__ directly


def _constructing_tracker():
    """The pytracking ``Tracker`` whose ``__init__`` is on the stack above the caller, or None."""
    frame = sys._getframe(2)
    for _ in range(_MAX_DEPTH):
        if frame is None:
            return None
        owner = frame.f_locals.get("self")
        if (owner is not None and frame.f_code.co_name == "__init__" and hasattr(owner, "parameter_name")
                and callable(getattr(owner, "get_parameters", None))):
            return owner
        frame = frame.f_back
    return None


def check_parameters_of_caller() -> None:
    """Build, once, the parameters of the pytracking ``Tracker`` being constructed, so a wrong ``LORAT_*``
    setting ends ``run_tracker.py`` before the first sequence, whatever ``--threads`` (a parameter file
    raises ``PytrackingSetupError``). Any other error of a parameter file is left to pytracking, which
    reports it per sequence as before."""
    if os.path.basename(sys.argv[0] if sys.argv else "") not in RUN_SCRIPTS:
        return  # an analysis or another caller: the parameters are checked when they are built
    owner = _constructing_tracker()
    if owner is None:
        return
    try:
        owner.get_parameters()
    except PytrackingSetupError:
        raise
    except Exception:  # noqa: BLE001 - not ours to judge here; pytracking prints it per sequence
        return
