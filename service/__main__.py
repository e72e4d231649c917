"""`python -m service` runs the same CLI as the `pos` console script."""

from service.cli import main

raise SystemExit(main())
