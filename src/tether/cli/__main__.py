"""``python -m tether.cli`` runs the CLI (as ``python -m tether`` does)."""

from tether.cli import main

main()
