"""``lorat vot workspace``: a VOT workspace from local sequences that never downloads anything.

The toolkit downloads a stack's dataset only while ``WORKSPACE/sequences/list.txt`` is missing, so
a workspace whose ``sequences/`` holds the user's sequences plus a ``list.txt`` runs any stack
offline. Source sequences are never written to: each ``sequences/<name>/`` is a real directory
whose entries link to (or, with ``copy=True``, are copies of) the source's files; files this helper
adds (a ``sequence`` metadata file, an ``anchor.value`` for multistart stacks) live only there.

Input layout per sequence (the VOT one): ``<name>/color/00000001.jpg ...`` and ``groundtruth.txt``
(single object) or ``groundtruth_<id>.txt`` (several objects), optionally ``<name>/sequence``.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import List

import numpy as np
import yaml

from lorat_tracker.images import is_image_file

from lorat_tracker.io import atomic_open, atomic_write_text, check_writable, output_error

from .registration import WorkspaceError, read_stack_file, stack_experiment_types


def bundled_stacks() -> List[str]:
    import vot.stack

    root = Path(vot.stack.__file__).parent
    return sorted(str(p.relative_to(root).with_suffix("")) for p in root.rglob("*.yaml"))


def _frames(seq: Path) -> int:
    color = seq / "color"
    if color.is_dir():
        return len([p for p in color.iterdir() if is_image_file(p.name)])
    gts = sorted(seq.glob("groundtruth*.txt"))
    return len(gts[0].read_text().splitlines()) if gts else 0


def _is_sequence(d: Path) -> bool:
    return d.is_dir() and ((d / "sequence").is_file() or ((d / "color").is_dir() and any(d.glob("groundtruth*.txt"))))


def find_sequences(source: Path) -> List[Path]:
    if _is_sequence(source):
        return [source]
    listed = source / "list.txt"
    if listed.is_file():
        names = [n.strip() for n in listed.read_text().splitlines() if n.strip()]
        return [source / n for n in names if _is_sequence(source / n)]
    return sorted(d for d in source.iterdir() if _is_sequence(d))


def _link_sequence(src: Path, dst: Path, copy: bool) -> None:
    dst.mkdir(parents=True)
    for entry in sorted(src.iterdir()):
        target = dst / entry.name
        if copy:
            (shutil.copytree if entry.is_dir() else shutil.copy2)(entry, target)
        else:
            os.symlink(entry.resolve(), target)


def _ensure_metadata(seq: Path) -> None:
    if (seq / "sequence").exists():
        return
    first = seq / "color" / "00000001.jpg"
    if not first.is_file():
        raise WorkspaceError(f"sequence {seq.name} has no 'sequence' file and no color/00000001.jpg - expected the "
                             "VOT layout <name>/color/%08d.jpg + groundtruth.txt")
    atomic_write_text(seq / "sequence", f"channels.color=color/%08d.jpg\nfps=30\nformat=default\nname={seq.name}\n")


def _ensure_anchor(seq: Path) -> bool:
    """Multistart experiments need anchors; without any, start forward from the first frame."""
    if (seq / "anchor.value").exists():
        return False
    n = _frames(seq)
    atomic_write_text(seq / "anchor.value", "".join("1\n" if i == 0 else "0\n" for i in range(n)))
    return True


def _masks_from_rectangles(seq: Path) -> None:
    """VOTS-style ground truth for a demo sequence: each cow rectangle becomes the cow's silhouette
    (the alpha of the template the toolkit pastes) at that place, as a VOT mask region."""
    import vot.dataset.dummy
    from PIL import Image
    from vot.region import Mask
    from vot.region.io import read_trajectory, write_trajectory

    cow = Image.open(Path(vot.dataset.dummy.__file__).parent / "cow.png")
    silhouette = (np.asarray(cow.convert("RGBA"))[:, :, 3] > 0).astype(np.uint8)
    for gt in sorted(seq.glob("groundtruth*.txt")):
        regions = read_trajectory(str(gt))
        write_trajectory(str(gt), [Mask(silhouette, offset=(int(r.x), int(r.y))) for r in regions])


def _demo_sequences(root: Path, count: int, objects: int, length: int, masks: bool = False) -> List[str]:
    # The toolkit's own synthetic sequence (a cow circling over noise), as `vot test` uses.
    from .shim import generate_dummy_sequence

    names = []
    for i in range(count):
        name = f"demo{i + 1}"
        generate_dummy_sequence(str(root / name), length, (320, 240), objects)
        meta = root / name / "sequence"  # the generator names every sequence "dummy": results would collide
        atomic_write_text(meta, "".join(f"name={name}\n" if line.startswith("name=") else line + "\n"
                                for line in meta.read_text().splitlines()))
        if masks:
            _masks_from_rectangles(root / name)
        names.append(name)
    return names


def create_workspace(workspace, stack: str, sequences=None, demo: int = 0, demo_objects: int = 1,
                     demo_length: int = 30, copy: bool = False, log=print, demo_masks: bool = False,
                     on_start=None) -> Path:
    """Build ``workspace`` for ``stack`` (a bundled stack name or a stack YAML file)."""
    ws = Path(workspace).expanduser().resolve()
    if (ws / "config.yaml").exists():
        raise WorkspaceError(f"{ws} is already a VOT workspace (config.yaml exists) - choose a new directory")
    if sequences is None and demo <= 0:
        raise WorkspaceError("give --sequences DIR (your sequences) or --demo N (N synthetic sequences)")
    stack_path = Path(stack).expanduser()
    if stack_path.suffix in (".yaml", ".yml") or stack_path.is_file():
        if not stack_path.is_file():
            raise WorkspaceError(f"stack file {stack_path} does not exist")
        read_stack_file(stack_path)  # not YAML, or not a stack: now, before anything is written
        stack_value = "./stack.yaml"
    else:
        known = bundled_stacks()
        if stack not in known:
            raise WorkspaceError(f"unknown stack {stack!r}: use a stack YAML file or one of {', '.join(known)}")
        stack_value = stack
    sources: List[Path] = []
    if sequences is not None:
        src = Path(sequences).expanduser().resolve()
        if not src.is_dir():
            raise WorkspaceError(f"sequence directory {src} does not exist")
        sources = find_sequences(src)
        if not sources:
            raise WorkspaceError(f"no sequences found in {src} - expected folders <name>/color/%08d.jpg with "
                                 "groundtruth.txt (or groundtruth_<id>.txt)")
        names = [s.name for s in sources]
        if len(set(names)) != len(names):
            raise WorkspaceError(f"duplicate sequence names in {src}")

    check_writable(ws, folder=True)  # read-only or forbidden: one line now
    if on_start is not None:
        on_start()  # checked: from here on a failure is one of writing the workspace
    seq_root = ws / "sequences"
    try:
        seq_root.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise output_error(seq_root, e) from None
    if (seq_root / "list.txt").exists() or any(seq_root.iterdir()):
        raise WorkspaceError(f"{seq_root} is not empty - choose a new workspace directory")
    names = []
    for s in sources:
        _link_sequence(s, seq_root / s.name, copy)
        _ensure_metadata(seq_root / s.name)
        names.append(s.name)
    if demo > 0:
        try:
            names += _demo_sequences(seq_root, demo, demo_objects, demo_length, masks=demo_masks)
        except OSError as e:  # the toolkit's generator names no file
            raise output_error(e.filename or seq_root, e) from None
    atomic_write_text(seq_root / "list.txt", "".join(n + "\n" for n in names))

    config = {"registry": ["./trackers.ini"], "stack": stack_value}
    if stack_value == "./stack.yaml":
        shutil.copy2(stack_path, ws / "stack.yaml")
    with atomic_open(ws / "config.yaml", "w") as f:
        yaml.safe_dump(config, f, sort_keys=False)
    ini = ws / "trackers.ini"
    if not ini.exists():
        atomic_write_text(ini, "; VOT tracker registry - add LoRAT with `lorat vot register --workspace "
                       f"{ws} ...`\n")
    for sub in ("results", "logs"):
        (ws / sub).mkdir(exist_ok=True)

    if "multistart" in stack_experiment_types(ws, config):
        added = [n for n in names if _ensure_anchor(seq_root / n)]
        if added:
            log(f"note: {len(added)} sequence(s) had no anchor.value; multistart experiments start them "
                "forward from frame 1 only")
    log(f"workspace {ws}: stack {stack}, {len(names)} sequence(s) in {seq_root} (offline: list.txt present)")
    return ws
