"""``python -m tlutils.bench``: the bench without the ``tlutils`` command (and the child's entry point)."""

import sys

from tlutils.bench import main

sys.exit(main())
