"""``lorat vot register``: one ``trackers.ini`` entry that makes plain ``vot evaluate WS ID`` work
(on every bundled stack once lorat-tracker is installed: see ``hook``).

The entry runs ``<this interpreter> -m lorat_tracker.integrations.vot`` over TraX (``protocol = traxpython``), with
the model settings as ``env_LORAT_VOT_*`` variables, ``paths`` pointing at the directory that holds
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

from lorat_tracker.errors import ConfigError, LoRATError, WeightsNotFoundError
from lorat_tracker.io import atomic_open, atomic_write_text

IDENTIFIER = re.compile(r"^[a-zA-Z0-9-_]+$")
DEFAULT_TIMEOUT_S = 300
MASK_MODES = ("none", "sam")
# --masks sam: seconds of SAM per object per frame used for the default timeout. CPU: measured with
# benchmarks/sam_speed.py (fp32, 2-core AMD EPYC shared with other jobs, so on the slow side); other
# SAM sizes (tests' tiny one) count as ViT-B. CUDA: not measured here (no GPU), a generous guess.
# The timeout covers a frame of SAM_TIMEOUT_OBJECTS objects three times over, plus the tracker's 300 s.
SAM_SECONDS_PER_OBJECT = {"cpu": {"vit_b": 70.0, "vit_l": 200.0, "vit_h": 215.0, None: 70.0},
                          "cuda": {"vit_b": 0.2, "vit_l": 0.4, "vit_h": 0.6, None: 0.6}}
SAM_TIMEOUT_OBJECTS = 20


def default_timeout(masks: str, sam_type: Optional[str], device_type: str) -> int:
    """The trackers.ini ``timeout``: 300 s, plus room for SAM on a crowded VOTS frame with --masks sam."""
    if masks != "sam":
        return DEFAULT_TIMEOUT_S
    per_object = SAM_SECONDS_PER_OBJECT.get(device_type, SAM_SECONDS_PER_OBJECT["cpu"])[sam_type]
    return int(DEFAULT_TIMEOUT_S + 3 * SAM_TIMEOUT_OBJECTS * per_object)


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
                with open(c) as f:
                    data = yaml.safe_load(f)
                break
    experiments = (data or {}).get("experiments") or {}
    if isinstance(experiments, dict):
        experiments = experiments.values()
    return [str(e.get("type", "")) for e in experiments if isinstance(e, dict)]


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


def register(workspace, variant: Optional[str], weights, backbone=None, name: Optional[str] = None,
             device: Optional[str] = None, precision: str = "auto", timeout: Optional[int] = None,
             multiobject: str = "auto", check: bool = True, log=print, masks: str = "none",
             sam_checkpoint=None, sam_type: Optional[str] = None, sam_precision: str = "fp32") -> str:
    """Validate, then write the trackers.ini entry; returns the tracker identifier.

    ``masks="sam"`` with ``sam_checkpoint`` (Meta's ``sam_vit_*.pth``): the tracker answers mask
    stacks with SAM's masks of its boxes. ``timeout`` None: 300 s, more with SAM (``default_timeout``).
    """
    from lorat_tracker.config import load_config
    from lorat_tracker.runtime import resolve_device, resolve_precision

    workspace = Path(workspace).expanduser().resolve()
    config = load_workspace_config(workspace)
    name = name or default_name(variant)
    if not IDENTIFIER.match(name):
        raise ConfigError(f"tracker name {name!r} is not a valid VOT identifier: use letters, digits, '-' and '_'")
    if variant is not None:
        cfg = load_config(variant)  # unknown variant -> ConfigError listing the known ones
        if Path(str(variant)).suffix in (".yaml", ".yml") or Path(str(variant)).is_file():
            variant = str(Path(variant).expanduser().resolve())
        variant_name = cfg.name
    else:
        variant_name = None
    weights = Path(weights).expanduser().resolve()
    if not weights.is_file():
        raise WeightsNotFoundError(f"weights file {weights} does not exist - pass the LoRAT .bin (or an export "
                                   "from `lorat export`) with --weights")
    if backbone is not None:
        backbone = Path(backbone).expanduser().resolve()
        if not backbone.is_file():
            raise WeightsNotFoundError(f"backbone file {backbone} does not exist - pass the DINOv2 file with "
                                       "--backbone, or leave it out if the weights carry the backbone")
    dev = resolve_device(device)
    resolve_precision(precision, dev)  # unknown precision or device -> ConfigError
    sam_arch = _check_masks(masks, sam_checkpoint, sam_type, sam_precision, dev, check, log)
    if sam_checkpoint is not None:
        sam_checkpoint = Path(sam_checkpoint).expanduser().resolve()
    sam_kind = sam_arch.model_type if sam_arch else _sam_type(sam_type)  # the checked file's size, else the asked one
    if timeout is None:
        timeout = default_timeout(masks, sam_kind, dev.type)
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

    if check:
        from lorat_tracker.weights import build_model

        log(f"checking that {weights.name} loads as {variant_name or 'a merged export'} ...")
        model = build_model(variant, weights=weights, backbone=backbone, device="cpu")
        variant_name = model.cfg.name
        del model

    logs = workspace / "logs"
    logs.mkdir(exist_ok=True)
    label = f"LoRAT {variant_name}" if variant_name else "LoRAT"
    if masks == "sam":
        label += f" + SAM {sam_kind or 'custom'}"
    entries = {
        "label": label,
        "protocol": "traxpython",
        "command": "lorat_tracker.integrations.vot",
        "python": sys.executable,
        "paths": str(package_root()),
        "timeout": str(int(timeout)),
        "env_LORAT_VOT_NAME": name,
        "env_LORAT_VOT_WEIGHTS": str(weights),
        "env_LORAT_VOT_PRECISION": precision,
        "env_LORAT_VOT_MULTIOBJECT": mo,
        "env_LORAT_VOT_LOG": str(logs / f"{name}.tracker.log"),
    }
    if variant is not None:
        entries["env_LORAT_VOT_VARIANT"] = str(variant)
    if backbone is not None:
        entries["env_LORAT_VOT_BACKBONE"] = str(backbone)
    if device is not None:
        entries["env_LORAT_VOT_DEVICE"] = str(device)
    if masks == "sam":
        entries["env_LORAT_VOT_MASKS"] = "sam"
        entries["env_LORAT_VOT_SAM_CHECKPOINT"] = str(sam_checkpoint)
        entries["env_LORAT_VOT_SAM_PRECISION"] = sam_precision
        if sam_type is not None:
            entries["env_LORAT_VOT_SAM_TYPE"] = _sam_type(sam_type)
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


def _sam_type(sam_type: Optional[str]) -> Optional[str]:
    from lorat_tracker.segmentation.checkpoint import _normalize_model_type

    return _normalize_model_type(sam_type)


def _check_masks(masks: str, sam_checkpoint, sam_type, sam_precision: str, device, check: bool, log):
    """--masks / --sam-* options; with ``check`` the SAM file is read and validated. The architecture or None."""
    from lorat_tracker.segmentation import (CHECKPOINT_NAMES, PRECISIONS, SamCheckpointError,
                                            SamCheckpointNotFoundError, import_segment_anything, read_sam_checkpoint)
    from lorat_tracker.segmentation.refiner import _check_precision_device

    if masks not in MASK_MODES:
        raise ConfigError(f"--masks must be none or sam, got {masks!r}")
    if masks != "sam":
        if sam_checkpoint is not None or sam_type is not None:
            raise ConfigError("--sam-checkpoint / --sam-type are used only with --masks sam - add --masks sam")
        return None
    if sam_checkpoint is None:
        raise ConfigError(f"--masks sam needs --sam-checkpoint FILE (Meta's {CHECKPOINT_NAMES['vit_h']}, "
                          f"{CHECKPOINT_NAMES['vit_l']} or {CHECKPOINT_NAMES['vit_b']})")
    asked = _sam_type(sam_type)
    if sam_precision not in PRECISIONS:
        raise ConfigError(f"--sam-precision must be one of {', '.join(PRECISIONS)}, got {sam_precision!r}")
    _check_precision_device(sam_precision, device)
    import_segment_anything()  # SamNotInstalledError: pip install "lorat-tracker[sam]"
    path = Path(sam_checkpoint).expanduser().resolve()
    if not path.is_file():
        raise SamCheckpointNotFoundError(f"--sam-checkpoint {path} does not exist - download Meta's SAM checkpoint "
                                         f"(e.g. {CHECKPOINT_NAMES['vit_h']}) and pass its path")
    if not check:
        return None
    log(f"checking the SAM checkpoint {path.name} ...")
    from lorat_tracker.segmentation import build_sam_from_state

    state, arch = read_sam_checkpoint(path)
    if asked is not None and arch.model_type != asked:  # known from the tensor shapes: before the slow build
        other = f" or --sam-type {arch.model_type}" if arch.model_type else ""
        raise SamCheckpointError(f"--sam-checkpoint {path} is {arch.describe()}, but --sam-type {asked} was given - "
                                 f"pass the {CHECKPOINT_NAMES[asked]} file{other}")
    build_sam_from_state(state, arch, str(path))  # every tensor present with its shape
    del state
    return arch
