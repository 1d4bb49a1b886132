"""The ``tether`` command line."""

from tether.cli.app import cli, main

__all__ = ["cli", "main"]
