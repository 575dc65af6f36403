"""``python -m chatops``."""

import sys

from chatops.cli import main

sys.exit(main())
