"""Fine-tuning LoRAT (``lorat train``): the official training recipe, one module per step.

source -> Sequence records (``lorat_tracker.datasets``) -> ``PairSampler`` (sampler.py) ->
``SiameseTrainTransform`` (transform.py, labels.py) -> ``PairDataset`` (data.py) ->
``TrainingModel`` (model.py) -> ``LoRATCriterion`` (loss.py) -> ``TrainStep`` (optim.py) ->
``save_lorat_bin`` (model.py: the released format, merged by the same code as released files).

Only the model, loss and optimisation are imported here; the data modules import lazily from their
own modules (they pull in image libraries a pure model user does not need).
"""
from .loss import LoRATCriterion, aligned_box_iou, reduce_num_pos
from .model import TrainingModel, build_training_model, lorat_bin_tensors, save_lorat_bin
from .optim import TrainStep, build_optimizer, build_scheduler, param_groups, resolve_training_precision

__all__ = ["LoRATCriterion", "aligned_box_iou", "reduce_num_pos", "TrainingModel", "build_training_model",
           "lorat_bin_tensors", "save_lorat_bin", "TrainStep", "build_optimizer", "build_scheduler",
           "param_groups", "resolve_training_precision"]
