import os
import shutil
import sys

# The NumPy references live beside the tests.
sys.path.insert(0, os.path.dirname(__file__))

import pytest  # noqa: E402
from threadpoolctl import threadpool_limits  # noqa: E402


@pytest.fixture(autouse=True, scope="session")
def _single_threaded_blas():
    """Tests call kernels directly, outside the engine's thread_limit: keep BLAS on one thread
    there too, so that its threads do not spin against Numba's (see tagger.nn.training)."""
    with threadpool_limits(limits=1, user_api="blas"):
        yield


@pytest.fixture
def tagger_command() -> str:
    """The installed ``tagger`` console script.

    Where it is not on PATH, the test is skipped on a development machine but fails in CI
    (``CI=true``), which installs the package as the README says: there a missing command is
    the failure the test exists to catch, not a reason to skip it.
    """
    path = shutil.which("tagger")
    if path is None:
        message = "the tagger command is not on PATH (the package is not installed)"
        if os.environ.get("CI", "").strip().lower() in ("1", "true", "yes"):
            pytest.fail(f"{message}; CI must test the installed command", pytrace=False)
        pytest.skip(message)
    return path
