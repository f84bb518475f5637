"""`python -m edge_askd.distill --config CFG`: the trainer's entry point, for torchrun as for one process."""

from __future__ import annotations

import sys

from .cli import main

sys.exit(main())
