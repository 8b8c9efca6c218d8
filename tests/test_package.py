"""Package hygiene: one version everywhere, the licence, changelog and citation."""
import pathlib
import re
import runpy

import pytest

import remotetrimmer_tf

REPO = pathlib.Path(__file__).resolve().parents[1]


def _setup_kwargs(monkeypatch):
    """The keyword arguments setup.py passes to setuptools.setup (not run)."""
    import setuptools
    seen = {}
    monkeypatch.setattr(setuptools, "setup", lambda **kw: seen.update(kw))
    runpy.run_path(str(REPO / "setup.py"))
    return seen


def test_one_version_for_setup_package_citation_and_changelog(monkeypatch):
    kwargs = _setup_kwargs(monkeypatch)
    version = remotetrimmer_tf.__version__
    assert re.fullmatch(r"\d+\.\d+\.\d+", version)
    assert kwargs["version"] == version
    cff = (REPO / "CITATION.cff").read_text()
    assert f'version: "{version}"' in cff
    assert re.search(rf"^## {re.escape(version)}\b", (REPO / "CHANGELOG.md").read_text(), re.M)


def test_extras_declare_what_optional_features_need(monkeypatch):
    extras = _setup_kwargs(monkeypatch)["extras_require"]
    assert {"onnxruntime", "tf2onnx", "onnx"} <= set(extras["onnx"])
    assert extras["geo"] == ["tifffile", "imagecodecs"]   # imagecodecs: LZW tiles
    assert any(d.startswith("mkdocstrings") for d in extras["docs"])
    names = {re.split(r"[<>=\[]", d)[0] for d in extras["test"]}
    for extra in ("onnx", "geo", "rasterio", "docs"):
        assert {re.split(r"[<>=\[]", d)[0] for d in extras[extra]} <= names, extra
    assert {"pytest", "jax", "keras-hub", "matplotlib"} <= names


def test_licence_and_citation():
    text = (REPO / "LICENSE").read_text()
    assert "Apache License" in text and "Version 2.0, January 2004" in text
    assert "END OF TERMS AND CONDITIONS" in text
    yaml = pytest.importorskip("yaml")
    cff = yaml.safe_load((REPO / "CITATION.cff").read_text())
    assert cff["cff-version"] == "1.2.0" and cff["license"] == "Apache-2.0"
    paper = cff["preferred-citation"]
    assert paper["title"].startswith("RemoteTrimmer")
    assert paper["year"] == 2025 and "2412.12603" in paper["url"]
    assert paper["authors"][0]["family-names"] == "Zou"
