"""`python -m tikos_outbox` is the same as the `tikos-outbox` command."""

import sys

from tikos_outbox.cli import main

sys.exit(main())
