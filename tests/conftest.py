"""Shared test fixtures."""
import keras
import pytest


@pytest.fixture(autouse=True)
def full_float32_matmuls():
    """Exactness checks need true float32 matmuls; GPUs default to TF32."""
    backend = keras.backend.backend()
    if backend == "jax":
        import jax
        old = jax.config.jax_default_matmul_precision
        jax.config.update("jax_default_matmul_precision", "highest")
        yield
        jax.config.update("jax_default_matmul_precision", old)
    elif backend == "tensorflow":
        import tensorflow as tf
        old = tf.config.experimental.tensor_float_32_execution_enabled()
        tf.config.experimental.enable_tensor_float_32_execution(False)
        yield
        tf.config.experimental.enable_tensor_float_32_execution(old)
    else:
        yield


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: takes more than ~20 s (deselect with -m 'not slow')")
