"""evalsuite: accuracy and efficiency evaluation for omni-modal models.

The harness: core types (``types``), the generic registry (``registry``), the runner, the results
files (``results``), statistics, backends, the CLI. Importing the package installs the lazy catalog
of task and model names, so ``TASKS.get("docqa")`` works without importing every task up front.
"""

__version__ = "0.1.0"

from evalsuite import catalog as _catalog  # noqa: E402,F401  (registers lazy names)
