"""``python -m tlutils.plan``: the course's plan and estimate (``tlutils course`` runs it in a child
process, so that the notebooks' kernels find the accelerator free; ``tlutils plan`` without a child)."""

import sys

from tlutils.plan import main

sys.exit(main())
