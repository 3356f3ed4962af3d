"""`python -m exporter` runs the daemon."""

from exporter.cli import main

raise SystemExit(main())
