"""The shipped model, loaded once for the recording tests."""

from __future__ import annotations

import pytest

from edge.models import default_model_path
from edge.runner import ModelRunner


@pytest.fixture(scope="package")
def runner() -> ModelRunner:
    return ModelRunner(default_model_path(), threads=2)
