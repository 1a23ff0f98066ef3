"""``python -m callengine`` is the ``callengine`` command."""

import sys

from .cli import main

sys.exit(main())
