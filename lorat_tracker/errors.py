"""Exceptions raised on user mistakes.

Every message says what was wrong and what to do instead. All derive from ``LoRATError`` so a
caller (or the CLI) can catch one type; the subclasses also derive from the built-in exception a
Python user would expect (``ValueError``, ``FileNotFoundError``...), so ``except ValueError`` works.
"""


class LoRATError(Exception):
    """Base class of every error this package raises on bad input.

    An error whose advice names tracker options is made with ``naming(template)``: the template names
    them as ``{backbone}`` (the name), ``{backbone:FILE}`` or ``{device:cpu}`` (a setting; an upper-case
    word is a placeholder), as ``spec.SpecError`` does, and ``render(spelling)`` writes them the
    caller's way: ``--backbone FILE`` on the command line, ``LORAT_BACKBONE=FILE`` for pytracking,
    ``backbone=PATH`` in Python (``str(e)``). The options are data; no caller rewrites text."""

    template = None

    @classmethod
    def naming(cls, template: str, *args):
        """The error with ``template`` (dynamic parts escaped with ``spec.literal``) as its message."""
        from .spec import PYTHON, render_template

        err = cls(render_template(template, PYTHON), *args)
        err.template = template
        return err

    def render(self, spelling) -> str:
        """The message, options written in ``spelling`` (``spec.FLAGS``, ``spec.EnvSpelling(prefix)``)."""
        if self.template is None:
            return str(self)
        from .spec import render_template

        return render_template(self.template, spelling)


class ConfigError(LoRATError, ValueError):
    """Unknown variant name or an invalid variant configuration."""


class InvalidImageError(LoRATError, ValueError):
    """An image that is not an (H, W, 3) uint8 array (or convertible to one)."""


class InvalidBoxError(LoRATError, ValueError):
    """A box that is not finite, has no area, or lies entirely outside the image."""


class NotInitializedError(LoRATError, RuntimeError):
    """``track()`` called before ``initialize()``."""


class WeightsError(LoRATError, ValueError):
    """A weights file that does not fit the variant, or is corrupt, truncated or incomplete."""


class DamagedWeightsError(WeightsError):
    """Weights whose values are finite but make the network's output non-finite (they overflow in the
    precision in use): raised for the frame whose score map or boxes are NaN or infinite, before anything
    of that frame is returned or written, and at load when a tensor exceeds the precision's range."""


class WeightsNotFoundError(WeightsError, FileNotFoundError):
    """A weights path that does not exist."""


class DatasetLayoutError(LoRATError, ValueError):
    """A benchmark dataset root whose files are not laid out the way the benchmark expects."""


class AnnotationError(DatasetLayoutError):
    """An annotation file (boxes, flags, COCO json) with a line or entry that cannot be used; the message
    names the file and the line."""


class ResultsLayoutError(LoRATError, ValueError):
    """A folder of tracking results (e.g. for ``lorat eval --compare``) that lacks a sequence's file."""


class SourceError(LoRATError, ValueError):
    """A video, folder of frames, glob or camera that cannot be opened or read."""


class SourceNotFoundError(SourceError, FileNotFoundError):
    """A video file, folder or glob that names nothing on disk."""


class BackendError(ConfigError):
    """An unknown backend name, or a backend that cannot run here (device, precision, build failure)."""


class BackendNotInstalledError(BackendError, ImportError):
    """A backend whose runtime package is missing; the message names the extra that installs it."""


class OutputError(LoRATError, OSError):
    """An output file that could not be written (full disk, read-only file system, no permission); the
    message names the file and the cause. The earlier file of that name, if any, is left as it was."""

    def __str__(self) -> str:  # the message alone, not OSError's "[Errno N] message: 'file'"
        return self.strerror or super().__str__()


class RankFailedError(LoRATError, RuntimeError):
    """Under torchrun, another process of the job stopped (killed, crashed, its machine gone) while this
    one waited for it. What each rank finished is on disk; running the same command again on every
    node resumes."""
