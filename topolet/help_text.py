"""Plain text for ``--help`` from a module's docstring.

Docstrings are written for readers of the code (double-backquoted literals, ``:func:``
roles, ``::`` before literal blocks); ``--help`` is read in a terminal, so
:func:`plain` drops that markup and keeps the words.
"""

from __future__ import annotations

import re

__all__ = ["plain"]

_ROLE = re.compile(r":(?:func|mod|class|meth|data|attr|exc|obj|ref|doc):`~?([^`]+)`")
_LITERAL = re.compile(r"``([^`]+)``")


def plain(doc: str | None) -> str:
    """*doc* without reStructuredText markup: roles and double backquotes become the bare
    text, a ``::`` ending a line becomes ``:``."""
    text = _ROLE.sub(r"\1", doc or "")
    text = _LITERAL.sub(r"\1", text)
    return re.sub(r"::$", ":", text, flags=re.MULTILINE).strip()
