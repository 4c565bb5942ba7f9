"""``python -m cli``: the same as the ``sentiment`` console script."""

from cli.main import main

raise SystemExit(main())
