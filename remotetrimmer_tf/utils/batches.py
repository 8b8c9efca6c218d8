"""The one adapter from the data forms the package accepts to numpy batches.

Accepted everywhere (collect_attention, taylor, recalibrate_bn, the
exporters, QAT, the pipeline): a ``tf.data.Dataset`` (or anything with
``as_numpy_iterator``) yielding ``x`` or ``(x, y[, w])``; a numpy array
``x`` or a tuple ``(x, y[, w])`` of arrays of one length (cut into
``batch_size`` batches); any other iterable of such batches (a list, a
generator, a ``keras.utils.PyDataset``).

Example:

>>> import numpy as np
>>> x, y = np.zeros((5, 2, 2, 3), "float32"), np.arange(5)
>>> [b.shape for b in iterate_batches(x, batch_size=2)]
[(2, 2, 2, 3), (2, 2, 2, 3), (1, 2, 2, 3)]
>>> as_sample_array([(x[:2], y[:2]), (x[2:], y[2:])], limit=3).shape
(3, 2, 2, 3)
>>> xs, ys = as_xy((x, y), limit=4)
>>> xs.shape, ys.tolist()
((4, 2, 2, 3), [0, 1, 2, 3])
"""
import numpy as np

__all__ = ["iterate_batches", "as_sample_array", "as_xy"]


def _is_array(a):
    return hasattr(a, "shape") and hasattr(a, "dtype") and len(getattr(a, "shape", ())) >= 1


def _is_array_tuple(data):
    return (isinstance(data, tuple) and 1 <= len(data) <= 3
            and all(_is_array(a) for a in data) and len({len(a) for a in data}) == 1)


def _source(data, batch_size, name):
    if data is None:
        raise ValueError(f"{name} is None: pass a tf.data.Dataset, numpy batches or "
                         "(x, y) arrays.")
    if isinstance(data, dict):
        raise TypeError(f"{name}: dict inputs are not supported; pass x or (x, y) batches.")
    if hasattr(data, "as_numpy_iterator"):
        return data.as_numpy_iterator()
    if _is_array(data) or _is_array_tuple(data):
        arrays = data if isinstance(data, tuple) else (data,)
        n = len(arrays[0])
        return (tuple(a[i:i + batch_size] for a in arrays) if len(arrays) > 1
                else arrays[0][i:i + batch_size]
                for i in range(0, n, batch_size))
    try:
        return iter(data)
    except TypeError:
        raise TypeError(
            f"Cannot iterate {name} of type {type(data).__name__}: pass a "
            "tf.data.Dataset, a numpy array, (x, y) arrays or an iterable "
            "of batches.") from None


def iterate_batches(data, steps=None, batch_size=64, labels=False, name="data"):
    """Yield numpy batches from any of the accepted data forms.

    Args:
        data: the data, in one of the forms of the module docstring.
        steps: stop after this many batches (``None``: all of them).
        batch_size: batch size used to cut whole arrays.
        labels: yield ``(x, y)`` instead of ``x``; the data must carry labels.
        name: what error messages call the data (e.g. ``"`train_data`"``).

    Yields:
        ``x`` (numpy) or ``(x, y)``.

    Example:

    >>> import numpy as np
    >>> batches = iterate_batches((np.ones((3, 4)), np.arange(3)), batch_size=2,
    ...                           labels=True)
    >>> [(x.shape, y.tolist()) for x, y in batches]
    [((2, 4), [0, 1]), ((1, 4), [2])]
    """
    if steps is not None and (not isinstance(steps, int) or steps < 1):
        raise ValueError(f"steps must be None or a positive int, got {steps!r}.")
    source = _source(data, int(batch_size), name)
    for i, batch in enumerate(source):
        if steps is not None and i >= steps:
            break
        if isinstance(batch, dict):
            raise TypeError(f"{name} yielded a dict; yield image arrays or "
                            "(images, labels) tuples.")
        if isinstance(batch, (tuple, list)):
            if not batch:
                raise ValueError(f"{name} yielded an empty batch tuple.")
            x, y = batch[0], (batch[1] if len(batch) > 1 else None)
            if isinstance(x, (tuple, list)) and len(x) == 1:   # ((x,), y)
                x = x[0]
        else:
            x, y = batch, None
        x = np.asarray(x)
        if labels:
            if y is None:
                raise ValueError(
                    "This step needs labelled data: batches of (x, y), got x only.")
            yield x, np.asarray(y)
        else:
            yield x


def _add_batch_axis(x, ndim):
    return x[None] if ndim is not None and x.ndim == ndim - 1 else x


def as_sample_array(data, *, limit=None, name="data", ndim=None):
    """All (or the first ``limit``) samples of ``data`` as one float32 array.

    Besides the forms of :func:`iterate_batches`, ``data`` may be a
    zero-argument callable returning one (the ``representative_dataset``
    convention); an iterable may yield single samples (rank ``ndim - 1``).

    Args:
        data: the data.
        limit: read at most this many samples.
        name: what error messages call the data.
        ndim: rank of the model's input batches (checked; ``None``: any).

    Raises:
        TypeError: an element is not array-like.
        ValueError: no samples, or the wrong rank.

    Example:

    >>> import numpy as np
    >>> as_sample_array(lambda: iter([np.ones((2, 2)), np.ones((2, 2))]),
    ...                 ndim=3).shape
    (2, 2, 2)
    """
    if data is None:
        raise ValueError(f"`{name}` is None.")
    if callable(data) and not hasattr(data, "__iter__"):
        data = data()
    if _is_array(data):
        data = _add_batch_axis(np.asarray(data), ndim)
    chunks, count = [], 0
    for x in iterate_batches(data, batch_size=limit or 1024, name=f"`{name}`"):
        x = np.asarray(x, dtype=np.float32)
        if x.ndim == 0:
            raise TypeError(f"`{name}` yielded a scalar, expected images.")
        chunks.append(_add_batch_axis(x, ndim))
        count += len(chunks[-1])
        if limit is not None and count >= limit:
            break
    if not chunks:
        raise ValueError(f"`{name}` yielded no samples.")
    arr = np.concatenate(chunks, axis=0)
    if ndim is not None and arr.ndim != ndim:
        raise ValueError(
            f"`{name}` has samples of rank {arr.ndim - 1} (array shape "
            f"{arr.shape}); the model expects batches of rank {ndim}.")
    if limit is not None:
        arr = arr[:limit]
    if len(arr) == 0:
        raise ValueError(f"`{name}` holds no samples.")
    return arr


def as_xy(data, *, limit=None, name="data", ndim=None):
    """All (or the first ``limit``) ``(images, labels)`` of ``data`` as numpy.

    Images become float32; one-hot labels become class indices (int32).

    Args:
        data: ``(x, y)`` arrays, a ``tf.data.Dataset`` or an iterable of
            ``(x, y[, w])`` batches.
        limit: read at most this many samples.
        name: what error messages call the data.
        ndim: rank of the model's input batches (single samples get a batch
            axis; ``None``: any).

    Raises:
        TypeError: the data carries no labels.
        ValueError: no samples, or as many images as labels.

    Example:

    >>> import numpy as np
    >>> x, y = as_xy([(np.zeros((2, 3)), np.eye(4)[[1, 3]])])
    >>> x.dtype, y.tolist()
    (dtype('float32'), [1, 3])
    """
    if isinstance(data, tuple) and len(data) == 2 and not hasattr(data, "element_spec"):
        data = (_add_batch_axis(np.asarray(data[0], np.float32), ndim), np.asarray(data[1]))
    xs, ys, count = [], [], 0
    try:
        for xb, yb in iterate_batches(data, batch_size=limit or 1024, labels=True,
                                      name=f"`{name}`"):
            xs.append(_add_batch_axis(np.asarray(xb, np.float32), ndim))
            ys.append(yb[None] if len(xs[-1]) != len(xb) else yb)
            count += len(xs[-1])
            if limit is not None and count >= limit:
                break
    except ValueError as e:
        if "labelled" not in str(e):
            raise
        raise TypeError(f"`{name}` must yield (images, labels) batches.") from None
    if not xs:
        raise ValueError(f"`{name}` yielded no samples.")
    x, y = np.concatenate(xs), np.concatenate(ys)
    if y.ndim == 2:  # one-hot
        y = np.argmax(y, axis=-1)
    y = y.astype(np.int32).reshape(-1)
    if len(x) != len(y):
        raise ValueError(f"`{name}`: {len(x)} images but {len(y)} labels.")
    if limit is not None:
        x, y = x[:limit], y[:limit]
    return x, y
