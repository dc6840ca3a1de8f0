"""``python -m voxindex.cli``: the ``voxindex`` command."""

import sys

from voxindex.cli.main import main

sys.exit(main())
