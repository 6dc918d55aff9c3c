"""Channel simulators for tests: real HTTP servers on 127.0.0.1 that behave like a vendor's API.

Each simulator counts what it *issued* so a test can assert the hub's core promise, "never issue
twice" (DOMAIN.md section 6), and injects the failures that make issuing ambiguous (timeouts
after the invoice exists, connection resets, unreadable answers). Standard library only: a
simulator must run wherever the tests run, with no extra dependencies.

- :mod:`sandbox.xunlian` - Xunlian ``serverIssue`` (seed 001).
- :mod:`sandbox.faults` - fault switches shared by the simulators.
"""
