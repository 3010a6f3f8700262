"""Shared fixtures: the bundled test-size models (official file formats, random weights)."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

TESTS_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(TESTS_DIR))  # so tests can `import synthetic`

from lorat_tracker.selftest import DATA_DIR  # noqa: E402

FIXTURES = TESTS_DIR / "fixtures"


class TinyModel:
    """A test-size LoRAT: variant name plus its weight files, usable wherever real weights go."""

    def __init__(self, model: str, geometry: str = "224"):
        self.variant = f"{model}-{geometry}"
        self.weights = DATA_DIR / model / "lorat.bin"
        self.backbone = DATA_DIR / model / "backbone.pth"

    def tracker(self, **kwargs):
        from lorat_tracker import LoRATTracker

        kwargs.setdefault("device", "cpu")
        return LoRATTracker.from_pretrained(self.variant, weights=self.weights, backbone=self.backbone, **kwargs)

    def cli_args(self):
        return ["--variant", self.variant, "--weights", str(self.weights), "--backbone", str(self.backbone)]


@pytest.fixture(scope="session")
def tiny_model() -> TinyModel:
    return TinyModel("tiny-mlp", "224")
