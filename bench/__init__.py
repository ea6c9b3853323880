"""Benchmarks that print figures (a table, then one JSON line); never timed assertions.

Each bench is one command, ``python -m bench.<name> [options]`` from the project root:
``scale``, ``keys``, ``startup``, ``soak``. See ``bench/README.md``.
"""
