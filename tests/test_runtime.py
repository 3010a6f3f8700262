"""lorat_tracker.runtime: the one precision table answers as the tracker, training and SAM always did."""
from __future__ import annotations

import pytest
import torch

from lorat_tracker import constants, runtime
from lorat_tracker.errors import ConfigError
from lorat_tracker.segmentation.refiner import _check_precision_device, _precision_device
from lorat_tracker.training.optim import precision_name, resolve_training_precision

F16, BF16 = torch.float16, torch.bfloat16


@pytest.mark.parametrize("user,precision,device,dtype", [
    # tracker: "auto" is fp16 autocast on CUDA, plain fp32 (None) elsewhere; nothing refused
    ("tracker", "auto", "cuda", F16), ("tracker", "auto", "cpu", None), ("tracker", "auto", "mps", None),
    ("tracker", "fp32", "cuda", None), ("tracker", "fp16", "cpu", F16), ("tracker", "bf16", "cpu", BF16),
    # training: "auto" is fp16 (+ GradScaler) on CUDA, fp32 elsewhere; fp16 only on CUDA / MPS
    ("training", "auto", "cuda", F16), ("training", "auto", "cpu", None), ("training", "auto", "mps", None),
    ("training", "fp16", "mps", F16), ("training", "bf16", "cpu", BF16),
    # SAM: no "auto"; fp16 anywhere but the CPU
    ("sam", "fp32", "cpu", None), ("sam", "bf16", "cpu", BF16), ("sam", "fp16", "cuda", F16),
    ("sam", "fp16", "mps", F16),
])
def test_precision_table(user, precision, device, dtype):
    # torch.device("cuda") is only a name here: nothing runs on it.
    assert runtime.resolve_precision(precision, torch.device(device), user) is dtype


@pytest.mark.parametrize("user,precision,device,match", [
    ("tracker", "fp64", "cpu", r"^unknown precision 'fp64': use one of auto, fp32, fp16, bf16$"),
    ("training", "fp64", "cpu", r"^unknown precision 'fp64': use one of auto, fp32, fp16, bf16 \(--precision\)$"),
    ("training", "fp16", "cpu", r"^fp16 training needs a GPU .*; on cpu use --precision bf16 or fp32$"),
    ("sam", "auto", "cpu", r"^unknown SAM precision 'auto': use one of fp32, bf16, fp16$"),
    ("sam", "fp16", "cpu", r"^SAM precision fp16 is for CUDA; .* or bf16 on the CPU$"),
])
def test_precision_refusals(user, precision, device, match):
    with pytest.raises(ConfigError, match=match):
        runtime.resolve_precision(precision, device, user)


def test_every_user_reads_the_one_table():
    policies = runtime.PRECISION_POLICIES
    assert policies["tracker"].names is constants.PRECISIONS and policies["training"].names is constants.PRECISIONS
    assert policies["sam"].names is constants.SAM_PRECISIONS
    for policy in policies.values():
        assert set(policy.names) - {"auto"} <= set(runtime.DTYPES) and "*" in policy.auto
    # training's names for the policy
    assert precision_name("auto", "cuda") == "fp16" and precision_name("auto", "cpu") == "fp32"
    assert resolve_training_precision("bf16", "cpu") is BF16
    with pytest.raises(ConfigError, match="fp16 training needs a GPU"):
        resolve_training_precision("fp16", "cpu")
    # SAM's: the name is checked before the device is resolved, the pair after
    with pytest.raises(ConfigError, match="unknown SAM precision"):
        _precision_device("int8", "tpu")
    with pytest.raises(ConfigError, match="unknown device"):
        _precision_device("fp32", "tpu")
    with pytest.raises(ConfigError, match="fp16 is for CUDA"):
        _check_precision_device("fp16", torch.device("cpu"))
    assert _precision_device("bf16", "cpu") == torch.device("cpu")


def test_compile_modes():
    for mode in runtime.COMPILE_MODES:
        runtime.check_compile_mode(mode)
    with pytest.raises(ConfigError, match="unknown compile mode 'fast'"):
        runtime.check_compile_mode("fast")
