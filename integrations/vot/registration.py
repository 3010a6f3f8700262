"""``lorat vot register``: one ``trackers.ini`` entry that makes plain ``vot evaluate WS ID`` work
(on every bundled stack once lorat-tracker is installed: see ``hook``).

The entry runs ``<this interpreter> -m lorat_tracker.integrations.vot`` over TraX (``protocol = traxpython``), with
the tracker's ``TrackerSpec`` as ``env_LORAT_VOT_*`` variables (``TrackerSpec.to_env``), ``paths`` pointing at the directory that holds
the ``lorat_tracker`` package (the toolkit sets PYTHONPATH to it) and the tracker log at
``WORKSPACE/logs/<ID>.tracker.log``. Every path written is absolute. Other trackers' sections (and
comments) of an existing ``trackers.ini`` are kept byte for byte; the section of the same ID is
replaced.
"""
from __future__ import annotations

import os
import re
import sys
from pathlib import Path
from typing import Dict, List, Optional

import yaml

from lorat_tracker.errors import ConfigError, LoRATError
from lorat_tracker.io import atomic_open, atomic_write_text, check_writable, output_error
from lorat_tracker.spec import MASK_MODES, SpecError, TrackerSpec  # noqa: F401  (MASK_MODES: public here before)

from . import ENV_PREFIX

IDENTIFIER = re.compile(r"^[a-zA-Z0-9-_]+$")
DEFAULT_TIMEOUT_S = 300
# --masks sam: seconds of SAM per object per frame used for the default timeout. CPU: measured with
# benchmarks/sam_speed.py (fp32, 2-core AMD EPYC shared with other jobs, so on the slow side). CUDA:
# not measured here (no GPU), a generous guess. The timeout covers a frame of SAM_TIMEOUT_OBJECTS
# objects three times over, plus the tracker's 300 s.
SAM_SECONDS_PER_OBJECT = {"cpu": {"vit_b": 70.0, "vit_l": 200.0, "vit_h": 215.0},
                          "cuda": {"vit_b": 0.2, "vit_l": 0.4, "vit_h": 0.6}}
# Another SAM size (a distilled or the tests' tiny one) is scaled from ViT-B by its image encoder's
# measured parameter count (ViT-B: 12 blocks of 12 * 768^2 weights, the work per token grows alike),
# but never below the work every SAM does whatever its encoder (the 1024x1024 crop, prompt encoder,
# mask decoder and warp: measured 2.0 s per object for the tests' tiny SAM, 1 thread of a loaded CPU).
SAM_MIN_SECONDS_PER_OBJECT = {"cpu": 5.0, "cuda": 0.05}
SAM_TIMEOUT_OBJECTS = 20


def encoder_weights(architecture) -> int:
    """The image encoder's transformer weights, from its measured shape: depth * 12 * embed_dim^2
    (qkv 3d^2 + proj d^2 + MLP 8d^2 per block; SAM's MLP ratio is 4)."""
    return 12 * architecture.depth * architecture.embed_dim ** 2


def sam_seconds_per_object(architecture, device_type: str) -> float:
    """Seconds of SAM per object and frame for a checkpoint of ``architecture`` (a ``SamArchitecture``)."""
    table = SAM_SECONDS_PER_OBJECT.get(device_type, SAM_SECONDS_PER_OBJECT["cpu"])
    if architecture is None:
        return max(table.values())  # size unknown: room for the largest released one
    if architecture.model_type in table:
        return table[architecture.model_type]
    from lorat_tracker.segmentation import MODEL_TYPES

    dim, depth = MODEL_TYPES["vit_b"][:2]
    vit_b = 12 * depth * dim ** 2
    floor = SAM_MIN_SECONDS_PER_OBJECT.get(device_type, SAM_MIN_SECONDS_PER_OBJECT["cpu"])
    return max(floor, table["vit_b"] * encoder_weights(architecture) / vit_b)


# --masks sam2: SAM 2 encodes the whole frame once, then decodes each object's box. CPU: measured with
# benchmarks/sam_speed.py (fp32, 2 threads of a 2-core AMD EPYC Zen 4, random weights of the package's
# configs, a 640x480 frame; measured 2.7, 3.2, 5.5 and 18.2 s a frame): (seconds per frame, per object). CUDA: not measured (no GPU), a
# generous guess.
SAM2_SECONDS = {"cpu": {"tiny": (3.0, 0.1), "small": (3.5, 0.1), "base_plus": (6.0, 0.1), "large": (19.0, 0.25)},
                "cuda": {"tiny": (0.05, 0.01), "small": (0.06, 0.01), "base_plus": (0.1, 0.01),
                         "large": (0.2, 0.01)}}


def default_timeout(masks: str, architecture, device_type: str) -> int:
    """The trackers.ini ``timeout``: 300 s, plus room for SAM on a crowded VOTS frame with --masks sam or
    sam2, from the checkpoint's measured ``architecture`` (None: the largest released size)."""
    if masks == "sam2":
        table = SAM2_SECONDS.get(device_type, SAM2_SECONDS["cpu"])
        size = getattr(architecture, "size", None)
        frame, per_object = table.get(size, table["large"])
        return int(DEFAULT_TIMEOUT_S + 3 * (frame + SAM_TIMEOUT_OBJECTS * per_object))
    if masks != "sam":
        return DEFAULT_TIMEOUT_S
    return int(DEFAULT_TIMEOUT_S + 3 * SAM_TIMEOUT_OBJECTS * sam_seconds_per_object(architecture, device_type))


class WorkspaceError(LoRATError, ValueError):
    """A directory that is not a VOT workspace, or a workspace the toolkit cannot use."""


def package_root() -> Path:
    """The directory holding the ``lorat_tracker`` package (a checkout or site-packages)."""
    import lorat_tracker

    return Path(lorat_tracker.__file__).resolve().parent.parent


def default_name(variant: Optional[str]) -> str:
    stem = Path(str(variant)).stem if variant else "export"
    return "LoRAT_" + re.sub(r"[^a-zA-Z0-9-_]", "_", stem)


def load_workspace_config(workspace: Path) -> dict:
    config = workspace / "config.yaml"
    if not workspace.is_dir():
        raise WorkspaceError(f"workspace {workspace} does not exist - create it with `lorat vot workspace "
                             f"--workspace {workspace} ...` or `vot initialize STACK --workspace {workspace}`")
    if not config.is_file():
        raise WorkspaceError(f"{workspace} is not a VOT workspace (no config.yaml) - create it with `lorat vot "
                             f"workspace --workspace {workspace} ...` or `vot initialize STACK --workspace {workspace}`")
    try:
        with open(config) as f:
            data = yaml.safe_load(f) or {}
    except yaml.YAMLError as e:
        raise WorkspaceError(f"{config} is not valid YAML: {str(e).splitlines()[0]}") from None
    if not isinstance(data, dict):
        raise WorkspaceError(f"{config} is not a VOT workspace configuration (expected a mapping)")
    return data


def stack_experiment_types(workspace: Path, config: dict) -> List[str]:
    """The ``type`` of every experiment of the workspace's stack (bundled name or YAML path)."""
    stack = config.get("stack")
    data = None
    if isinstance(stack, dict):
        data = stack
    elif isinstance(stack, str):
        candidates = [workspace / stack, workspace / f"{stack}.yaml"]
        try:
            import vot.stack

            bundled = Path(vot.stack.__file__).parent
            candidates += [bundled / f"{stack}.yaml"]
        except Exception:  # vot not importable: the caller reports that separately
            pass
        for c in candidates:
            if c.is_file():
                data = read_stack_file(c)
                break
    experiments = (data or {}).get("experiments") or {}
    if isinstance(experiments, dict):
        experiments = experiments.values()
    return [str(e.get("type", "")) for e in experiments if isinstance(e, dict)]


def read_stack_file(path: Path) -> dict:
    """A stack YAML file as a mapping; a file that is not one is a ``WorkspaceError`` naming it."""
    try:
        with open(path, encoding="utf-8") as f:
            data = yaml.safe_load(f)
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as e:
        where = getattr(e, "problem_mark", None)
        at = f" (line {where.line + 1})" if where is not None else ""
        raise WorkspaceError(f"stack file {path} is not valid YAML{at}: {getattr(e, 'problem', None) or e} - "
                             "fix it or pass a bundled stack name") from None
    if data is not None and not isinstance(data, dict):
        raise WorkspaceError(f"stack file {path} is not a stack (a YAML mapping with experiments:) - fix it or pass "
                             "a bundled stack name")
    return data or {}


def ensure_registry(workspace: Path, config: dict) -> None:
    """Make the workspace's ``registry:`` list include ``./trackers.ini``."""
    registry = config.get("registry") or []
    if isinstance(registry, str):
        registry = [registry]
    resolved = {os.path.normpath(os.path.join(workspace, r)) for r in registry}
    if os.path.normpath(workspace / "trackers.ini") in resolved:
        return
    config["registry"] = list(registry) + ["./trackers.ini"]
    with atomic_open(workspace / "config.yaml", "w") as f:
        yaml.safe_dump(config, f, sort_keys=False)


def _ini_value(value: str) -> str:
    if "\n" in value:
        raise ConfigError(f"value {value!r} contains a line break and cannot go into trackers.ini")
    return value.replace("%", "%%")  # the toolkit reads trackers.ini with ConfigParser interpolation


def render_section(name: str, entries: Dict[str, str]) -> str:
    lines = [f"[{name}]"] + [f"{k} = {_ini_value(str(v))}" for k, v in entries.items()]
    return "\n".join(lines) + "\n"


def upsert_section(path: Path, name: str, text: str) -> bool:
    """Write section ``name`` into an ini file, keeping everything else; True if it replaced one."""
    old = path.read_text() if path.is_file() else ""
    lines = old.splitlines(keepends=True)
    header = re.compile(r"^\s*\[([^\]]+)\]\s*$")
    start = end = None
    for i, line in enumerate(lines):
        m = header.match(line)
        if m and start is not None and end is None:
            end = i
        if m and m.group(1).strip() == name:
            start, end = i, None
    if start is not None:
        end = len(lines) if end is None else end
        # Keep blank/comment lines that precede the next section with that section.
        while end > start + 1 and (not lines[end - 1].strip() or lines[end - 1].lstrip().startswith((";", "#"))):
            end -= 1
        new = "".join(lines[:start]) + text + "".join(lines[end:])
    else:
        sep = "" if not old or old.endswith("\n\n") else ("\n" if old.endswith("\n") else "\n\n")
        new = old + sep + text
    atomic_write_text(path, new)
    return start is not None


def register(workspace, spec=None, weights=None, backbone=None, *, name: Optional[str] = None,
             timeout: Optional[int] = None, multiobject: str = "auto", check: bool = True, log=print,
             on_start=None, label: Optional[str] = None,
             **options) -> str:
    """Validate, then write the trackers.ini entry; returns the tracker identifier.

    ``spec``: the ``TrackerSpec`` of the tracker, or (the older call form) its variant, with
    ``weights`` / ``backbone`` and any other ``TrackerSpec`` field as keywords (``device="cpu"``,
    ``masks="sam"``, ``sam_checkpoint=...``). The rest are this entry's own: ``name`` (default
    LoRAT_<variant>), ``timeout`` (None: 300 s, more with SAM, see ``default_timeout``),
    ``multiobject`` (auto / on / off) and ``check`` (load the model and SAM once to check the files; with
    a non-torch ``backend`` the network is loaded by that backend's runtime, never built in torch).
    """
    spec = TrackerSpec.of(spec, weights=weights, backbone=backbone, **options)
    workspace = Path(workspace).expanduser().resolve()
    config = load_workspace_config(workspace)
    name = name or default_name(spec.variant)
    if not IDENTIFIER.match(name):
        raise ConfigError(f"tracker name {name!r} is not a valid VOT identifier: use letters, digits, '-' and '_'")
    spec = spec.absolute().check()
    variant_name = None
    if spec.variant is not None:
        from lorat_tracker.config import load_config

        variant_name = load_config(spec.variant).name
    # CUDA asked but absent; a backend that cannot run on the device or is not installed: said now,
    # not by the tracker process inside `vot evaluate`.
    dev = spec.check_runtime()
    sam_arch = _check_masks(spec, dev, check, log)
    if timeout is None:
        timeout = default_timeout(spec.masks, sam_arch, dev.type)
    if timeout < 1:
        raise ConfigError(f"--timeout must be at least 1 second, got {timeout}")

    if multiobject == "auto":
        # Supervised experiments (VOT2013-2019 baselines) re-initialize one object at a time and need
        # a single-object tracker; every other experiment type works with the multi-object one.
        mo = "0" if "supervised" in stack_experiment_types(workspace, config) else "1"
    elif multiobject in ("on", "off"):
        mo = "1" if multiobject == "on" else "0"
    else:
        raise ConfigError(f"--multiobject must be auto, on or off, got {multiobject!r}")

    check_writable(workspace / "trackers.ini")  # read-only or forbidden: now, not after loading the model
    if check:
        kind = "an ONNX export" if str(spec.weights).lower().endswith(".onnx") else "a merged export"
        log(f"checking that {Path(spec.weights).name} loads as {variant_name or kind} ...")
        if spec.backend == "torch":
            from lorat_tracker.weights import build_model

            model = build_model(spec.variant, weights=spec.weights, backbone=spec.backbone, device="cpu")
        else:
            # The backend's own load (an ONNX file is validated and read by its runtime, never built in
            # torch; a merged export is converted once and cached beside it, before the VOT run's timeout).
            from lorat_tracker import backends

            model = backends.load_network(spec.backend, spec.variant, spec.weights, spec.backbone, dev,
                                          spec.precision)
        variant_name = model.cfg.name
        del model

    if on_start is not None:
        on_start()  # checked: from here on a failure is one of writing the entry
    logs = workspace / "logs"
    try:
        logs.mkdir(exist_ok=True)
    except OSError as e:
        raise output_error(workspace / "trackers.ini", e) from None
    if label is None:  # the report's name: the variant, and what else makes these boxes (backend, precision)
        label = f"LoRAT {variant_name}" if variant_name else "LoRAT"
        if spec.backend != "torch":
            label += f" ({spec.backend}{'' if spec.precision == 'auto' else ' ' + spec.precision})"
        elif spec.precision != "auto":
            label += f" ({spec.precision})"
        if spec.masks == "sam":
            label += f" + SAM {sam_arch.model_type or 'custom'}"
        elif spec.masks == "sam2":
            label += f" + SAM {sam_arch.version} {sam_arch.size}"
    entries = {
        "label": label,
        "protocol": "traxpython",
        "command": "lorat_tracker.integrations.vot",
        "python": sys.executable,
        "paths": str(package_root()),
        "timeout": str(int(timeout)),
        f"env_{ENV_PREFIX}NAME": name,
        f"env_{ENV_PREFIX}MULTIOBJECT": mo,
        f"env_{ENV_PREFIX}LOG": str(logs / f"{name}.tracker.log"),
    }
    entries.update({f"env_{k}": v for k, v in spec.to_env(ENV_PREFIX).items()})
    if sys.executable and " " in sys.executable:
        log(f"warning: the interpreter path {sys.executable!r} contains a space; vot-toolkit 0.9.0 splits the "
            "command on spaces, so the tracker may fail to start - use a virtualenv at a path without spaces")
    ensure_registry(workspace, config)
    ini = workspace / "trackers.ini"
    replaced = upsert_section(ini, name, render_section(name, entries))
    log(f"{'updated' if replaced else 'registered'} tracker {name} in {ini}")
    from .hook import plain_vot_works

    if plain_vot_works(stack_experiment_types(workspace, config)):
        log(f"run it:   vot evaluate --workspace {workspace} {name}")
    else:
        log(f"run it:   lorat vot evaluate --workspace {workspace} {name}")
        log("          (plain `vot evaluate` fails on this stack's multistart/supervised experiments with "
            "vot-toolkit 0.9.0 unless lorat-tracker's start-up hook loads, and this Python does not load it: "
            "install lorat-tracker with pip, e.g. pip install \"lorat-tracker[vot]\", and leave LORAT_VOT_HOOK unset)")
    log(f"tracker log: {entries['env_LORAT_VOT_LOG']} (crash output: {logs}/{name}_<time>.log)")
    return name


def _check_masks(spec: TrackerSpec, device, check: bool, log):
    """With ``masks="sam"``: the SAM options against the device and, read from the checkpoint, its
    measured architecture (with ``check``: the whole file validated and built once; without: the
    tensor shapes only). The ``SamArchitecture``, or None without masks."""
    if spec.masks == "sam2":
        return _check_sam2(spec, device, check, log)
    if spec.masks != "sam":
        return None
    from lorat_tracker.segmentation import (build_sam_from_state, detect_architecture, import_segment_anything,
                                            read_sam_checkpoint)
    from lorat_tracker.segmentation.refiner import _check_precision_device

    _check_precision_device(spec.sam_precision, device)
    import_segment_anything()  # SamNotInstalledError: pip install "lorat-tracker[sam]"
    path = Path(spec.sam_checkpoint)
    if check:
        log(f"checking the SAM checkpoint {path.name} ...")
        state, arch = read_sam_checkpoint(path)
    else:
        state = _tensor_shapes(path)
        arch = detect_architecture(state, str(path)) if state is not None else read_sam_checkpoint(path)[1]
    spec.check_sam_type(arch)  # known from the tensor shapes: before the slow build
    if check:
        build_sam_from_state(state, arch, str(path))  # every tensor present with its shape
    del state
    return arch


def _check_sam2(spec: TrackerSpec, device, check: bool, log):
    """``masks="sam2"``: the package is there, the checkpoint's size read (and with ``check`` the model built
    from it once). The ``Sam2Architecture``."""
    from lorat_tracker.segmentation.refiner import _check_precision_device
    from lorat_tracker.segmentation.sam2 import build_sam2_from_state, import_sam2, read_sam2_checkpoint

    _check_precision_device(spec.sam_precision, device)
    import_sam2()  # SamNotInstalledError naming the sam2 extra
    path = Path(spec.sam_checkpoint)
    if check:
        log(f"checking the SAM 2 checkpoint {path.name} ...")
    state, arch = read_sam2_checkpoint(path)
    spec.check_sam_type(arch)
    if check:
        build_sam2_from_state(state, arch, str(path))
    del state
    return arch


def _tensor_shapes(path: Path):
    """A checkpoint's tensors without reading their data (memory-mapped torch file or safetensors
    header), for the architecture; None when the file cannot be read that way."""
    import torch

    try:
        with open(path, "rb") as f:
            head = f.read(4)
        if head == b"PK\x03\x04":  # torch's zip format
            state = torch.load(path, map_location="cpu", mmap=True, weights_only=True)
        else:
            from safetensors import safe_open

            with safe_open(str(path), framework="pt") as f:
                state = {k: torch.empty(f.get_slice(k).get_shape(), device="meta") for k in f.keys()}
    except Exception:  # noqa: BLE001 - the full read below says what is wrong with the file
        return None
    return state if isinstance(state, dict) else None
