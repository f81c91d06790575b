"""The application on top of the reconfusion library: the ``reconfusion`` command line
(:mod:`.cli`), the orchestration of one reconstruction run that its commands share (:mod:`.runs`) and
the few-view quality benchmark (:mod:`.quality_benchmark`, ``reconfusion benchmark``; not to be
confused with the kernel speed benchmarks of ``python -m benchmarks``)."""
