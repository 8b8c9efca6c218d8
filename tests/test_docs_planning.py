"""The ```python blocks of docs/planning.md run, in order, in one namespace."""
import pathlib
import re

DOC = pathlib.Path(__file__).resolve().parents[1] / "docs" / "planning.md"


def test_planning_page_examples_run(capsys):
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S)
    assert len(blocks) >= 4
    namespace = {}
    for block in blocks:
        exec(compile(block, str(DOC), "exec"), namespace)   # noqa: S102 - our own docs
    out = capsys.readouterr().out.split("\n")
    assert out.count("True") == 2 and "4" in out
