"""``python -m kb`` runs the command line, like the ``kb`` script."""

from kb.interfaces.cli import main

main(prog_name="kb")
