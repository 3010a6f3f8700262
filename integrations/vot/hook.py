"""Start-up hook: plain ``vot`` gets lorat's vot-toolkit 0.9.0 fixes (``compat``) without ``lorat vot``.

Installing lorat-tracker puts one file into site-packages, ``lorat_tracker_vot_fixes.pth`` (see
setup.py), whose single line Python runs at every start-up: it calls ``install()`` below when the
``lorat_tracker`` that this Python finds has this module. The check (``importlib.util.find_spec``, which
imports nothing) keeps start-up quiet when another copy of lorat_tracker without the hook comes first
on ``sys.path`` (an older checkout on PYTHONPATH): site.py would print an error for a failing line
at every start of every Python program.

``install()`` only appends a finder to ``sys.meta_path``: nothing of the toolkit, torch or lorat's
tracker is imported, and the finder returns at once for every module name but ``vot`` and the
three toolkit modules the fixes touch. When ``vot`` is imported, the finder checks the installed
vot-toolkit version: for 0.9.0 (the broken one) it applies fix V0 (attributee) before ``vot``
loads and each of V1-V4 right after the module it patches has loaded (``compat.PATCHES``); for
any other version it removes itself and changes nothing. ``LORAT_VOT_HOOK=0`` in the environment
turns it off.

Why a hook and not only ``lorat vot evaluate``: ``vot evaluate`` is the command VOT users type and
the one the challenge instructions give; with the hook it works on every bundled stack
(multistart, realtime and supervised experiments included) in any process that imports the toolkit.
"""
from __future__ import annotations

import os
import sys

BROKEN_VERSIONS = ("0.9.0",)
PTH_NAME = "lorat_tracker_vot_fixes.pth"
_PATCHED_MODULES = ("vot.tracker", "vot.experiment.multistart", "vot.experiment.multirun")
_WATCHED = frozenset(("vot",) + _PATCHED_MODULES)


class _PatchingLoader:
    """Wraps a module's own loader; runs ``after(module)`` once the module has executed."""

    def __init__(self, loader, after):
        self._loader, self._after = loader, after

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module):
        self._loader.exec_module(module)
        self._after(module)

    def __getattr__(self, name):  # get_code, get_source, is_package, get_resource_reader, ...
        return getattr(self._loader, name)


class VotFixFinder:
    """A ``sys.meta_path`` finder that never finds anything itself; it wraps the loaders of the
    toolkit modules the fixes touch."""

    def __init__(self, checked: bool = False):
        self._checked = checked  # True once the toolkit's version is known to be a broken one

    def find_spec(self, fullname, path=None, target=None):
        if fullname not in _WATCHED:
            return None
        if fullname == "vot" and not self._checked:
            self._checked = True
            if installed_vot_version() not in BROKEN_VERSIONS:
                uninstall()
                return None
            from . import compat

            compat._fix_attributee()  # V0 must precede the toolkit's own import of attributee
        if fullname == "vot":
            return None
        spec = self._real_spec(fullname, path, target)
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        from . import compat

        spec.loader = _PatchingLoader(spec.loader, compat.PATCHES[fullname])
        return spec

    def _real_spec(self, fullname, path, target):
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None:
                return spec
        return None


def installed_vot_version():
    """The vot-toolkit distribution's version (from its metadata: the toolkit is not imported)."""
    from importlib import metadata

    try:
        return metadata.version("vot-toolkit")
    except metadata.PackageNotFoundError:
        return None


def install() -> None:
    """Put the finder first on ``sys.meta_path`` (idempotent; a no-op with LORAT_VOT_HOOK=0)."""
    if os.environ.get("LORAT_VOT_HOOK", "1") == "0" or is_installed():
        return
    checked = False
    if "vot" in sys.modules:  # installed late: patch what is loaded already, if it is the broken version
        if getattr(sys.modules["vot"], "__version__", None) not in BROKEN_VERSIONS:
            return
        from . import compat

        for name in _PATCHED_MODULES:
            if name in sys.modules:
                compat.PATCHES[name](sys.modules[name])
        checked = True
    # First: the path finder that would find the toolkit's modules must not be asked before it.
    sys.meta_path.insert(0, VotFixFinder(checked))


def plain_vot_works(experiment_types) -> bool:
    """Whether plain ``vot evaluate`` from this Python runs a stack with these experiment types."""
    needs_fixes = bool({"multistart", "supervised"} & set(experiment_types))
    return not needs_fixes or is_installed() or installed_vot_version() not in BROKEN_VERSIONS


def uninstall() -> None:
    sys.meta_path[:] = [f for f in sys.meta_path if not isinstance(f, VotFixFinder)]


def is_installed() -> bool:
    return any(isinstance(f, VotFixFinder) for f in sys.meta_path)
