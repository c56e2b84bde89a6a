"""`python -m guardian` runs the CLI."""

from guardian.cli import main

raise SystemExit(main())
