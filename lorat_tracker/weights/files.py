"""Reading weight files: safetensors or ``torch.save`` by content, every tensor checked where it enters.

Files are read with safetensors or ``torch.load(weights_only=True)`` only, so no code in a file runs.
A Hugging Face folder (``config.json`` next to ``model.safetensors`` or ``pytorch_model.bin``, as
``save_pretrained`` or a Hub download leaves it) is read through the weights file inside it.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import pickle
import struct
import warnings
from typing import Dict

import torch
from safetensors import safe_open

from ..errors import WeightsError, WeightsNotFoundError

StateDict = Dict[str, torch.Tensor]

# A safetensors header is JSON describing the tensors: even ViT-g's is far below this.
_MAX_SAFETENSORS_HEADER = 100 * 2 ** 20
# The weights file names of a Hugging Face folder, in transformers' own order of preference.
HF_WEIGHTS_NAMES = ("model.safetensors", "pytorch_model.bin")
HF_CONFIG_NAME = "config.json"


@dataclasses.dataclass
class WeightsFile:
    path: str
    tensors: StateDict
    metadata: Dict[str, str]
    container: str  # "safetensors" or "torch"


def read_weights_file(path) -> WeightsFile:
    """Read a safetensors or torch.save file (by content, not by name: ``.bin`` may be either).

    Every tensor is checked where it enters (``check_tensors``): floating point and finite, so a
    damaged file is refused with the tensor's name instead of tracking NaN boxes. A Hugging Face
    folder is read through its weights file (``WeightsFile.path`` names that file).
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise WeightsNotFoundError(f"weights file {path} does not exist - check the path")
    if os.path.isdir(path):
        path = _weights_file_in_folder(path)
    if not os.path.isfile(path):  # a FIFO or a device would block or never end
        raise WeightsError(f"{path} is not a regular file (a pipe, socket or device) - pass the weights file")
    with open(path, "rb") as f:
        head = f.read(1024)
        size = os.fstat(f.fileno()).st_size
    if len(head) < 8:
        raise WeightsError(f"weights file {path} is empty or truncated ({size} bytes)")
    # safetensors first: its first byte is the low byte of the header length, which is 0x80 for one valid
    # file in 32 (lengths are multiples of 8), the same first byte as a legacy pickle.
    header_len = struct.unpack("<Q", head[:8])[0]
    safetensors = head[8:9] == b"{" and 2 <= header_len <= _MAX_SAFETENSORS_HEADER
    if not safetensors and (head[:2] == b"PK" or head[:1] == b"\x80"):  # zip (torch.save) or legacy pickle
        wf = WeightsFile(path, _unwrap(_torch_load(path, head), path), {}, "torch")
    else:
        if not safetensors:
            raise WeightsError(_not_weights(path, head))
        if 8 + header_len > size:
            raise WeightsError(f"{path} is a truncated safetensors file ({size} bytes, the header alone needs "
                               f"{8 + header_len}) - download it again")
        try:
            tensors, metadata = {}, {}
            with safe_open(path, framework="pt", device="cpu") as f:
                metadata = dict(f.metadata() or {})
                for k in f.keys():
                    tensors[k] = f.get_tensor(k)
        except Exception as e:  # noqa: BLE001
            raise WeightsError(f"cannot read {path} as safetensors ({e}); the file is corrupt or truncated "
                               "- download it again") from None
        wf = WeightsFile(path, tensors, metadata, "safetensors")
    check_tensors(wf.tensors, path)
    return wf


def _weights_file_in_folder(folder: str) -> str:
    """The weights file of a Hugging Face folder; any other folder is refused (which file is meant?)."""
    names = set(os.listdir(folder))
    if HF_CONFIG_NAME in names:
        for name in HF_WEIGHTS_NAMES:
            if name in names:
                return os.path.join(folder, name)
        if any(n.endswith(".index.json") for n in names):
            raise WeightsError(f"{folder} holds a sharded Hugging Face checkpoint (*.index.json), which is not "
                               "supported - save it as one file (save_pretrained with a shard size above the model's size)")
    raise WeightsError(f"{folder} is a directory - pass the weights file inside it (e.g. model.safetensors or "
                       "the released .bin), or a Hugging Face DINOv2 folder (config.json + model.safetensors)")


def read_hf_config(weights_path: str) -> dict:
    """The ``config.json`` next to a Hugging Face weights file (it says what the tensors are)."""
    folder = os.path.dirname(os.path.abspath(weights_path))
    path = os.path.join(folder, HF_CONFIG_NAME)
    if not os.path.isfile(path):
        raise WeightsError(f"{weights_path} holds Hugging Face transformers DINOv2 weights but there is no "
                           f"{HF_CONFIG_NAME} next to it - pass the folder that save_pretrained or the Hub "
                           f"download wrote ({HF_CONFIG_NAME} + {HF_WEIGHTS_NAMES[0]}), complete")
    try:
        with open(path, encoding="utf-8") as f:
            config = json.load(f)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise WeightsError(f"{path} is not valid JSON ({type(e).__name__}) - download the model folder again") from None
    if not isinstance(config, dict):
        raise WeightsError(f"{path} is not a transformers configuration (a JSON object) - download it again")
    return config


def _not_weights(path: str, head: bytes) -> str:
    """The message for a file that is neither a safetensors nor a torch.save file."""
    try:
        head.decode("utf-8")
        is_text = b"\x00" not in head
    except UnicodeDecodeError as e:
        # A multi-byte character cut at the end of the sample is still text.
        is_text = e.start >= len(head) - 3 and b"\x00" not in head
    what = "a text file" if is_text else "neither a safetensors nor a torch.save file"
    return (f"{path} is not a weights file ({what}) - pass the LoRAT weights (the released .bin, a "
            "model.safetensors or a merged export from lorat export) or a DINOv2 .pth")


def _torch_load(path: str, head: bytes):
    """``torch.load(weights_only=True)``, with torch's own error text replaced by ours.

    torch's message for a refused pickle advises re-running with ``weights_only=False``, i.e.
    executing whatever code the file holds: never relay that to a user.
    """
    try:
        with warnings.catch_warnings():
            # e.g. "Detected pickle protocol 4 ... weights_only Unpickler": about torch, not for our users
            warnings.simplefilter("ignore")
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any failure here means an unreadable file
        if isinstance(e, pickle.UnpicklingError) and "weights only load failed" in str(e).lower():
            reason = "a pickle holding Python objects besides tensors (or a corrupt one)"
        elif head[:2] == b"PK":
            reason = "a corrupt or truncated zip archive, or a zip that is not a torch checkpoint"
        else:
            reason = "a corrupt or truncated pickle"
        raise WeightsError(f"cannot read {path} as a torch checkpoint: it is {reason}. Only plain tensors are "
                           "ever loaded from a .pth/.bin file (no code in it runs) - download it again, or "
                           "save the state dict alone (a dict of tensors) or as safetensors") from None


WEIGHT_DTYPES = (torch.float32, torch.float16, torch.bfloat16, torch.float64)


def check_tensors(tensors: StateDict, source: str) -> None:
    """Refuse non-float and non-finite tensors, naming the tensor and the file.

    ``lora_alpha`` / ``use_rslora`` are the released files' 0-d meta tensors: a positive finite number
    and a boolean. Every other tensor of a LoRAT or DINOv2 file is a floating-point weight.
    """
    for name, t in tensors.items():
        if t.layout != torch.strided or t.device.type == "meta":
            if t.device.type == "meta":
                raise WeightsError(f"{source}: tensor {name} is a meta tensor, which holds no values - save the "
                                   "state dict of a model whose weights were loaded or trained")
            raise WeightsError(f"{source}: tensor {name} is a {str(t.layout).replace('torch.', '')} tensor; "
                               "weights are dense - save the dense state dict (tensor.to_dense())")
        if name == "use_rslora":
            if t.numel() != 1 or t.is_floating_point() or t.is_complex() or t.item() not in (0, 1):
                raise WeightsError(f"{source}: tensor use_rslora must be one boolean, got {_describe(t)} - "
                                   "the file is damaged; download it again")
            continue
        if name == "lora_alpha":
            value = float(t.item()) if t.numel() == 1 and t.dtype != torch.bool and not t.is_complex() else None
            if value is None or not math.isfinite(value) or value <= 0:
                raise WeightsError(f"{source}: tensor lora_alpha must be one positive finite number, got "
                                   f"{_describe(t)} - the file is damaged; download it again")
            continue
        if not t.is_floating_point():
            raise WeightsError(f"{source}: tensor {name} has dtype {str(t.dtype).replace('torch.', '')}, but the "
                               "weights of a LoRAT/DINOv2 model are floating point - the file is damaged or is "
                               "not a model checkpoint")
        if t.dtype not in WEIGHT_DTYPES:  # float8 and the like: no torch.isfinite, and no LoRAT file holds them
            raise WeightsError(f"{source}: tensor {name} has dtype {str(t.dtype).replace('torch.', '')}, which "
                               "LoRAT weights never have (float32, float16, bfloat16 or float64) - pass the "
                               "original checkpoint, not a quantised copy")
        finite = torch.isfinite(t)
        if not bool(finite.all()):
            nan = int(torch.isnan(t).sum())
            inf = int((~finite).sum()) - nan
            what = " and ".join(p for p in (f"{nan} NaN" if nan else "", f"{inf} infinite" if inf else "") if p)
            raise WeightsError(f"{source}: tensor {name} holds {what} value(s) (of {t.numel()}) - the file is "
                               "damaged or comes from a diverged training run; use another copy")


def _describe(t: torch.Tensor) -> str:
    dtype = str(t.dtype).replace("torch.", "")
    if t.numel() == 1:
        return f"{t.item()!r} ({dtype})"
    return f"a {dtype} tensor of shape {tuple(t.shape)}"


def _unwrap(obj, path: str) -> StateDict:
    for key in ("model", "state_dict", "module"):
        if isinstance(obj, dict) and key in obj and isinstance(obj[key], dict):
            obj = obj[key]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise WeightsError(f"{path} does not hold a state dict of tensors")
    bad = next((k for k in obj if not isinstance(k, str)), None)
    if bad is not None:
        raise WeightsError(f"{path} is not a state dict: it has a key of type {type(bad).__name__} ({bad!r:.40}), "
                           "and every key of a state dict is a tensor name - save model.state_dict()")
    return {k[len("module."):] if k.startswith("module.") else k: v for k, v in obj.items()}
