"""pdebench: classical PDE solvers that stream data into neural-operator training.

The package is organised as DESIGN.md describes: ``problems`` (what to solve), ``solvers`` (how),
``data`` (the record that flows and its files), and later ``models``, ``training``, ``evaluation``.
"""

__version__ = "0.1.0"
