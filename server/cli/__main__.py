"""``python -m server.cli``: the ``privca`` console script."""

from __future__ import annotations

import sys

from server.cli import main

sys.exit(main())
