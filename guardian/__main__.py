"""`python -m guardian` runs the CLI."""

import sys

if next((w for w in sys.argv[1:] if not w.startswith("-")), None) == "watch":
    from guardian import startsignals

    startsignals.install()  # first of all: a stop from now on is recorded, then honoured

from guardian.cli.main import main

raise SystemExit(main())
