"""remotetrimmer_tf: structural channel pruning (RemoteTrimmer) for Keras 3."""
import pathlib
import re

from setuptools import find_packages, setup

HERE = pathlib.Path(__file__).parent


def _version():
    """The version written once in remotetrimmer_tf/version.py, read as text
    (importing the package here would need its dependencies installed)."""
    text = (HERE / "remotetrimmer_tf" / "version.py").read_text(encoding="utf-8")
    return re.search(r'^__version__ = "([^"]+)"', text, re.M).group(1)


# Optional features; `test` is everything the test suite and the docs build use.
EXTRAS = {
    "onnx": ["onnx", "onnxruntime", "tf2onnx"],   # ONNX export
    "openvino": ["openvino"],                      # OpenVINO export
    "geo": ["tifffile", "imagecodecs"],            # multi-band GeoTIFF tiles (LZW, ...)
    "rasterio": ["rasterio"],                      # the fallback GeoTIFF reader (GDAL)
    "docs": ["mkdocs", "mkdocs-material", "mkdocstrings[python]"],
    "jax": ["jax"],
    "plot": ["matplotlib"],
    "qat": ["tensorflow-model-optimization", "tf_keras"],   # own virtualenv
}
EXTRAS["test"] = sorted(
    {"pytest", "pytest-xdist", "jax[cpu]", "matplotlib", "keras-hub>=0.32"}
    | set(EXTRAS["onnx"]) | set(EXTRAS["openvino"]) | set(EXTRAS["geo"])
    | set(EXTRAS["rasterio"]) | set(EXTRAS["docs"]))

setup(
    name="remotetrimmer_tf",
    version=_version(),
    description=(
        "RemoteTrimmer for Keras 3: channel-attention structural pruning and "
        "the Adaptive Mining Loss for remote-sensing scene classifiers"
    ),
    long_description=(HERE / "README.md").read_text(encoding="utf-8")
    if (HERE / "README.md").exists() else "",
    long_description_content_type="text/markdown",
    license="Apache-2.0",   # LICENSE; the demo images keep EuroSAT's MIT licence
    license_files=["LICENSE"],
    # configs/ ships inside the package as remotetrimmer_tf.configs so that the
    # CLI finds its default (the demo) in a non-editable install too.
    packages=find_packages(include=["remotetrimmer_tf", "remotetrimmer_tf.*"])
    + ["remotetrimmer_tf.configs"],
    package_dir={"remotetrimmer_tf.configs": "configs"},
    package_data={"remotetrimmer_tf": ["assets/*", "assets/**/*"],
                  "remotetrimmer_tf.configs": ["*.py"]},
    include_package_data=True,
    python_requires=">=3.10",
    install_requires=[
        "keras>=3.6",
        "numpy",
        "absl-py",
        "ml-collections",
        "tensorflow>=2.16",
        "tensorflow-datasets",
        "importlib_resources",
        "pillow",
        "ai-edge-litert",
        "matplotlib",    # the width plot of every run (report.py)
        "tensorboard",   # TensorBoard logs of training (config train.tensorboard)
    ],
    extras_require=EXTRAS,
    entry_points={
        "console_scripts": ["remotetrimmer=remotetrimmer_tf.prune:run"],
    },
)
