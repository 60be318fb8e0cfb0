"""``python -m firstspike ...``: the ``firstspike`` command line."""

import sys

from firstspike.runtime.cli import main

sys.exit(main())
