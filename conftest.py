"""Doctest namespace: ``keras`` and ``np`` are available in every ``>>>``
example of the package (``pytest --doctest-modules remotetrimmer_tf``), as
in Keras' own docstrings; every other name an example uses it imports."""
import pytest


@pytest.fixture(autouse=True)
def _doctest_names(doctest_namespace):
    import keras
    import numpy as np
    doctest_namespace["keras"] = keras
    doctest_namespace["np"] = np
