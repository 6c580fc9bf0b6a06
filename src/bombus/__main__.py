"""`python -m bombus ...`: the command line (see `bombus.cli`)."""

import sys

from .cli import main

sys.exit(main())
