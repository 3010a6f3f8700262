"""The one place that uses vot-toolkit's private API (checked against vot-toolkit 0.9.0).

``lorat vot workspace --demo N`` makes the toolkit's own synthetic sequence (a cow circling over
noise, what ``vot test`` runs), which only ``vot.dataset.dummy._generate(path, length, size, objects)``
writes; the public ``DummySequence`` generates into a temporary folder of its own choosing. If a
release drops or changes it, this module says so in one line.
"""
from __future__ import annotations

import inspect

CHECKED_WITH = "0.9.0"
_PARAMETERS = ["base", "length", "size", "objects"]


def generate_dummy_sequence(path: str, length: int, size=(320, 240), objects: int = 1) -> None:
    """The toolkit's dummy sequence of ``length`` frames and ``objects`` targets, written to ``path``."""
    from lorat_tracker.cli import UsageError

    try:
        from vot.dataset import dummy
    except ImportError as e:
        raise UsageError(f"the VOT toolkit is not installed ({e}) - install it with: "
                         'pip install "lorat-tracker[vot]"') from None
    private = getattr(dummy, "_generate", None)
    if private is None or list(inspect.signature(private).parameters)[:4] != _PARAMETERS:
        raise UsageError(f"this vot-toolkit has no vot.dataset.dummy._generate(base, length, size, objects) as "
                         f"version {CHECKED_WITH} has: install that version (pip install \"lorat-tracker[vot]\"), "
                         "or pass --sequences instead of --demo")
    private(path, length, size, objects)
