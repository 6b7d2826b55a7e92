"""Shared test fixtures: one tiny model checkpoint per session; `gpu` tests skip without CUDA."""

from pathlib import Path

import pytest


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    import torch

    if torch.cuda.is_available():
        return
    skip_gpu = pytest.mark.skip(reason="needs CUDA")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip_gpu)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A checkpoint of the "tiny" preset (seed 0), written once for the whole session."""
    from olmorl.models.tiny import write_tiny_model

    return write_tiny_model(tmp_path_factory.mktemp("tiny_model"))
