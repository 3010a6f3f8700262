"""What produced a results folder: recorded in it, checked before anything is resumed or skipped.

The harnesses resume by file presence: the GOT-10k toolkit prints "Found results, skipping" for a
sequence whose result file exists, and ``lorat eval`` tracks only the sequences without one. Into a
folder made by another tracker (the torch run's, when an ONNX or OpenVINO run has the same default
name) that silently reports the other tracker's numbers. So the first run writes
``lorat-tracker.json`` into its results folder - the variant, the weights' and backbone's sha256,
the backend and the precision - and every later run into that folder must be the same tracker, or
is refused in one line naming what differs.
"""
from __future__ import annotations

import hashlib
import json
import os
from typing import Dict, Optional

from .errors import LoRATError

PROVENANCE_FILE = "lorat-tracker.json"


class ResultsProvenanceError(LoRATError, ValueError):
    """A results folder made by another tracker (or by an unknown one) than the run that would resume it."""


def file_sha256(path) -> Optional[str]:
    """sha256 of a file, or of a Hugging Face folder's files (None for None)."""
    if path is None:
        return None
    h = hashlib.sha256()
    files = [path] if not os.path.isdir(path) else sorted(
        os.path.join(path, n) for n in os.listdir(path) if os.path.isfile(os.path.join(path, n)))
    for f in files:
        with open(f, "rb") as stream:
            for chunk in iter(lambda: stream.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()


def tracker_identity(spec) -> Dict[str, Optional[str]]:
    """What makes a tracker's boxes what they are, for a ``TrackerSpec`` (torch is imported to resolve
    the precision ``auto`` means on this device)."""
    precision = spec.precision
    if spec.backend == "torch":
        from .runtime import precision_name, resolve_device

        precision = precision_name(spec.precision, resolve_device(spec.device))
    variant = spec.variant
    if variant is not None and os.path.isfile(str(variant)):
        variant = f"{os.path.basename(str(variant))} sha256:{file_sha256(variant)[:16]}"
    return {"variant": None if variant is None else str(variant), "weights_sha256": file_sha256(spec.weights),
            "backbone_sha256": file_sha256(spec.backbone), "backend": spec.backend, "precision": precision}


def default_run_name(base: str, spec) -> str:
    """``base`` (the variant name), plus the backend and precision when they are not the torch defaults:
    runs of one model on other backends get folders of their own."""
    parts = [base]
    if spec.backend != "torch":
        parts.append(spec.backend)
    if spec.precision not in (None, "auto"):
        parts.append(spec.precision)
    return "-".join(parts)


def check_results_folder(folder, identity: Dict[str, Optional[str]], has_results: bool) -> None:
    """Refuse ``folder`` when its record names another tracker, or when it holds results without a record.
    Reads only: ``record_results_folder`` writes the record once the run starts."""
    path = os.path.join(folder, PROVENANCE_FILE)
    if os.path.isfile(path):
        try:
            with open(path, encoding="utf-8") as f:
                saved = json.load(f)
        except (OSError, ValueError) as e:
            raise ResultsProvenanceError(f"{path} is unreadable ({type(e).__name__}) - delete the folder {folder} "
                                         "to start over, or pass another --name") from None
        differ = [k for k in identity if saved.get(k) != identity[k]]
        if differ:
            what = ", ".join(f"{k} {_short(saved.get(k))} there, {_short(identity[k])} here" for k in differ)
            raise ResultsProvenanceError(f"{folder} holds the results of another tracker ({what}): resuming would "
                                         "mix or reuse its boxes - pass another --name (or delete that folder)")
        return
    if has_results:
        raise ResultsProvenanceError(f"{folder} holds results but no record of the tracker that made them "
                                     f"({PROVENANCE_FILE}): they may be another tracker's - pass another --name, or "
                                     "delete or move that folder")


def record_results_folder(folder, identity: Dict[str, Optional[str]]) -> None:
    """Write the record of ``identity`` into ``folder`` unless it is there (checked before)."""
    from .io import atomic_write_text

    path = os.path.join(folder, PROVENANCE_FILE)
    if not os.path.isfile(path):
        atomic_write_text(path, json.dumps(identity, indent=1) + "\n")


def _short(value) -> str:
    text = "(none)" if value is None else str(value)
    return text[:12] if len(text) == 64 and all(c in "0123456789abcdef" for c in text) else text
