"""Evaluation: suites, reference sets and the solver ladder, Pareto placement and the boards (the
metrics are :mod:`pdebench.core.metrics`)."""
