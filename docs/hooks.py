"""mkdocs hooks (``hooks:`` in mkdocs.yml): what the site builds from the code.

- ``on_page_markdown``: every ``<!-- generate: NAME -->`` marker of a page
  is replaced by the table `tools/docs_reference.py` generates from the
  code (the CLI flags, every config field, the config files), so the
  reference pages can never drift from the code.
- ``on_files``: the committed results under ``tools/results/`` (markdown
  tables and PNG plots, not the per-job logs) become part of the site at
  ``tools/results/...``, so every number in the docs links to the file that
  produced it, and the pictures are the committed ones.
"""
import importlib.util
import pathlib

from mkdocs.structure.files import File

ROOT = pathlib.Path(__file__).resolve().parents[1]
RESULTS = ROOT / "tools" / "results"

_spec = importlib.util.spec_from_file_location(
    "docs_reference", ROOT / "tools" / "docs_reference.py")
docs_reference = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(docs_reference)


def results_files():
    """The results files the site carries (no ``*_jobs`` log folders)."""
    out = []
    for path in sorted(RESULTS.rglob("*")):
        rel = path.relative_to(RESULTS)
        if path.is_file() and path.suffix in (".md", ".png") and not any(
                part.endswith("_jobs") for part in rel.parts):
            out.append(path)
    return out


def on_files(files, config):
    for path in results_files():
        src_uri = path.relative_to(ROOT).as_posix()
        if files.get_file_from_path(src_uri) is None:
            files.append(File.generated(config, src_uri, abs_src_path=str(path)))
    return files


def on_page_markdown(markdown, page, config, files):
    return docs_reference.render(markdown)
