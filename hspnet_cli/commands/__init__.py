"""Typer command groups: each parses options and calls an importable function."""
