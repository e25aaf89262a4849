"""Fake upstream providers for the tests and the benchmark."""
