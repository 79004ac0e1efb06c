"""Fixtures for tests that run the demo lab for real."""

from demolab import demo

__all__ = ["demo"]
