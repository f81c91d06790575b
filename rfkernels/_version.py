"""The package version, spelled once: ``rfkernels.__version__``, ``rfkernels.info()`` and setup.py
(which reads this file with a regex, never importing torch) all take it from here."""

__version__ = "0.1.0"
