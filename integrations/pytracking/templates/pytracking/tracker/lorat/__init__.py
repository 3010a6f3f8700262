from .lorat import LoRAT


def get_tracker_class():
    return LoRAT
