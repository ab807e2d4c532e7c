"""Benchmark harnesses: ``homeward bench ...``.

Kept out of the runtime packages (and out of the production image): each
harness drives the real processes and code paths and prints figures with the
command that produced them.  This package may import any runtime package;
none of them imports it.
"""
