"""``TrackerSpec``: every option that defines a tracker, defined once.

The command line (``lorat track / eval / export / vot register``), the VOT server and its
``LORAT_VOT_*`` variables, pytracking's ``LORAT_*`` parameters, the GOT-10k tracker and the training
evaluator all describe a tracker with the same options. Each option is one field below whose
metadata (flag, variable name, help, choices, parser) drives every one of those surfaces::

    spec = TrackerSpec(variant="B-224", weights="base.bin", backbone="dinov2_vitb14_pretrain.pth")
    spec.check()                          # cheap: names, choices, files exist; imports no torch
    tracker = spec.build()                # LoRATTracker (with its SAM refiner when masks="sam")
    TrackerSpec.add_arguments(parser)     # --variant --weights ... (argparse; no torch import)
    spec = TrackerSpec.from_args(args)
    env = spec.to_env("LORAT_VOT_")       # {"LORAT_VOT_WEIGHTS": "/abs/base.bin", ...}
    spec = TrackerSpec.from_env("LORAT_VOT_")

Adding an option is one new field (with ``tracker_arg`` naming the ``LoRATTracker.from_pretrained``
keyword it feeds, if any); every surface picks it up.

Errors are ``SpecError`` with the option as data (``.option == "weights"``); the message is a
template over option names, rendered in the caller's spelling: ``--weights FILE`` on the command
line, ``LORAT_VOT_WEIGHTS=FILE`` for the VOT server, ``weights=PATH`` for Python (``str(e)``).
So no caller rewrites message text. Every other error that names an option (the weights resolver's
"pass {backbone:FILE}") is made with ``LoRATError.naming(template)`` and renders the same way.

``threads`` is the one option with a process-wide effect: the tracker itself never changes torch's
global thread settings, so ``threads=N`` is the explicit opt-in; ``build()`` calls
``torch.set_num_threads(N)`` in the process that builds (and so runs) the tracker. Measured under
load: pytracking ran at 2-3 FPS with torch's default thread count and 39-52 FPS with one thread.
"""
from __future__ import annotations

import dataclasses
import os
import re
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional, Tuple, Union

from .constants import (BACKEND_NAMES, COMPILE_MODES, NETWORK_PRECISIONS, SAM2_SIZES, SAM_MODEL_TYPES, SAM_PRECISIONS,
                        VARIANTS)
from .errors import ConfigError, WeightsNotFoundError

MASK_MODES = ("none", "sam", "sam2")
COMPILE_CHOICES = ("off", "on", "cudagraph", "inductor", "onednn")  # LoRATTracker's False, True, "cudagraph", ...
GROUPS = ("model", "runtime", "masks")
DEVICE_PATTERN = re.compile(r"^(cpu|cuda|mps|xpu)(:\d+)?$")


# ------------------------------------------------------------------------------------- errors

class Spelling:
    """How a caller writes an option: its name (``--weights``) and a setting (``--weights FILE``)."""

    def name(self, opt: "Option") -> str:
        raise NotImplementedError

    def setting(self, opt: "Option", value: str) -> str:
        raise NotImplementedError


class PythonSpelling(Spelling):
    def name(self, opt):
        return opt.name

    def setting(self, opt, value):
        if is_placeholder(value):
            return f"{opt.name}={'PATH' if value == 'FILE' else value}"
        return f"{opt.name}={os.fspath(value) if isinstance(value, os.PathLike) else value!r}"


class FlagSpelling(Spelling):
    def name(self, opt):
        return opt.flag

    def setting(self, opt, value):
        return f"{opt.flag} {opt.format(value)}"


class EnvSpelling(Spelling):
    def __init__(self, prefix: str):
        self.prefix = prefix

    def name(self, opt):
        return self.prefix + opt.env

    def setting(self, opt, value):
        return f"{self.prefix}{opt.env}={opt.format(value)}"


PYTHON, FLAGS = PythonSpelling(), FlagSpelling()


def is_placeholder(value) -> bool:
    """An upper-case word in a message template (FILE, N): stands for a value, not one."""
    return isinstance(value, str) and value.isupper() and value.isalpha()


def literal(value) -> str:
    """A user's value inside a message template (braces escaped)."""
    return str(value).replace("{", "{{").replace("}", "}}")


def render_template(template: str, spelling: "Spelling") -> str:
    """``template``'s option names (``{backbone}``, ``{device:cpu}``) written in ``spelling``."""
    return template.format_map(_Names(spelling, None, None))


class SpecError(ConfigError):
    """A tracker option that cannot work. ``.option`` is the ``TrackerSpec`` field it concerns.

    ``template`` names options as ``{weights}`` (the name) or ``{masks:sam}`` (a setting; an
    upper-case word such as ``{weights:FILE}`` is a placeholder) and ``{self}`` (this option set to
    ``value``); ``render(spelling)`` writes them the caller's way, ``str()`` in ``.spelling``.
    """

    def __init__(self, option: str, template: str, value: Any = None, spelling: Spelling = PYTHON):
        self.option, self.template, self.value, self.spelling = option, template, value, spelling
        super().__init__(self.render(spelling))

    def render(self, spelling: Spelling) -> str:
        return self.template.format_map(_Names(spelling, self.option, self.value))

    def spelled(self, spelling: Spelling) -> "SpecError":
        """The same error, its message written in ``spelling``."""
        err = self.__class__(self.option, self.template, self.value, spelling)
        err.__cause__, err.__traceback__ = self.__cause__, self.__traceback__
        return err

    def __str__(self) -> str:
        return self.render(self.spelling)

    def __reduce__(self):  # picklable (e.g. out of a worker process) with its option and spelling
        return self.__class__, (self.option, self.template, self.value, self.spelling)


class SpecFileNotFoundError(SpecError, WeightsNotFoundError):
    """A file option (weights, backbone, SAM checkpoint, variant YAML) naming no file."""


class _Named:
    def __init__(self, spelling: Spelling, opt: "Option", value=None, is_self=False):
        self.spelling, self.opt, self.value, self.is_self = spelling, opt, value, is_self

    def __format__(self, spec: str) -> str:
        if self.is_self:
            return self.spelling.setting(self.opt, self.value)
        return self.spelling.setting(self.opt, spec) if spec else self.spelling.name(self.opt)


class _Names(dict):
    def __init__(self, spelling, option, value):
        super().__init__()
        self.spelling, self.option, self.value = spelling, option, value

    def __missing__(self, key):
        if key == "self":
            return _Named(self.spelling, option_named(self.option), self.value, is_self=True)
        return _Named(self.spelling, option_named(key))


# ------------------------------------------------------------------------------------ options

def _parse_compile(text: str):
    key = str(text).strip().lower()
    if key in ("0", "off", "false", "no", "none"):
        return False
    if key in ("1", "on", "true", "yes"):
        return True
    return key  # "cudagraph", "inductor"; anything else is refused by check()


def _format_compile(value) -> str:
    return {False: "off", True: "on"}.get(value, str(value)) if isinstance(value, bool) else str(value)


def option(default, *, help: str, group: str, metavar: Optional[str] = None, choices: Optional[Tuple] = None,
           parse: Optional[Callable[[str], Any]] = None, format: Optional[Callable[[Any], str]] = None,
           file: Union[bool, str] = False, tracker_arg: Optional[str] = None, flag: Optional[str] = None,
           env: Optional[str] = None, applies: Optional[Callable[["TrackerSpec"], bool]] = None):
    """A ``TrackerSpec`` field with everything the surfaces need to know about it.

    ``flag`` / ``env`` default to ``--field-name`` / ``FIELD_NAME`` (after the caller's prefix);
    ``parse`` turns a command-line or environment string into the value, ``format`` back;
    ``file``: a path checked to exist (a string: the advice when it does not); ``tracker_arg``: the ``LoRATTracker.from_pretrained``
    keyword it is passed as; ``applies(spec)``: False when the option means nothing for ``spec``
    (then ``to_env`` leaves it out).
    """
    meta = dict(help=help, group=group, metavar=metavar, choices=choices, parse=parse, format=format, file=file,
                tracker_arg=tracker_arg, flag=flag, env=env, applies=applies)
    return dataclasses.field(default=default, metadata=meta)


def _uses_sam(spec: "TrackerSpec") -> bool:
    return spec.masks in ("sam", "sam2")


@dataclasses.dataclass(frozen=True)
class TrackerSpec:
    """Everything that defines a tracker (see the module docstring)."""

    variant: Optional[str] = option(
        None, group="model", metavar="V", tracker_arg="variant",
        help=f"model variant: {', '.join(VARIANTS)} or a variant YAML file "
             "(not needed when --weights is a merged export from `lorat export`)")
    weights: Optional[str] = option(
        None, group="model", metavar="W", tracker_arg="weights",
        file="check the path (the LoRAT .bin, a training model.safetensors or a merged export)",
        help="LoRAT weights: the released .bin, a training model.safetensors or a merged export")
    backbone: Optional[str] = option(
        None, group="model", metavar="B", tracker_arg="backbone",
        file="check the path, or leave it out if the weights carry the backbone",
        help="DINOv2 backbone file (e.g. dinov2_vitb14_pretrain.pth) for a released .bin; "
             "without it timm downloads the backbone")
    device: Optional[str] = option(
        None, group="runtime", metavar="D", tracker_arg="device",
        help="cpu, cuda, cuda:N or mps (default: cuda if available, then mps, then cpu)")
    precision: str = option(
        "auto", group="runtime", metavar="P", choices=NETWORK_PRECISIONS, tracker_arg="precision",
        help="auto (default: fp16 autocast on CUDA as the official evaluation, fp32 elsewhere), fp32, fp16 or bf16; "
             "int8 for an int8 ONNX file on onnxruntime / openvino")
    backend: str = option(
        "torch", group="runtime", metavar="NAME", choices=BACKEND_NAMES, tracker_arg="backend",
        help="where the network runs: torch (default), onnxruntime, openvino or tensorrt; crops and box "
             "decoding stay the same. Other backends take the ONNX file of `lorat export --format onnx`, or a "
             "merged export (converted once, cached beside it)")
    compile: Union[bool, str] = option(
        False, group="runtime", metavar="MODE", parse=_parse_compile, format=_format_compile, tracker_arg="compile",
        help="CUDA: on / cudagraph replays one captured CUDA graph per batch size, inductor uses torch.compile; "
             "CPU fp32: onednn runs the Linear layers on prepacked oneDNN weights (faster where torch's BLAS is "
             "slow, e.g. 1.5x on AMD; boxes within 1e-4 px). Default off; elsewhere a mode warns and runs eagerly")
    threads: Optional[int] = option(
        None, group="runtime", metavar="N", parse=int,
        help="torch intra-op threads of this process (default: torch's own, one per core); 1 is fastest when "
             "several trackers or jobs share the cores")
    masks: str = option(
        "none", group="masks", choices=MASK_MODES,
        help="none (default): boxes only; sam: SAM's mask of every box, as the official LoRAT VOTS pipeline; "
             "sam2: SAM 2.1's (Meta's sam2 package, the lorat-tracker[sam2] extra)")
    sam_checkpoint: Optional[str] = option(
        None, group="masks", metavar="FILE", applies=_uses_sam,
        file="download Meta's SAM checkpoint and pass its path",
        help="Meta's checkpoint: for --masks sam sam_vit_h_4b8939.pth, sam_vit_l_0b3195.pth or sam_vit_b_01ec64.pth; "
             "for --masks sam2 sam2.1_hiera_{tiny,small,base_plus,large}.pt (the size is read from the file)")
    sam_type: Optional[str] = option(
        None, group="masks", choices=SAM_MODEL_TYPES + SAM2_SIZES, applies=_uses_sam,
        help="check that --sam-checkpoint is this size: vit_b, vit_l, vit_h (sam); tiny, small, base_plus, large (sam2)")
    sam_precision: str = option(
        "fp32", group="masks", choices=SAM_PRECISIONS, applies=_uses_sam,
        help="fp32 (default) reproduces the official masks; bf16 / fp16 are faster on CUDA (sam2: fp32 or bf16)")

    def __post_init__(self):
        # compile="on" / "off" (the command line's and the variables' words) mean True / False in Python too
        if isinstance(self.compile, str):
            object.__setattr__(self, "compile", _parse_compile(self.compile))

    # ------------------------------------------------------------------------------ checking

    def check(self) -> "TrackerSpec":
        """Fail fast on a spec that cannot work, reading no weights and importing no torch.

        Checks names, choices and formats, that given files exist, and that the SAM options fit
        together. What needs torch (is CUDA there? do the files fit the variant?) is ``build()``'s.
        Returns the spec, so ``TrackerSpec(...).check().build()`` reads naturally.
        """
        self._check_variant()
        if self.weights is None:
            raise SpecError("weights", "no weights given: {weights:FILE} is needed (the released .bin, a training "
                                       "model.safetensors, a merged export from `lorat export`, or its .onnx "
                                       "with {backend:onnxruntime} or {backend:openvino})")
        self._check_masks()  # before the files: a SAM option without masks="sam" says so first
        for o in options(type(self)):
            if o.applies is None or o.applies(self):
                if o.file:
                    _check_file(o, getattr(self, o.name))
                if o.choices and o.parse is None:
                    _check_choice(o, getattr(self, o.name))
        self._check_backend()
        if self.device is not None and not DEVICE_PATTERN.match(str(self.device)):
            raise SpecError("device", "{self} is not a device: use cpu, cuda, cuda:N or mps", self.device)
        if self.compile not in COMPILE_MODES:
            raise SpecError("compile", "{self} is not a compile mode: use " + ", ".join(COMPILE_CHOICES),
                            self.compile)
        if self.threads is not None and (isinstance(self.threads, bool) or not isinstance(self.threads, int)
                                         or self.threads < 1):
            raise SpecError("threads", "{self} is not a thread count: use a whole number of at least 1 "
                                       "(or leave it out for torch's own setting)", self.threads)
        return self

    def check_runtime(self):
        """The torch device this spec runs on, once its backend (with its precision) is known to run
        there and, for a non-torch backend, its runtime is installed: ``BackendError`` /
        ``BackendNotInstalledError`` otherwise. Imports torch and the runtime, reads no weights: for
        callers that fail fast before long work (``lorat eval`` before the dataset, ``lorat vot
        register`` before writing the entry)."""
        from .runtime import resolve_device

        if self.backend == "torch":
            from .runtime import resolve_precision

            dev = resolve_device(self.device)
            resolve_precision(self.precision, dev)  # CUDA asked but absent -> ConfigError
            return dev
        from . import backends

        dev = backends.resolve_backend_device(self.backend, self.device)
        backends.check_backend(self.backend, dev, self.precision)
        backends.import_runtime(self.backend)
        return dev

    def _check_variant(self) -> None:
        if self.variant is None or not isinstance(self.variant, (str, os.PathLike)):
            return  # None (merged export) or a VariantConfig / dict: load_config validates those
        from .config import load_config

        text = os.fspath(self.variant)
        if text.endswith((".yaml", ".yml")) and not os.path.isfile(text):
            raise SpecFileNotFoundError("variant", "{self}: no such variant file - pass a bundled variant ("
                                        + ", ".join(VARIANTS) + ") or the path of a variant YAML file", text)
        try:
            load_config(text)  # YAML only, no torch: an unknown name lists the known ones
        except ConfigError as e:  # a name: said the caller's way (--variant, LORAT_VARIANT); a file names itself
            raise SpecError("variant", ("" if os.path.exists(text) else "{variant}: ") + literal(e)) from None

    def _check_backend(self) -> None:
        from .backends import BACKENDS  # the registry is plain data: no runtime is imported

        backend = BACKENDS[self.backend]
        if self.precision not in backend.precisions:
            raise SpecError("precision", "{self} does not run on {backend:%s}: use %s" % (
                literal(self.backend), " or ".join(p for p in backend.precisions)), self.precision)
        if self.compile and self.backend != "torch":
            raise SpecError("compile", "{self} applies to {backend:torch} only - leave it out for {backend:%s}"
                            % literal(self.backend), self.compile)

    def _check_masks(self) -> None:
        _check_choice(option_named("masks"), self.masks)
        if self.masks not in ("sam", "sam2"):
            given = [name for name in ("sam_checkpoint", "sam_type") if getattr(self, name) is not None]
            if given:
                raise SpecError(given[0], "{%s} is used only with {masks:sam} - add {masks:sam} (or {masks:sam2})" % given[0])
            return
        if self.sam_checkpoint is None:
            files = ("Meta's sam_vit_h_4b8939.pth, sam_vit_l_0b3195.pth or sam_vit_b_01ec64.pth" if self.masks == "sam"
                     else "Meta's sam2.1_hiera_tiny.pt, _small, _base_plus or _large")
            raise SpecError("sam_checkpoint", "{masks:%s} needs {sam_checkpoint:FILE} (%s)" % (self.masks, files))
        other = {"sam": ("sam2", SAM2_SIZES), "sam2": ("sam", SAM_MODEL_TYPES)}[self.masks]
        if self.sam_type in other[1]:
            raise SpecError("sam_type", "{self} is a size of {masks:%s}, not of {masks:%s} - pass %s, or "
                                        "{masks:%s} for this size" % (other[0], self.masks, ", ".join(
                                            SAM_MODEL_TYPES if self.masks == "sam" else SAM2_SIZES), other[0]),
                            self.sam_type)
        if self.masks == "sam2" and self.sam_precision == "fp16":
            raise SpecError("sam_precision", "{self}: SAM 2 runs in fp32 or bf16 (Meta's autocast recipe) - use "
                                             "{sam_precision:bf16} or leave it out", self.sam_precision)

    # ------------------------------------------------------------------------------ building

    def tracker_kwargs(self) -> Dict[str, Any]:
        """The ``LoRATTracker.from_pretrained`` keywords of this spec."""
        return {o.tracker_arg: getattr(self, o.name) for o in options(type(self)) if o.tracker_arg}

    def build(self):
        """``check()``, then the ``LoRATTracker`` (``from_pretrained``), its ``masks`` set to the SAM
        refiner when ``masks="sam"``. With ``threads`` set, torch's intra-op thread count of this
        process is set first (the explicit opt-in; the tracker never changes it otherwise)."""
        self.check()
        self.apply_threads()
        from .tracker import LoRATTracker

        tracker = LoRATTracker.from_pretrained(**self.tracker_kwargs())
        tracker.masks = self.build_refiner(tracker.device)
        return tracker

    def apply_threads(self) -> None:
        if self.threads is not None:
            import torch

            torch.set_num_threads(int(self.threads))

    def build_refiner(self, device=None):
        """The refiner of this spec on ``device``: SAM's ``BoxToMask`` (``masks="sam"``), SAM 2's
        ``Sam2BoxToMask`` (``masks="sam2"``), or None when ``masks`` is "none"."""
        if self.masks == "sam":
            from .segmentation import BoxToMask

            refiner = BoxToMask.from_pretrained(self.sam_checkpoint, device=device, precision=self.sam_precision)
        elif self.masks == "sam2":
            from .segmentation import Sam2BoxToMask

            refiner = Sam2BoxToMask.from_pretrained(self.sam_checkpoint, device=device, precision=self.sam_precision)
        else:
            return None
        self.check_sam_type(refiner.architecture)
        return refiner

    def check_sam_type(self, architecture) -> None:
        """``sam_type``, if given, against the measured architecture of the checkpoint."""
        if self.sam_type is not None and architecture.model_type != self.sam_type:
            other = f" or {{sam_type:{architecture.model_type}}}" if architecture.model_type else ""
            wanted = f"sam2.1_hiera_{self.sam_type}.pt" if self.masks == "sam2" else f"sam_{self.sam_type}"
            raise SpecError("sam_type", "{sam_checkpoint:%s} is %s, but {self} was given - pass the "
                            "%s file%s" % (literal(self.sam_checkpoint), literal(architecture.describe()),
                                           wanted, other), self.sam_type)

    def boxes_only(self, surface: str) -> "TrackerSpec":
        """The spec, for a surface that returns boxes only (``surface`` names it): masks there would cost
        a SAM run per frame and be thrown away, so they are refused."""
        if self.masks != "none":
            raise SpecError("masks", "{self}: the %s returns boxes only - leave masks out (SAM masks come "
                                     "with lorat track, lorat vot register and LoRATTracker)" % surface, self.masks)
        return self

    # ------------------------------------------------------------------------------ surfaces

    def replace(self, **changes) -> "TrackerSpec":
        return dataclasses.replace(self, **changes)

    @classmethod
    def of(cls, spec=None, **options_) -> "TrackerSpec":
        """A spec from a spec (with ``options_`` replaced) or, the older call form, from the variant
        plus option keywords: ``TrackerSpec.of("B-224", weights="base.bin")``. An option given as None
        is not given: the spec's value (or the field's default) stays, so a caller's keyword defaults of
        None pass straight through."""
        options_ = {k: v for k, v in options_.items() if v is not None}
        if isinstance(spec, TrackerSpec):
            return spec.replace(**options_) if options_ else spec
        return cls(**options_) if spec is None else cls(variant=spec, **options_)

    def absolute(self) -> "TrackerSpec":
        """File options (and a variant YAML path) as absolute paths: for files written for another process."""
        changes = {}
        for o in options(type(self)):
            value = getattr(self, o.name)
            if value is None or not isinstance(value, (str, os.PathLike)):
                continue
            if o.file or (o.name == "variant" and (str(value).endswith((".yaml", ".yml")) or os.path.isfile(value))):
                changes[o.name] = str(Path(value).expanduser().resolve())
        return self.replace(**changes)

    @classmethod
    def add_arguments(cls, parser, groups: Iterable[str] = GROUPS, required: Iterable[str] = (),
                      help: Optional[Mapping[str, str]] = None, suppress_defaults: bool = False) -> None:
        """Add ``--variant`` ... to an argparse parser (imports nothing heavy).

        ``groups``: which of model / runtime / masks; ``required``: options that must be given;
        ``help``: per-option help replacing the default one; ``suppress_defaults``: leave options
        not given out of the namespace (so ``from_args(args, base=...)`` keeps the base's values).
        """
        import argparse

        groups, required, help = set(groups), set(required), dict(help or {})
        for o in options(cls):
            if o.group not in groups:
                continue
            kwargs = dict(dest=o.name, help=help.get(o.name, o.help), metavar=o.metavar)
            kwargs["default"] = argparse.SUPPRESS if suppress_defaults else o.default
            if o.parse is not None:
                kwargs["type"] = o.parse
            elif o.choices:
                kwargs["choices"] = o.choices
            if o.name in required:
                kwargs["required"] = True
            parser.add_argument(o.flag, **kwargs)

    @classmethod
    def from_args(cls, args, base: Optional["TrackerSpec"] = None) -> "TrackerSpec":
        """The options present as attributes of ``args`` (an argparse namespace, pytracking's params,
        any object) over ``base`` (default: the defaults)."""
        base = cls() if base is None else base
        return base.replace(**{o.name: getattr(args, o.name) for o in options(cls) if hasattr(args, o.name)})

    def to_env(self, prefix: str) -> Dict[str, str]:
        """``{prefix + NAME: text}`` for every option that is set and applies (``from_env`` reads it back)."""
        out = {}
        for o in options(type(self)):
            value = getattr(self, o.name)
            if value is None or (o.applies is not None and not o.applies(self)):
                continue
            out[prefix + o.env] = o.format(value)
        return out

    @classmethod
    def from_env(cls, prefix: str, environ: Optional[Mapping[str, str]] = None,
                 base: Optional["TrackerSpec"] = None) -> "TrackerSpec":
        """The ``prefix + NAME`` variables of ``environ`` (default ``os.environ``) over ``base``; an
        empty variable counts as unset."""
        environ = os.environ if environ is None else environ
        spelling = EnvSpelling(prefix)
        values = {}
        for o in options(cls):
            text = environ.get(prefix + o.env, "")
            if text == "":
                continue
            values[o.name] = o.parse_text(text, spelling)
        return (cls() if base is None else base).replace(**values)


# ------------------------------------------------------------------------- option metadata

@dataclasses.dataclass(frozen=True)
class Option:
    """One ``TrackerSpec`` field with its metadata (see ``option``)."""
    name: str
    default: Any
    help: str
    group: str
    metavar: Optional[str]
    choices: Optional[Tuple]
    parse: Optional[Callable[[str], Any]]
    formatter: Optional[Callable[[Any], str]]
    file: bool
    tracker_arg: Optional[str]
    flag: str
    env: str
    applies: Optional[Callable[[TrackerSpec], bool]]

    def format(self, value) -> str:
        return self.formatter(value) if self.formatter else os.fspath(value) if isinstance(value, os.PathLike) \
            else str(value)

    def parse_text(self, text: str, spelling: Spelling):
        if self.parse is None:
            return text
        try:
            return self.parse(text)
        except ValueError:
            raise SpecError(self.name, "{self} is not valid: " + literal(self.help), text, spelling) from None


_OPTIONS: Dict[type, List[Option]] = {}


def options(spec_class: type = TrackerSpec) -> List[Option]:
    """Every option of ``spec_class`` (``TrackerSpec`` or a subclass adding fields), in field order."""
    if spec_class not in _OPTIONS:
        found = []
        for f in dataclasses.fields(spec_class):
            m = f.metadata
            found.append(Option(f.name, f.default, m["help"], m["group"], m["metavar"], m["choices"], m["parse"],
                                m["format"], m["file"], m["tracker_arg"], m["flag"] or "--" + f.name.replace("_", "-"),
                                m["env"] or f.name.upper(), m["applies"]))
        _OPTIONS[spec_class] = found
    return _OPTIONS[spec_class]


def option_named(name: str, spec_class: Optional[type] = None) -> Option:
    """The option ``name`` of ``spec_class`` (default: of every spec class in use)."""
    classes = [spec_class] if spec_class is not None else [TrackerSpec] + [c for c in _OPTIONS if c is not TrackerSpec]
    for c in classes:
        for o in options(c):
            if o.name == name:
                return o
    raise KeyError(f"TrackerSpec has no option {name!r}")


def _check_choice(o: Option, value) -> None:
    if value is not None and value not in o.choices:
        raise SpecError(o.name, "{self} is not one of " + ", ".join(o.choices), value)


def _check_file(o: Option, path) -> None:
    if path is None or not isinstance(path, (str, os.PathLike)):
        return
    text = os.fspath(path)
    if not os.path.exists(text):
        advice = o.file if isinstance(o.file, str) else "check the path"
        raise SpecFileNotFoundError(o.name, "{self} does not exist - " + literal(advice), text)
    if os.path.isdir(text) and not is_hf_folder(text):
        raise SpecError(o.name, "{self} is a directory - pass the file inside it, or a Hugging Face model folder "
                                "(config.json + model.safetensors)", text)


def is_hf_folder(path) -> bool:
    """A folder as ``save_pretrained`` or a Hub download leaves it (``config.json`` beside the weights):
    taken wherever a weights or backbone file is (``lorat_tracker.weights`` reads the file inside)."""
    return os.path.isdir(path) and os.path.isfile(os.path.join(path, "config.json"))
