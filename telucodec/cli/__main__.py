"""`python -m telucodec.cli ...` = the `telucodec` command."""

import sys

from telucodec.cli import main

sys.exit(main())
