"""griffe extension for the API reference (mkdocs.yml, mkdocstrings).

The package's docstrings title their doctests ``Example:`` (singular),
which griffe's Google parser reads as an admonition of Markdown text, so
``>>>`` lines and their outputs (``[(3, False), ...]``) would render as
prose and even as broken links. An ``Example:`` section that holds a
doctest is read as an ``Examples:`` section instead: rendered as code,
exactly as the doctests run (``pytest --doctest-modules``).
"""
import re

import griffe

_SECTION = re.compile(r"^(\s*)Example:\s*$(?=(?:\n\1\s+.*|\n\s*)*?\n\1\s+>>>)", re.M)


class DoctestExamples(griffe.Extension):
    def on_instance(self, *, node, obj, agent, **kwargs):
        doc = obj.docstring
        if doc is not None and ">>>" in doc.value and "Example:" in doc.value:
            doc.value = _SECTION.sub(r"\1Examples:", doc.value)
