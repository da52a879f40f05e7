"""``python -m ekd`` runs the CLI."""

from ekd.cli import main

main()
