"""topolet: the composition root — the ``topolet`` CLI and the node agent wiring."""
