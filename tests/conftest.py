"""Shared test fixtures.

``shared_dir`` points at the ``shared/`` folder beside the project root (real GTSDB sample images and
BelgiumTS annotation files). A user's fresh clone has no such folder: tests that need it skip cleanly.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


def find_shared_dir() -> Path | None:
    """The shared material folder, from ``$TLUTILS_SHARED`` or ``../shared`` beside the repo."""
    candidates = [os.environ.get("TLUTILS_SHARED"), REPO_ROOT.parent / "shared"]
    for candidate in candidates:
        if candidate and (Path(candidate) / "data").is_dir():
            return Path(candidate)
    return None


@pytest.fixture
def shared_dir() -> Path:
    path = find_shared_dir()
    if path is None:
        pytest.skip("../shared is not present (only the project's own CI and developers have it)")
    return path


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)
