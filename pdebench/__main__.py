"""``python -m pdebench`` runs the console script."""

import sys

from pdebench.cli import main

sys.exit(main())
