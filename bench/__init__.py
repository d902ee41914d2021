"""Load and scaling benchmark of the Todo API against a hand-written baseline (SPEC §8).

Run it with `make bench` or `python -m bench --help`; see bench/README.md.
"""
