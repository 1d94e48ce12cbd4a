"""Gradient helpers shared by keras-dlu's optimizers (``keras.ops`` only, every backend)."""

from keras import ops


def dense_gradient(gradient, variable):
    """``gradient`` as a dense tensor of ``variable``'s shape.

    A TensorFlow ``IndexedSlices`` (from ``Embedding``) becomes the equivalent dense
    gradient. It is recognised by ``dense_shape``, not by ``indices``: a torch tensor has an
    ``indices`` method too.
    """
    if hasattr(gradient, "dense_shape"):
        return ops.scatter(ops.expand_dims(gradient.indices, -1), gradient.values,
                           variable.shape)
    return gradient
