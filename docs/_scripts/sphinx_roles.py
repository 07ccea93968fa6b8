"""A griffe extension for the API reference: the docstrings' Sphinx roles read as code.

The docstrings name other objects the way ``help()`` and IDEs show them, as
``:class:`OrderStatus```; the site shows them as `OrderStatus`, not as a raw role.
Loaded by mkdocs.yml (mkdocstrings' ``extensions`` option).
"""

from __future__ import annotations

import re
from typing import Any

import griffe

_ROLE = re.compile(r":(?:class|func|meth|attr|mod|data|exc|obj):`~?([^`]+)`")


class SphinxRoles(griffe.Extension):
    """Turn ``:role:`name``` into ```name``` in every docstring."""

    def on_object(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        if obj.docstring is not None:
            obj.docstring.value = _ROLE.sub(r"`\1`", obj.docstring.value)
