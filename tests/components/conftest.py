import pytest

from components.config import DataConfig, PreprocessConfig, SyntheticSource
from components.data.dataset import load_dataset, prepare_dataset
from components.sequences import SequenceData


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory):
    """A small synthetic shop, prepared once per test session (no validation, for speed)."""
    root = tmp_path_factory.mktemp("tiny")
    cfg = DataConfig(
        name="tiny",
        source=SyntheticSource(seed=5, n_users=300, n_items=80),
        preprocess=PreprocessConfig(dedupe="consecutive"),
    )
    result = prepare_dataset(cfg, root, validate=False)
    return load_dataset(result.handle.uri)


@pytest.fixture(scope="session")
def tiny_data(tiny_dataset) -> SequenceData:
    return SequenceData.from_dataset(tiny_dataset)
