"""The tiny teacher of ``tiny_teacher.py``, built once per test module."""

import pytest
import torch

from shopdistill.components.models import build_model
from tests.components.tiny_teacher import TEACHER


@pytest.fixture(scope="module")
def teacher(tiny_data):
    torch.manual_seed(0)
    return build_model(TEACHER, tiny_data.n_items).eval()
