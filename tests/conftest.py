"""Shared test fixtures.

``shared_dir`` points at the ``shared/`` folder beside the project root (real GTSDB sample images and
BelgiumTS annotation files). A user's fresh clone has no such folder: tests that need it skip cleanly.

On JAX the session keeps one XLA compilation cache, which the processes its tests start share: each
run of the experiment runner builds a new model, so ``fit`` and the evaluation compiled their steps
anew (about 6 s of a repeated ci target run's 9; 3 s with the cache). A cached executable is the one
compiled before, so the numbers stay the same bit for bit. ``make test-jax`` sets
``JAX_COMPILATION_CACHE_DIR`` itself, to share the cache with the JAX notebook it runs next.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest

from tlutils.paths import shared_data_dir

REPO_ROOT = Path(__file__).resolve().parents[1]

# The tests check what "auto" resolves to on (mocked) machines; a TLUTILS_PRECISION the caller set for
# a timing (tlutils.profiles.PRECISION_VARIABLE) must not decide it for them.
os.environ.pop("TLUTILS_PRECISION", None)

_XLA_CACHE: str | None = None
if os.environ.get("KERAS_BACKEND") == "jax" and "JAX_COMPILATION_CACHE_DIR" not in os.environ:
    _XLA_CACHE = os.environ["JAX_COMPILATION_CACHE_DIR"] = tempfile.mkdtemp(prefix="tlutils-tests-xla-")
    os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.2")  # the steps; not single ops


def pytest_unconfigure(config: pytest.Config) -> None:
    if _XLA_CACHE is not None:
        shutil.rmtree(_XLA_CACHE, ignore_errors=True)


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
