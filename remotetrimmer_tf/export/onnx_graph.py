"""ONNX conversion where Keras' own ``model.export(format="onnx")`` falls short.

Two gaps of the TensorFlow route (Keras calls ``tf2onnx.convert.from_function``),
both met by common models and both closed here:

- **Captured constants become graph inputs.** ``from_function`` takes every
  placeholder of the traced function as an ONNX input, also those of
  captured tensors that are not variables (a ``Normalization`` layer's mean
  and variance, as in every ``keras.applications`` EfficientNet), so the
  artifact asks for inputs nobody can feed. :func:`convert_frozen` freezes the
  traced model first (every capture becomes a constant) and converts that
  graph with ``tf2onnx.convert.from_graph_def``, naming only the model's input.
- **Grouped convolutions are XLA functions.** On CPU, Keras' TensorFlow
  backend runs a ``Conv2D(groups > 1)`` through a ``jit_compile`` function
  (TensorFlow's CPU kernel has no groups), which tf2onnx cannot see into
  (``StatefulPartitionedCall``: keras-hub's MobileNetV3, for one). The frozen
  graph drops the must-compile mark (:func:`inlinable`), so the converter
  inlines the plain convolution.
- **``Erfc`` has no converter.** TensorFlow's exact GELU
  (``activation="gelu"``, as in ViT MLPs) computes ``erfc``, which tf2onnx
  cannot convert. :func:`register_erfc` adds the handler
  ``erfc(x) = 1 - erf(x)`` (ONNX ``Erf``, opset 9 and later) to tf2onnx,
  once, unless tf2onnx has one.

``export.formats.export_format`` uses Keras' export first and this module
only when that artifact cannot be loaded or run; every artifact is checked
against Keras either way.

Example:

    ```python
    register_erfc()
    convert_frozen(model, "model.onnx")    # one input: the model's
    ```
"""
from __future__ import annotations

import numpy as np

__all__ = ["register_erfc", "convert_frozen", "inlinable", "extra_inputs"]

# function attributes that keep tf2onnx from inlining a function's body
_NO_INLINE = ("_XlaMustCompile", "_noinline")


def register_erfc():
    """Teach tf2onnx TensorFlow's ``Erfc`` op as ``1 - Erf(x)`` (idempotent;
    a handler tf2onnx already has is kept)."""
    from tf2onnx import constants, utils
    from tf2onnx.handler import tf_op
    if any("Erfc" in ops for ops in tf_op.get_opsets().get(constants.ONNX_DOMAIN, [])):
        return

    @tf_op("Erfc")
    class _Erfc:   # registered by the decorator
        @classmethod
        def version_9(cls, ctx, node, **kwargs):
            dtype = utils.map_onnx_to_numpy_type(ctx.get_dtype(node.input[0]))
            erf = ctx.make_node("Erf", [node.input[0]], op_name_scope=node.name)
            one = ctx.make_const(utils.make_name(f"{node.name}_one"), np.array(1, dtype))
            node.type = "Sub"
            ctx.replace_inputs(node, [one.output[0], erf.output[0]])


def convert_frozen(model, path, opset=None):
    """Write ``model`` (one input) as ONNX to ``path`` from its frozen graph.

    Raises:
        ValueError: the model has more than one input.
    """
    import tensorflow as tf
    import tf2onnx
    from tensorflow.python.framework.convert_to_constants import (
        convert_variables_to_constants_v2)
    if len(model.inputs) != 1:
        raise ValueError(f"{len(model.inputs)} inputs; the frozen-graph route takes one")
    source = model.inputs[0]
    spec = tf.TensorSpec((None,) + tuple(source.shape[1:]), source.dtype, name="inputs")
    traced = tf.function(lambda x: model(x, training=False)).get_concrete_function(spec)
    frozen = convert_variables_to_constants_v2(traced)
    register_erfc()
    tf2onnx.convert.from_graph_def(
        inlinable(frozen.graph.as_graph_def()), name=model.name,
        input_names=[t.name for t in frozen.inputs if t.dtype != tf.resource],
        output_names=[t.name for t in frozen.outputs], opset=opset, output_path=path)


def inlinable(graph_def):
    """``graph_def`` with the XLA must-compile and no-inline marks removed
    from its functions and call nodes (in place; returned), so every
    function body is inlined and converted op by op."""
    nodes = list(graph_def.node)
    for function in graph_def.library.function:
        for key in _NO_INLINE:
            if key in function.attr:
                del function.attr[key]
        nodes += list(function.node_def)
    for node in nodes:
        for key in _NO_INLINE:
            if key in node.attr:
                del node.attr[key]
    return graph_def


def extra_inputs(path, num_inputs):
    """The names of the ONNX inputs of ``path`` beyond its first
    ``num_inputs`` (what no caller can feed; empty when it is sound)."""
    import onnx
    graph = onnx.load(path, load_external_data=False).graph
    initialized = {t.name for t in graph.initializer}
    names = [i.name for i in graph.input if i.name not in initialized]
    return names[num_inputs:]
