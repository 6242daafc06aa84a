"""``python -m server.cli ...``: the ``crashd`` command without the console script."""

import sys

from server.cli.commands import main

sys.exit(main())
