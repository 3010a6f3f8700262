"""Fine-tuning LoRAT (``lorat train``): the official training recipe, one module per step.

source -> Sequence records (``lorat_tracker.datasets``) -> ``PairSampler`` (sampler.py) ->
``SiameseTrainTransform`` (transform.py, labels.py) -> ``PairDataset`` (data.py) ->
``TrainingModel`` (model.py) -> ``LoRATCriterion`` (loss.py) -> ``TrainStep`` (optim.py) ->
``save_lorat_bin`` (model.py: the released format, merged by the same code as released files).

The model, loss and optimisation are importable from here (on first use: ``training.config`` alone
imports no torch); the data modules import from their own modules (they pull in image libraries a
pure model user does not need).
"""
_LAZY = {"LoRATCriterion": "loss", "aligned_box_iou": "loss", "reduce_num_pos": "loss",
         "TrainingModel": "model", "build_training_model": "model", "lorat_bin_tensors": "model",
         "save_lorat_bin": "model", "TrainStep": "optim", "build_optimizer": "optim", "build_scheduler": "optim",
         "param_groups": "optim", "resolve_training_precision": "optim"}
__all__ = list(_LAZY)


def __getattr__(name: str):
    """Imported on first use, so ``lorat_tracker.training.config`` (``lorat train --help``) needs no torch."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(__all__))
