"""python -m host.cli: the same as pumpctl."""

import sys

from host.cli import main

sys.exit(main())
