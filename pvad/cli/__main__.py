"""`python -m pvad.cli` (used by the benchmarks to start servers and cameras as processes)."""

import sys

from pvad.cli import main

sys.exit(main())
