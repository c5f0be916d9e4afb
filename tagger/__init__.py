"""tagger: sequence tagging and classification with Numba kernels for the CPU and CUDA."""

from ._version import __version__

__all__ = ["__version__"]
