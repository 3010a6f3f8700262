from lorat_tracker.integrations.pytracking.shim import check_parameters_of_caller

from .lorat import LoRAT


def get_tracker_class():
    check_parameters_of_caller()  # a wrong LORAT_* setting ends the run here, before any sequence
    return LoRAT
