"""The ```python blocks of docs/ecosystem.md and docs/multispectral.md run."""
import pathlib
import re

import pytest

DOCS = pathlib.Path(__file__).resolve().parents[1] / "docs"


def _blocks(name):
    text = (DOCS / name).read_text()
    return re.findall(r"```python\n(.*?)```", text, flags=re.S)


@pytest.mark.parametrize("name,needs", [("multispectral.md", "tifffile"), pytest.param(
    "ecosystem.md", "keras_hub", marks=pytest.mark.slow)])
def test_doc_blocks_run(name, needs):
    pytest.importorskip(needs)
    blocks = _blocks(name)
    assert blocks
    for code in blocks:
        exec(compile(code, f"{name}", "exec"), {"__name__": "__doc__"})
