"""Fixtures shared by the model tests: a tiny LFADS and a batch that fits it."""

from __future__ import annotations

import pytest
import torch

from autolfads.data.batch import SessionBatch
from autolfads.model import LFADS
from tests.model.builders import make_batch, model_config


@pytest.fixture
def tiny_config() -> dict:
    return model_config()


@pytest.fixture
def tiny_lfads(tiny_config: dict) -> LFADS:
    torch.manual_seed(0)
    return LFADS(**tiny_config)


@pytest.fixture
def tiny_batch(tiny_config: dict) -> SessionBatch:
    return make_batch(tiny_config)
