"""The ONNX file every non-torch backend runs: export, digest, validation where it enters, caching.

The graph is the merged network exactly as ``LoRATModel.forward``: inputs ``z`` (B, 3, Ht, Wt) and
``x`` (B, 3, Hs, Ws) float32 normalised crops and ``z_feat_mask`` (B, Hz, Wz) int64; outputs
``score_map`` (B, H, W) logits and ``boxes`` (B, H, W, 4) x1y1x2y2 normalised by the search size.
The batch is fixed (``batch=N``) or dynamic (``batch=None``).

``metadata_props`` carry ``format``, the variant ``config`` (JSON), ``batch``, for a quantised file
``precision`` (and what it was calibrated on), and a ``digest`` (``onnx_digest``): sha256 over the
format tag, the metadata that says what the file computes (``DIGEST_PROPS``: configuration, batch,
precision; other entries, such as a note or the calibration text, are free), the opset imports, every node
(attributes and constant tensors included), the graph's inputs and outputs, and every initializer's
name, type, shape and *values*. Unlike the safetensors export's digest it covers the weights: an ONNX
file cannot be checked tensor by tensor the way ``read_weights_file`` checks safetensors, and hashing
a B-224 file takes a fraction of a second. It detects edits and truncation; it is not a signature.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import warnings
from typing import Optional

from ..config import VariantConfig, load_config
from ..errors import BackendNotInstalledError, ConfigError, WeightsError, WeightsNotFoundError
from ..io import atomic_path
from ..spec import literal

ONNX_FORMAT = "lorat-tracker/onnx-v1"
OPSET = 18
ONNX_HINT = 'pip install "lorat-tracker[onnx]"'
DIGEST_PROPS = ("config", "batch", "precision")  # the metadata that says what the file computes
# protobuf cannot serialise a message over 2 GiB: bigger models (g-378) keep their weights in FILE.data.
_PROTOBUF_LIMIT = 2 ** 31 - 2 ** 24


@dataclasses.dataclass
class OnnxInfo:
    """A validated LoRAT ONNX file: what ``lorat info`` prints and what a backend loads."""
    path: str
    cfg: VariantConfig            # the variant asked for (or the stored one), architecture-checked
    stored_variant: str
    batch: Optional[int]          # None = dynamic
    digest: str
    opset: int
    num_parameters: int
    exporter: str
    source_sha256: Optional[str]  # set when converted from a merged export (the cache key)
    precision: str = "fp32"       # "int8": quantised by backends.quantize (QDQ nodes)
    calibration: Optional[str] = None

    def describe(self) -> str:
        c = self.cfg
        return "\n".join([
            f"file:            {self.path}",
            f"format:          onnx ({ONNX_FORMAT}, opset {self.opset}, exported with {self.exporter})",
            f"variant:         {self.stored_variant}",
            f"template:        {c.template.size}x{c.template.size} px ({c.template_grid}x{c.template_grid} tokens)",
            f"search region:   {c.search.size}x{c.search.size} px (search grid {c.search_grid}x{c.search_grid})",
            f"batch:           {'dynamic' if self.batch is None else self.batch}",
            f"weights:         {self.precision}" + (f" (calibrated on {self.calibration})" if self.calibration else ""),
            f"parameters:      {self.num_parameters:,}",
            f"digest:          {self.digest} (verified)",
            "runs with:       backend onnxruntime, openvino or tensorrt (no --variant or --backbone needed)"])


def import_onnx():
    try:
        import onnx
    except ImportError as e:
        raise BackendNotInstalledError(f"ONNX files need the onnx package ({e}) - install it with: {ONNX_HINT}") from None
    return onnx


def is_onnx_path(path) -> bool:
    return os.fspath(path).lower().endswith(".onnx")


# ------------------------------------------------------------------------------------------ export

def check_export_available():
    """The ``onnx`` module, once the packages an ONNX export needs are known to be installed."""
    onnx = import_onnx()
    try:
        import onnxscript  # noqa: F401  (the dynamo exporter is written with it)
    except ImportError as e:
        raise BackendNotInstalledError(f"ONNX export needs the onnxscript package ({e}) - install it with: "
                                       f"{ONNX_HINT}") from None
    return onnx


def export_onnx(model, path, batch: Optional[int] = 1, source_sha256: Optional[str] = None) -> OnnxInfo:
    """Write ``model`` (a merged ``LoRATModel``) as ONNX at ``path``, atomically; ``batch=None``: dynamic.

    torch.onnx's dynamo exporter (torch.export, opset 18) is used: it traces the network as it is,
    SDPA attention and the int64 token-type gather included.
    """
    import torch

    onnx = check_export_available()
    if batch is not None and (isinstance(batch, bool) or not isinstance(batch, int) or batch < 1):
        raise ConfigError(f"batch must be a positive integer or None (dynamic), got {batch!r}")
    from ..weights.export import check_output_finite

    check_output_finite(model)  # weights that overflow are never written as an export
    cfg = model.cfg
    # Traced on the CPU in eval mode; the caller's model goes back where it was (device and mode) after.
    device, was_training = next(model.parameters()).device, model.training
    model.to("cpu").eval()
    # torch.export specialises sizes 0 and 1: a dynamic batch is traced with an example batch of 2.
    example = 2 if batch is None else batch
    t, s, g = cfg.template.size, cfg.search.size, cfg.template_grid
    args = (torch.zeros(example, 3, t, t), torch.zeros(example, 3, s, s),
            torch.zeros(example, g, g, dtype=torch.int64))
    kwargs = {}
    if batch is None:
        dim = torch.export.Dim("batch", min=1, max=4096)
        kwargs["dynamic_shapes"] = {"z": {0: dim}, "x": {0: dim}, "z_feat_mask": {0: dim}}
    from .base import INPUT_NAMES, OUTPUT_NAMES

    try:
        with warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad():
            warnings.simplefilter("ignore")  # the exporter's deprecation/rename chatter is not the user's concern
            program = torch.onnx.export(model, args, dynamo=True, opset_version=OPSET,
                                        input_names=list(INPUT_NAMES), output_names=list(OUTPUT_NAMES),
                                        verbose=False, optimize=True, **kwargs)
    finally:
        model.to(device).train(was_training)
    proto = program.model_proto
    props = {"format": ONNX_FORMAT, "config": cfg.to_json(), "batch": "dynamic" if batch is None else str(batch),
             "exporter": f"torch {torch.__version__} (dynamo)"}
    if source_sha256:
        props["source_sha256"] = source_sha256
    props["digest"] = onnx_digest(proto, props)
    del proto.metadata_props[:]
    for key, value in props.items():
        proto.metadata_props.add(key=key, value=value)
    path = os.fspath(path)
    big = proto.ByteSize() > _PROTOBUF_LIMIT
    with atomic_path(path) as tmp:
        if big:  # the weights file is written in place, the .onnx that names it last and atomically
            onnx.save_model(proto, tmp, save_as_external_data=True, all_tensors_to_one_file=True,
                            location=os.path.basename(path) + ".data")
        else:
            onnx.save_model(proto, tmp)
    return read_onnx(path, variant=cfg)


def onnx_digest(proto, props) -> str:
    """sha256 of what the graph computes (see the module docstring): ``props`` is the file's metadata
    (a mapping), of which ``DIGEST_PROPS`` are hashed; ``proto.metadata_props`` itself is not read."""
    from onnx import numpy_helper

    h = hashlib.sha256(f"{ONNX_FORMAT}\n".encode("utf-8"))
    for key in DIGEST_PROPS:
        h.update(f"{key} {props.get(key, '')}\n".encode("utf-8"))
    for op in proto.opset_import:
        h.update(f"opset {op.domain} {op.version}\n".encode("utf-8"))
    graph = proto.graph
    for field in (graph.input, graph.output, graph.node, graph.sparse_initializer):
        for item in field:
            h.update(item.SerializeToString(deterministic=True))
    for f in proto.functions:
        h.update(f.SerializeToString(deterministic=True))
    for init in sorted(graph.initializer, key=lambda t: t.name):
        values = numpy_helper.to_array(init)
        h.update(f"\n{init.name} {init.data_type} {list(init.dims)}\n".encode("utf-8"))
        h.update(memoryview(values.reshape(-1).view("uint8")) if values.size else b"")
    return "sha256:" + h.hexdigest()


# ------------------------------------------------------------------------------------------ reading

def read_onnx(path, variant=None) -> OnnxInfo:
    """Validate a LoRAT ONNX file where it enters: readable, ours, digest intact, the asked variant.

    ``variant``: None (the stored configuration is used), a bundled name / YAML path or a
    ``VariantConfig``, which must have the stored architecture and geometry.
    """
    onnx = import_onnx()
    path = os.fspath(path)
    if not os.path.exists(path):
        raise WeightsNotFoundError(f"ONNX file {path} does not exist - check the path, or make one with "
                                   "lorat export --format onnx")
    if os.path.isdir(path):
        raise WeightsError(f"{path} is a directory - pass the .onnx file inside it")
    again = "export it again with lorat export --format onnx"
    try:
        proto = onnx.load(path)
    except Exception as e:  # noqa: BLE001  (protobuf DecodeError, missing external data, OSError)
        raise WeightsError(f"cannot read {path} as ONNX ({type(e).__name__}: {str(e)[:160]}); the file is "
                           f"truncated or corrupt - {again}") from None
    props = {p.key: p.value for p in proto.metadata_props}
    if props.get("format") != ONNX_FORMAT:
        raise WeightsError(f"{path} is an ONNX file, but not one written by lorat export (no {ONNX_FORMAT} "
                           f"metadata) - {again}")
    try:
        stored = VariantConfig.from_dict(json.loads(props.get("config", "")), source=f"in the metadata of {path}",
                                         hint=again)
    except (json.JSONDecodeError, ConfigError) as e:
        raise WeightsError(f"{path}: the variant configuration in its metadata is damaged ({e}) - {again}") from None
    digest = props.get("digest")
    if digest != onnx_digest(proto, props):
        raise WeightsError(f"{path} was edited or damaged after export: its digest does not match its graph, "
                           f"weights and configuration ({stored.name}) - {again}")
    cfg = stored
    if variant is not None:
        cfg = variant if isinstance(variant, VariantConfig) else load_config(variant)
        if _geometry(cfg) != _geometry(stored):
            raise WeightsError.naming(f"{literal(path)} was exported for variant {literal(stored.name)} "
                                      f"({stored.search.size} px search region) but {literal(cfg.name)} "
                                      f"({cfg.search.size} px) was asked - pass {{variant:{literal(stored.name)}}} "
                                      "(or no variant)")
    try:
        batch = None if props.get("batch") == "dynamic" else int(props["batch"])
    except (KeyError, ValueError):
        raise WeightsError(f"{path}: its batch metadata ({props.get('batch')!r}) is not a batch size - {again}") from None
    _check_signature(proto, stored, batch, path)
    params = 0
    for init in proto.graph.initializer:
        n = 1
        for d in init.dims:
            n *= d
        params += n
    return OnnxInfo(path=path, cfg=cfg, stored_variant=stored.name, batch=batch, digest=digest,
                    opset=next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), 0),
                    num_parameters=params, exporter=props.get("exporter", "?"),
                    source_sha256=props.get("source_sha256"), precision=props.get("precision", "fp32"),
                    calibration=props.get("calibration"))


def _geometry(cfg: VariantConfig):
    b = cfg.backbone
    return (b.embed_dim, b.depth, b.num_heads, b.ffn, b.patch_size, cfg.template.size, cfg.search.size)


def _check_signature(proto, cfg: VariantConfig, batch: Optional[int], path: str) -> None:
    """The graph's inputs and outputs are the ones the configuration implies (names, shapes, types)."""
    from onnx import TensorProto

    from .base import INPUT_NAMES, OUTPUT_NAMES

    t, s, gz, gx = cfg.template.size, cfg.search.size, cfg.template_grid, cfg.search_grid
    want = {"z": ([3, t, t], TensorProto.FLOAT), "x": ([3, s, s], TensorProto.FLOAT),
            "z_feat_mask": ([gz, gz], TensorProto.INT64), "score_map": ([gx, gx], TensorProto.FLOAT),
            "boxes": ([gx, gx, 4], TensorProto.FLOAT)}
    have = {}
    for v in list(proto.graph.input) + list(proto.graph.output):
        tt = v.type.tensor_type
        have[v.name] = ([d.dim_param or d.dim_value for d in tt.shape.dim], tt.elem_type)
    names = [v.name for v in proto.graph.input], [v.name for v in proto.graph.output]
    if tuple(names[0]) != INPUT_NAMES or tuple(names[1]) != OUTPUT_NAMES:
        raise WeightsError(f"{path} has inputs {names[0]} and outputs {names[1]}, not a LoRAT network's "
                           f"{list(INPUT_NAMES)} -> {list(OUTPUT_NAMES)}")
    for name, (shape, dtype) in want.items():
        dims, elem = have[name]
        first = dims[0] if dims else None
        if dims[1:] != shape or elem != dtype or (batch is not None and first != batch) \
                or (batch is None and not isinstance(first, str)):
            raise WeightsError(f"{path}: {name} has shape {dims} (type {elem}), but variant {cfg.name} "
                               f"with batch {batch or 'dynamic'} implies {['B'] + shape} - the file does not "
                               "match its own metadata; export it again")


# ------------------------------------------------------------------------------------------ caching

def onnx_for_weights(weights) -> Optional[str]:
    """For a merged export: the path of its ONNX conversion (``<file>.onnx`` beside it), made on first
    use and remade when the export changes. For any other weights file: None.

    The conversion carries the export's own configuration, whoever asks first: the variant a caller
    asks for is applied (and checked against the file) when the cached file is read, so one caller's
    variant never becomes another's."""
    from ..weights import WeightsFormat, build_model, classify, read_weights_file

    if weights is None:
        raise WeightsError.naming("a non-torch backend needs weights: an .onnx file from lorat export --format onnx "
                                  "or a merged export - pass {weights:FILE}")
    wf = read_weights_file(weights)
    if classify(wf) is not WeightsFormat.MERGED_EXPORT:
        return None
    del wf
    source = file_sha256(weights)
    cached = os.fspath(weights) + ".onnx"
    if os.path.exists(cached):
        try:
            if read_onnx(cached).source_sha256 == source:
                return cached
        except WeightsError:
            pass  # damaged or stale: convert again
    model = build_model(None, weights=weights)  # a merged export carries its configuration and backbone
    try:
        export_onnx(model, cached, batch=None, source_sha256=source)
    except OSError as e:  # read-only folder or file system, disk full
        raise WeightsError(f"cannot cache the ONNX conversion of {weights} beside it ({e}) - convert it once "
                           "with lorat export --format onnx --dynamic-batch --out FILE.onnx and pass that "
                           "file") from None
    return cached


def file_sha256(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            h.update(block)
    return "sha256:" + h.hexdigest()
