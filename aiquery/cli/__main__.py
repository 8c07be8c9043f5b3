"""`python -m aiquery.cli ...`, the same as the `aiquery` command."""

import sys

from aiquery.cli.main import main

sys.exit(main())
