"""The package version: the one place it is written.

``setup.py`` reads this file as text (it never imports the package) and
``remotetrimmer_tf.__version__`` imports it, so the two cannot drift.

Example:
  >>> from remotetrimmer_tf.version import __version__
  >>> __version__.count(".")
  2
"""
__version__ = "0.2.0"
