"""The benchmarks, run from the repository root as modules:
`python -m benchmarks.step_time`; they share the examples' helpers
(`examples.harness`, `examples.common`) and its environment defaults.
"""

import examples  # noqa: F401 (the environment defaults, before Keras loads)
