"""LoRAT in the GOT-10k toolkit (``got10k`` 0.1.3): the only place of this project that imports got10k.

::

    from lorat_tracker.integrations.got10k import LoRATGot10kTracker, ExperimentLaSOT
    from got10k.experiments import ExperimentGOT10k

    tracker = LoRATGot10kTracker("B-224", weights="base.bin", backbone="dinov2_vitb14_pretrain.pth")
    experiment = ExperimentLaSOT("data/LaSOT", result_dir="results", report_dir="reports")
    experiment.run(tracker)
    performance = experiment.report([tracker.name])

Importing this package applies the compatibility fixes of ``compat.apply()`` (numpy 2 aliases,
``ExperimentVOT._calc_iou``, no downloads, atomic result files, UAV123 root check) to the installed
got10k, from outside and idempotently. It adds the experiments 0.1.3 lacks: ``ExperimentLaSOT``,
``ExperimentLaSOTExtension``, ``ExperimentTNL2K`` and ``ExperimentTrackingNet``.
"""
from . import compat

compat.apply()

from .benchmarks import BENCHMARKS, Benchmark  # noqa: E402
from .experiments import (ExperimentLaSOT, ExperimentLaSOTExtension, ExperimentOPE, ExperimentTNL2K,  # noqa: E402
                          ExperimentTrackingNet, normalized_center_error)
from .datasets import read_image  # noqa: E402
from .tracker import LoRATGot10kTracker  # noqa: E402

apply_compat = compat.apply

__all__ = ["LoRATGot10kTracker", "ExperimentLaSOT", "ExperimentLaSOTExtension", "ExperimentTNL2K",
           "ExperimentTrackingNet", "ExperimentOPE", "Benchmark", "BENCHMARKS", "apply_compat",
           "normalized_center_error", "read_image"]
