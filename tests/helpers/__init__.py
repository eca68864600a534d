"""Reusable test helpers that start real processes (importable as `helpers` via tests/conftest.py)."""
