"""Our merged export: one safetensors file with the variant config (and a digest of it) in its header."""
from __future__ import annotations

import hashlib
import json

from safetensors.torch import save_file

from ..config import VariantConfig
from ..errors import ConfigError, WeightsError
from ..io import atomic_path, write_error
from .files import StateDict, WeightsFile, check_tensors

EXPORT_FORMAT = "lorat-tracker/merged-v1"


def export_merged(model, path) -> None:
    """One self-contained merged file: loads later with ``build_model(None, weights=path)``.

    The header carries the variant configuration and a digest of it and of the tensor layout
    (``export_digest``), checked at load: an edited header is refused instead of tracking with other
    boxes. Written atomically (``lorat_tracker.io``), with the mode the umask asks for.
    """
    state = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    check_tensors(state, "the model to export")
    check_output_finite(model)
    metadata = {"format": EXPORT_FORMAT, "config": model.cfg.to_json(), "digest": export_digest(model.cfg, state)}
    with atomic_path(path) as tmp:
        try:
            save_file(state, tmp, metadata=metadata)
        except Exception as e:  # noqa: BLE001 - SafetensorError wraps the OS error (full disk) in its text
            raise write_error(path, e) from None


def check_output_finite(model) -> None:
    """One forward of ``model`` in fp32 on a neutral crop pair (the normalised mean image): refuse weights
    whose values are finite but overflow inside the network (its output NaN or infinite), naming the
    tensor of largest magnitude, so such weights are never written as an export."""
    import torch

    from ..errors import DamagedWeightsError

    cfg = model.cfg
    param = next(model.parameters())
    z = torch.zeros(1, 3, cfg.template.size, cfg.template.size, device=param.device)
    x = torch.zeros(1, 3, cfg.search.size, cfg.search.size, device=param.device)
    mask = torch.ones(1, cfg.template_grid, cfg.template_grid, dtype=torch.int64, device=param.device)
    training = model.training
    try:
        with torch.inference_mode():
            score_map, boxes = model.eval()(z, x, mask)
    finally:
        model.train(training)
    if bool(torch.isfinite(score_map).all() and torch.isfinite(boxes).all()):
        return
    with torch.no_grad():
        name, t = max(((n, t) for n, t in model.state_dict().items() if t.is_floating_point()),
                      key=lambda item: float(item[1].abs().max()) if item[1].numel() else 0.0)
    raise DamagedWeightsError(f"the network's output is not finite in fp32 for a plain input: the weights overflow "
                              f"(largest magnitude: tensor {name}, {float(t.abs().max()):.3g}) - they are damaged; "
                              "use another copy")


def export_digest(cfg: VariantConfig, tensors: StateDict) -> str:
    """sha256 of the canonical configuration JSON and of every tensor's name, dtype and shape.

    It makes edits of an export's header detectable (a changed ``num_heads`` or ``window_penalty``
    still parses and validates); it is not a signature, and tensor values are not hashed (they are
    checked to be finite floats on every load instead).
    """
    h = hashlib.sha256(cfg.to_json().encode("utf-8"))
    for name in sorted(tensors):
        t = tensors[name]
        h.update(f"\n{name} {str(t.dtype).replace('torch.', '')} {list(t.shape)}".encode("utf-8"))
    return "sha256:" + h.hexdigest()


def export_config(wf: WeightsFile) -> VariantConfig:
    """The variant configuration of a merged export, validated like a YAML variant and digest-checked."""
    reexport = "re-export it with lorat export"
    text = wf.metadata.get("config")
    if not text:
        raise WeightsError(f"{wf.path} is marked as a merged export but carries no configuration - {reexport}")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise WeightsError(f"{wf.path}: the export's configuration is not valid JSON ({e.msg}, character {e.pos}) - "
                           f"the header was edited or damaged; {reexport}") from None
    try:
        cfg = VariantConfig.from_dict(data, source=f"in the header of {wf.path}", hint=reexport)
    except ConfigError as e:
        raise WeightsError(str(e)) from None
    stored = wf.metadata.get("digest")
    if stored is None:
        raise WeightsError(f"{wf.path} carries no digest of its configuration (it was written by an older "
                           f"lorat export, or its header was edited) - {reexport}")
    if stored != export_digest(cfg, wf.tensors):
        raise WeightsError(f"{wf.path}: the export's configuration was edited: the digest written by lorat export "
                           f"does not match its configuration ({cfg.name}) and tensor layout - {reexport}")
    return cfg
