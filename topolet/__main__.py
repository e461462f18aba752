"""``python -m topolet``: the same as the ``topolet`` console script."""

from topolet.cli import main

raise SystemExit(main())
