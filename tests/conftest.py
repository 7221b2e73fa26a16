"""Shared test fixtures.

``shared_dir`` points at the ``shared/`` folder beside the project root (real GTSDB sample images and
BelgiumTS annotation files). A user's fresh clone has no such folder: tests that need it skip cleanly.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tlutils.paths import shared_data_dir

REPO_ROOT = Path(__file__).resolve().parents[1]


def find_shared_dir() -> Path | None:
    """The shared material folder ``../shared`` beside the repo (``tlutils.paths.shared_data_dir``'s parent)."""
    data = shared_data_dir(REPO_ROOT)
    return data.parent if data is not None else None


@pytest.fixture
def shared_dir() -> Path:
    path = find_shared_dir()
    if path is None:
        pytest.skip("../shared is not present (only the project's own CI and developers have it)")
    return path


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)
