"""``python -m pausegraph``: the ``pausegraph`` command (``pausegraph.cli``)."""

import sys

from pausegraph.cli import main

sys.exit(main())
