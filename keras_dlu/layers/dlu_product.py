"""What DLUDense and DLUConv2D share: the fixed-point state and the integer product.

``DLUProductMixin`` adds to a Keras layer the three tensors' dynamic fixed-point state
(``inputs``, ``kernel``, ``gradients``: histograms and exponents, non-trainable, saved
with the model) and ``_fixed_point_matmul``, a matrix product whose forward pass and both
backward products run through ``keras_dlu.ops.dlu_matmul`` (integer arithmetic):

* forward: ``y = Q(x) @ Q(W)``;
* backward (the op's registered gradient): ``dx = Q(dy) @ Q(W)^T`` and
  ``dW = Q(x)^T @ Q(dy)``,

each operand quantized with its own exponent. At 8 bits (on the CPU) the forward keeps the
digits of ``Q(x)`` and ``Q(W)`` (one byte per element) for the backward, which quantizes
only ``dy`` (``dlu_matmul(keep_digits=True)``): the saved activation is int8, not float32. The
histograms the op returns (forward
``stats``; backward through the ``grad_stats_sink`` contract) feed ``FixedPointPolicy``,
which sets the exponents of the next step. The products' own histograms are not read by
the policy, so the kept-digit ops leave them uncounted (``product_histograms=False``).
"""

import keras
import tensorflow as tf
from tensorflow.python.eager import record

from keras_dlu.fixed_point import resolve_policy
from keras_dlu.ops import AUTO_GRAD_EXPONENT, dlu_matmul, exponent_histogram
from keras_dlu.ops.constants import STATS_SHAPE, check_rounding
from keras_dlu.ops.loader import built_with_cuda

TENSORS = ("inputs", "kernel", "gradients")


class DLUProductMixin:
    """Fixed-point state and the integer matrix product of a DLU layer (see module doc)."""

    def _init_fixed_point(self, bits, rounding, policy, seed):
        """Validates the DLU arguments; called before the Keras constructor."""
        policy = resolve_policy(bits, policy)
        check_rounding(rounding)
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            raise ValueError(f"`seed` must be an integer or None; got {seed!r}.")
        return policy

    def _set_fixed_point(self, policy, rounding, seed):
        self.policy = policy
        self.bits = policy.bits
        self.rounding = rounding
        self.seed = seed
        self.supports_jit = False  # the native ops have no XLA kernels
        self._fixed_point_states = {}

    def _build_fixed_point(self):
        for tensor in TENSORS:
            self._fixed_point_states[tensor] = self.policy.create_state(self, tensor)

    @property
    def fixed_point_states(self):
        """``{"inputs", "kernel", "gradients"}`` -> ``FixedPointState``."""
        return dict(self._fixed_point_states)

    def _state_variables(self):
        return [v for tensor in TENSORS for v in self._fixed_point_states[tensor].variables]

    def _exponent(self, tensor, x):
        """The stored exponent; before any statistics, calibrated from ``x`` itself."""
        state = self._fixed_point_states[tensor]
        return tf.cond(state.updates > 0,
                       lambda: tf.convert_to_tensor(state.exponent),
                       lambda: self.policy.required_exponent(exponent_histogram(x)))

    def _seeds(self):
        """Per-step seeds for stochastic rounding (deterministic given ``seed``)."""
        step = tf.cast(tf.convert_to_tensor(self._fixed_point_states["kernel"].updates),
                       tf.int64)
        base = tf.constant(self.seed if self.seed is not None else 0x5EED, tf.int64)
        return base * 1000003 + 4 * step

    def _fixed_point_matmul(self, x, kernel, training=False):
        """``x [M, K] @ kernel [K, N]`` in dynamic fixed point; updates the statistics.

        In training, the incoming gradient's exponent is handed to ``dlu_matmul`` (its
        registered gradient computes ``dx`` and ``dkernel`` in integer arithmetic) and
        the histogram of the incoming gradient comes back as the gradient of the
        ``grad_stats_sink`` input, which ``_gradient_statistics`` stores.
        """
        states = self._fixed_point_states
        x = tf.convert_to_tensor(x, tf.float32)
        kernel = tf.convert_to_tensor(kernel, tf.float32)
        x_exponent = self._exponent("inputs", x)
        kernel_exponent = self._exponent("kernel", kernel)
        arguments = dict(bits=self.bits, rounding=self.rounding, seed=self._seeds())
        if not training:
            product, _ = self._product(x, kernel, x_exponent, kernel_exponent, **arguments)
            return product
        gradients = states["gradients"]
        # Before any statistics, the op picks the gradient's exponent from max|G|.
        grad_exponent = tf.where(gradients.updates > 0,
                                 tf.convert_to_tensor(gradients.exponent),
                                 tf.constant(AUTO_GRAD_EXPONENT, tf.int32))
        # The kept-digit ops are CPU kernels: where the CUDA kernel can run, re-quantize.
        keep = self.bits == 8 and not (built_with_cuda() and tf.config.list_logical_devices("GPU"))
        product, stats = self._product(
            x, kernel, x_exponent, kernel_exponent, **arguments,
            grad_exponent=grad_exponent, grad_stats_sink=self._gradient_statistics(kernel),
            keep_digits=keep, grad_a=not keep or _needs_gradient(x),
            **({"product_histograms": False} if keep else {}))
        self.policy.update(states["inputs"], stats[0])
        self.policy.update(states["kernel"], stats[1])
        return product

    def _product(self, x, kernel, x_exponent, kernel_exponent, **arguments):
        """The integer product with ``dlu_matmul``'s arguments and results; DLUConv2D's
        multiplies the patches of ``x`` (an image)."""
        return dlu_matmul(x, kernel, x_exponent, kernel_exponent, **arguments)

    def _gradient_statistics(self, kernel):
        """A zero ``STATS_SHAPE`` sink tied to ``kernel`` (so the tape reaches it); its
        gradient, the backward histograms, updates the ``gradients`` state."""
        policy, state = self.policy, self._fixed_point_states["gradients"]

        @tf.custom_gradient
        def sink(kernel):
            def grad(statistics):
                policy.update(state, tf.cast(statistics[0], tf.int64))
                return None  # no kernel-sized zeros added to dW

            return tf.zeros(STATS_SHAPE, tf.float32), grad

        return sink(kernel)

    def _bias_and_activation(self, outputs):
        """Bias and activation in float32; ReLU's gradient keeps a one-byte mask."""
        if self.use_bias:
            outputs = tf.nn.bias_add(outputs, self.bias)
        if self.activation is keras.activations.relu:
            return _relu_keeping_mask(outputs)
        return outputs if self.activation is None else self.activation(outputs)

    # Keras' Dense/Conv save only kernel and bias by position; the state follows them.
    def save_own_variables(self, store):
        super().save_own_variables(store)
        if not self.built:
            return
        start = len(store.keys())
        for index, variable in enumerate(self._state_variables()):
            store[str(start + index)] = variable

    def load_own_variables(self, store):
        super().load_own_variables(store)
        if not self.built:
            return
        variables = self._state_variables()
        start = len(store.keys()) - len(variables)
        for index, variable in enumerate(variables):
            variable.assign(store[str(start + index)])

    def _fixed_point_config(self):
        return {"bits": self.bits, "rounding": self.rounding,
                "policy": keras.saving.serialize_keras_object(self.policy),
                "seed": self.seed}


@tf.custom_gradient
def _relu_keeping_mask(x):
    """``relu(x)`` whose gradient keeps ``x > 0`` (one byte per element) instead of the
    float32 output that ``ReluGrad`` reads: the same gradient (dy where x > 0, else 0; NaN
    inputs give 0, as ``ReluGrad``), and the float activation is not held for the backward
    (the next DLU layer keeps only its digits)."""
    positive = tf.greater(x, 0)

    def grad(dy):  # ReluGrad on the mask as 0/1 floats (measured 4x faster than a where)
        return tf.raw_ops.ReluGrad(gradients=dy, features=tf.cast(positive, dy.dtype))

    return tf.nn.relu(x), grad


def _needs_gradient(x):
    """Whether the backward must compute ``d loss / d x``: False only when a gradient tape
    is recording and none records ``x`` (the batch fed to a network's first layer: Keras'
    train step watches the variables, not the data). TensorFlow's tape query
    (``tensorflow.python.eager.record``) is private; this is keras-dlu's one use of it.
    Without a tape (``tf.gradients`` in a graph) the gradient is always computed."""
    return not record.could_possibly_record() or record.should_record_backprop([x])
