"""pdebench: classical PDE solvers that stream data into neural-operator training, and leaderboard
boards that score every model against classical solvers (a model's ``board``, :mod:`pdebench.models.registry`).

Layers, bottom to top (imports point down only; docs/ARCHITECTURE.md, checked by tests/test_layers.py):
``core`` (records, metrics, graphs), ``equations``, ``problems`` (what to solve), ``solvers`` (how),
``io`` (dataset files), ``data`` (generation, streams, data modules), ``models``, ``training``,
``evaluation``, ``cli``.
"""

__version__ = "0.1.0"
