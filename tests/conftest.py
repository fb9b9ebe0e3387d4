"""Fixtures for every test."""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, settings
from s3server import s3_env, s3_server  # noqa: F401  (fixtures for every test module)

# Property-based and fuzz tests (marked `fuzz`): a short run in `make test`, a long one in
# `make fuzz` (HYPOTHESIS_PROFILE=fuzz). No deadline: decoding and model loading take a variable
# few hundred milliseconds on a loaded 2-core machine, and a slow example is not a failure.
settings.register_profile(
    "ci", max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile(
    "fuzz", max_examples=2000, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


@pytest.fixture(autouse=True, scope="session")
def private_cache_dir(tmp_path_factory):
    """Point imgrec's caches (the embedding store) at a temporary folder for the whole session.

    No test may write to the real ~/.cache/imgrec. Session scope, so that module-scoped fixtures
    that train (they run before any function-scoped fixture) and the CLI subprocesses, which
    inherit the environment, see it too.
    """
    folder = tmp_path_factory.mktemp("imgrec-cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("IMGREC_CACHE_DIR", str(folder))
        yield folder
