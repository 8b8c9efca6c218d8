"""The docs are tested: no page can drift from the code.

- Every ```python block of README.md and docs/**/*.md runs (the blocks of
  one page in order, in one namespace, in a temporary folder), unless the
  line before it is ``<!-- not-runnable: <why> -->``.
- The FAQ's quoted error lines still exist in the code (every literal
  stretch of at least 10 characters between ``…`` placeholders is part of
  a string constant of the package).
- The README stays the front door (<= 200 lines), every number of its
  results table links to a file under tools/results/, and its links exist.
- The generated reference (tools/docs_reference.py) lists every flag and
  every config field.
- Every relative link of a docs page lands on a page or file of the built
  site (the fast twin of the link check of `mkdocs build --strict`, which
  itself runs in .ci/run).
"""
import ast
import importlib.util
import os
import re

import pytest

from helpers import load_tool, REPO

PAGES = sorted([REPO / "README.md"] + list((REPO / "docs").rglob("*.md")))
FENCE = re.compile(r"^```(\w*)[^\n]*\n(.*?)^```\s*$", re.M | re.S)
LINK = re.compile(r"\]\(([^)#]+)(?:#[^)]*)?\)")      # a markdown link's target
NOT_RUNNABLE = re.compile(r"<!--\s*not-runnable:\s*(.*?)\s*-->\s*$")
# Pages whose blocks train or time models (a minute or more on 2 cores).
SLOW_PAGES = {"guides/remotetrimmer.md", "guides/export.md", "guides/own_data.md",
              "guides/own_model.md", "ecosystem.md", "iterative.md", "guides/budgets.md"}


def python_blocks(path):
    """``[(line, code, reason)]``: reason is None for a block that must run."""
    text = path.read_text(encoding="utf-8")
    out = []
    for m in FENCE.finditer(text):
        if m.group(1) != "python":
            continue
        before = text[:m.start()].rstrip("\n").splitlines()
        marker = NOT_RUNNABLE.search(before[-1]) if before else None
        line = text.count("\n", 0, m.start()) + 1
        out.append((line, m.group(2), marker.group(1) if marker else None))
    return out


def _rel(path):
    return path.relative_to(REPO / "docs").as_posix() if "docs" in path.parts \
        else path.name


def _page_params():
    out = []
    for path in PAGES:
        if not any(reason is None for _, _, reason in python_blocks(path)):
            continue
        rel = _rel(path)
        marks = [pytest.mark.slow] if rel in SLOW_PAGES else []
        out.append(pytest.param(path, id=rel, marks=marks))
    return out


@pytest.mark.parametrize("path", _page_params())
def test_python_blocks_run(path, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    namespace = {"__name__": f"docs_{path.stem}"}
    for line, code, reason in python_blocks(path):
        if reason is not None:
            continue
        try:
            exec(compile(code, f"{path.name}:{line}", "exec"), namespace)
        except Exception as e:  # noqa: BLE001 - name the block that failed
            pytest.fail(f"{_rel(path)}, block at line {line}: "
                        f"{type(e).__name__}: {e}")


def test_not_runnable_blocks_say_why_and_still_parse():
    for path in PAGES:
        text = path.read_text(encoding="utf-8")
        markers = len(re.findall(r"<!--\s*not-runnable", text))
        blocks = [b for b in python_blocks(path) if b[2] is not None]
        assert markers == len(blocks), f"{path}: a not-runnable marker not " \
            "right before a ```python block"
        for line, code, reason in blocks:
            assert len(reason) >= 10, f"{path}:{line}: say why it cannot run"
            ast.parse(code)       # not run, but still Python


def _string_constants():
    """Every string constant (and f-string literal part) of the package."""
    out = []
    for path in (REPO / "remotetrimmer_tf").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                out.append(node.value)
    return out


def _literal_pieces(line):
    """The fixed stretches of a quoted error line: what is left between the
    ``…`` placeholders, quoted values, numbers and ``--flag=value`` tokens."""
    body = re.sub(r"^(error|ValueError|ParityError): ", "", line)
    parts = re.split(r"…|'[^']*'|\b\d[\d.,]*\b|--[\w.]+(?:=\S*)?|\(changed: [^)]*\)"
                     r"|\b[A-Z][A-Z0-9]*_[A-Z0-9_]+\b", body)
    return sorted((p.strip(" ;:,.()?") for p in parts), key=len, reverse=True)


def test_faq_error_lines_exist_in_the_code():
    text = (REPO / "docs" / "faq.md").read_text(encoding="utf-8")
    lines = [l for m in FENCE.finditer(text) if m.group(1) == "text"
             for l in m.group(2).splitlines() if l.strip()]
    assert len(lines) >= 15
    constants = _string_constants()
    for line in lines:
        longest = _literal_pieces(line)[0]
        assert len(longest) >= 12, line
        assert any(longest in c for c in constants), \
            f"FAQ line no longer in the code: {longest!r} ({line[:80]})"


def test_readme_is_the_front_door():
    text = (REPO / "README.md").read_text(encoding="utf-8")
    assert len(text.splitlines()) <= 200
    assert "pip install -e . && python -m remotetrimmer_tf.prune" in text
    table = text.split("## Headline results", 1)[1].split("\n## ", 1)[0]
    rows = [l for l in table.splitlines() if l.startswith("| ") and "---" not in l]
    assert len(rows) >= 5
    for row in rows[1:]:
        for cell in row.strip("|").split("|")[1:]:
            if re.search(r"\d", cell):
                assert "](tools/results/" in cell, f"a number without its source: {cell}"
    for target in LINK.findall(text):
        if not target.startswith("http"):
            assert (REPO / target).exists(), f"README links to a missing {target}"


def test_ci_runs_the_readme_test_command_and_the_docs_build():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    command = next(l for l in readme.splitlines()
                   if l.startswith('pip install -e ".[test]"'))
    ci = (REPO / ".ci" / "run").read_text(encoding="utf-8")
    assert command in ci and "mkdocs build --strict" in command


def _docs_reference():
    return load_tool("docs_reference")


def test_generated_reference_lists_every_flag_and_field():
    from remotetrimmer_tf import prune
    ref = _docs_reference()
    flags_md, config_md = ref.cli_flags_markdown(), ref.config_markdown()
    for name in ("config", "workdir", "init_model", "strategy", "stages", "resume",
                 "force", "verbose", "custom_objects"):
        assert f"`--{name}`" in flags_md, name
    cfg = prune.load_config_file(str(REPO / "configs" / "base.py")).to_dict()
    leaves = [f"{k}.{f}" if isinstance(v, dict) else k
              for k, v in cfg.items() for f in (v if isinstance(v, dict) else [None])]
    assert len(leaves) > 60
    for path in leaves:
        assert f"`--config.{path}`" in config_md, path
    page = (REPO / "docs" / "reference" / "config.md").read_text()
    assert "--config.prune.ratio" not in page    # generated, not copied by hand
    assert "--config.prune.ratio" in ref.render(page)
    assert ref.MARKER.search(page)


@pytest.mark.skipif(importlib.util.find_spec("mkdocs") is None, reason="docs extra")
def test_mkdocs_yml_lists_every_page():
    import yaml

    class Loader(yaml.SafeLoader):
        pass
    Loader.add_multi_constructor("tag:yaml.org,2002:python/", lambda *a: None)
    cfg = yaml.load((REPO / "mkdocs.yml").read_text(), Loader=Loader)

    def pages(nav):
        for item in nav:
            for value in item.values():
                yield from (pages(value) if isinstance(value, list) else [value])
    listed = set(pages(cfg["nav"]))
    on_disk = {_rel(p) for p in PAGES if p.name != "README.md"}
    assert listed == on_disk, (on_disk - listed, listed - on_disk)
    for page in listed:
        assert os.path.isfile(REPO / "docs" / page), page



def _site_target(page, target):
    """Where a relative link of a docs page lands in the built site: the
    docs/ tree, with tools/results/ mounted at ``tools/results/`` (hooks.py)."""
    rel = os.path.normpath(os.path.join(os.path.dirname(_rel(page)), target))
    if rel.startswith(".."):
        return REPO / "does-not-exist"     # leaves the site
    if rel.startswith("tools/results/"):
        return REPO / rel
    return REPO / "docs" / rel


def test_every_docs_link_resolves_in_the_site():
    """The fast twin of `mkdocs build --strict`'s link check."""
    broken = []
    for page in PAGES:
        if page.name == "README.md":
            continue
        for target in LINK.findall(page.read_text(encoding="utf-8")):
            if "://" in target or target.startswith("mailto:"):
                continue
            if not _site_target(page, target).exists():
                broken.append(f"{_rel(page)} -> {target}")
    assert not broken, broken
