"""``python -m tdph_workflows.cli``: the ``tdph`` command."""

from . import main

main()
