import os
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
