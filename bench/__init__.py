"""Benchmarks of tikos-outbox. Run from the repository root: `python -m bench [--quick] [--json]`.

Every figure comes with its baseline measured in the same run on the same files,
so that the ratio holds on a noisy machine. Benchmarks are not tests: nothing
here asserts a time.
"""
