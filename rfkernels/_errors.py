"""Exceptions shared by the dispatch layer and the CUDA-extension loader (a leaf module: it
imports nothing from rfkernels, so neither of them has to import the other for it)."""


class BackendUnavailableError(RuntimeError):
    """Raised when a backend was asked for explicitly but cannot run here; says why and how to fix."""
