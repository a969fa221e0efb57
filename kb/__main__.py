"""``python -m kb`` runs the command line, like the ``kb`` script."""

from kb.cli import main

main()
