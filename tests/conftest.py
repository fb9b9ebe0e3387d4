"""Fixtures for every test."""

from __future__ import annotations

import pytest


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
