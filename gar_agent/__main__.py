"""`python -m gar_agent ...` is the `gar` command."""

import sys

from gar_agent.cli.app import main

sys.exit(main())
