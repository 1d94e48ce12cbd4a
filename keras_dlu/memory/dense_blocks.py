"""A large Dense kernel's weight gradient in row blocks, each block applied at once.

The fused step applies a layer's update as soon as its gradient exists, so at most one
layer's weight gradient is alive; the largest one (a dense kernel after a flattened
convolution stack: 16 MiB on the benchmark's VGG-style model) is then the floor of the
step's peak. A Dense layer computes ``z = x @ W``; rows ``start:stop`` of its kernel's
gradient are ``x[:, start:stop]^T @ dz``, the product TensorFlow's MatMul gradient
computes for the whole kernel (``MatMul(x, dz, transpose_a=True)``) restricted to a slice of
``x``'s columns. Every element is the same dot product over the batch, so the blocks are
the rows of the whole gradient: bit for bit where TensorFlow's GEMM sums a slice's rows in
the whole's order (the AVX-512 Xeons measured), in the last bits elsewhere (AVX2 CPUs such as
AMD EPYC order the sum by the row count; ``tests/memory/test_dense_blocks.py``). So for
such a layer the step computes ``dz`` (and the bias gradient) with the tape, then ``dx``
from ``dz``, then each row block of the kernel's gradient followed by its in-place update
(``keras_dlu.memory.inplace.apply_blocks``): the kernel's gradient never exists whole, its
temporaries are one block.

Eligible (``blockable``): a ``keras.layers.Dense`` (exactly that class) with a rank-2 input,
no LoRA, no quantization, no kernel constraint, used by one node, whose kernel is larger
than one block, trained by an optimizer with an in-place block update and no
per-variable clipping (``clipnorm``/``clipvalue`` need the whole gradient), in a traced
step (the product is found in the step's graph: ``Tensor.consumers``).
"""

import keras
import numpy as np
import tensorflow as tf

from keras_dlu.memory import inplace


def blockable(layer, input_tensors, optimizer, nodes=1, eager=False):
    """True when ``layer``'s kernel gradient can be computed and applied in row blocks.

    Args:
        layer: the node's operation.
        input_tensors: the node's symbolic inputs.
        optimizer: the optimizer that trains the model (or None).
        nodes: how many nodes of the graph call ``layer``.
        eager: True when the step runs eagerly (``run_eagerly``).
    """
    if type(layer) is not keras.layers.Dense or eager or nodes != 1:
        return False
    if layer.lora_enabled or layer.quantization_mode or layer.kernel_constraint:
        return False
    kernel = layer.kernel
    if not kernel.trainable or kernel.overwrite_with_gradient or len(kernel.shape) != 2:
        return False
    if len(input_tensors) != 1 or len(input_tensors[0].shape) != 2:
        return False
    if optimizer is None or not inplace.supported(optimizer) or (
        optimizer.clipnorm or optimizer.clipvalue
    ):
        return False
    size = int(np.prod(kernel.shape)) * np.dtype(kernel.dtype).itemsize
    return size > inplace.BLOCK_BYTES


def gradients(tape, layer, source, targets, seeds, needs_dx=True):
    """dX, the bias gradient and the kernel's gradient rows of one Dense node.

    Args:
        tape: the step's persistent tape.
        layer: the Dense layer (``blockable``).
        source: the tensor the node read as its input (the step's own identity).
        targets, seeds: the node's outputs that have a gradient, and those gradients.
        needs_dx: whether the input's gradient is needed (False for the first layer).

    Returns:
        ``(dx, grads, rows)``: the input's gradient (None when ``source`` does not need
        one), the gradients of ``layer.trainable_variables`` with None for the kernel,
        and ``rows(start, stop)``, the kernel gradient's rows ``start:stop``.

    Raises:
        RuntimeError: the node's product is not in the graph (a Keras change).
    """
    product = _product(layer, source)
    z = product.outputs[0]
    weights = layer.trainable_variables
    others = [w for w in weights if w is not layer.kernel]
    dz, *rest = tape.gradient(targets, [z] + others, output_gradients=seeds)
    dx = tape.gradient(z, source, output_gradients=dz) if needs_dx else None
    by_id = {id(w): g for w, g in zip(others, rest)}
    x = product.inputs[0]

    def rows(start, stop):
        return tf.raw_ops.MatMul(a=x[:, start:stop], b=dz, transpose_a=True)

    return dx, [by_id.get(id(w)) for w in weights], rows


def apply(optimizer, kernel, rows):
    """The kernel's update, block by block from ``rows`` (divided by the loss-scale
    factor when the optimizer has one, as ``Optimizer.apply`` divides the gradient)."""
    scale = optimizer.loss_scale_factor
    scaled = rows if scale is None else (lambda start, stop: rows(start, stop) / scale)
    return inplace.apply_blocks(optimizer, kernel, scaled)


def _product(layer, source):
    """The ``MatMul`` op of the node: the consumer of ``source`` that multiplies it."""
    for op in source.consumers():
        if op.type == "MatMul" and op.inputs[0].name == source.name and not (
            op.get_attr("transpose_a") or op.get_attr("transpose_b")
        ):
            return op
    raise RuntimeError(
        f"MemoryOptimizer: the product of Dense layer {layer.name} is not in the traced "
        "step (a Keras version that computes Dense differently?); the plan computed its "
        "kernel gradient in row blocks. Report this with the Keras version."
    )
