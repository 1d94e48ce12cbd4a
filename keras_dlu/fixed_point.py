"""The fixed-point core: one tensor's dynamic fixed-point state and the policy choosing
its exponent (Fujitsu DLU's database and settings block).

Dependencies point one way: the native ops and their constants (``keras_dlu.ops``,
``keras_dlu.ops.constants``) below; this module; the DLU layers above it
(``keras_dlu.layers.DLUDense``, ``DLUConv2D``); model transforms on top
(``keras_dlu.quantization.quantize_model``, the tfmot bridge). The public names are also
exported as ``keras_dlu.quantization.FixedPointPolicy`` and ``FixedPointState``.
"""

import keras
import tensorflow as tf

from keras_dlu.ops.constants import HISTOGRAM_BINS, HISTOGRAM_OFFSET, MATMUL_BITS, check_bits

class FixedPointState:
    """The non-trainable variables that hold one tensor's dynamic fixed-point format.

    Created by ``FixedPointPolicy.create_state`` on a layer (so they are saved and
    restored with the model):

    * ``<name>_exponent``: int32 scalar, the exponent the next step uses (the settings).
    * ``<name>_histograms``: int64 ``[history, HISTOGRAM_BINS]``, the last histograms of
      ``floor(log2|x|)``, oldest first (the database).
    * ``<name>_updates``: int64 scalar, how many histograms were stored so far; 0 means
      the exponent is still the initial guess.

    Args:
        layer: the Keras layer that owns the variables.
        name: the tensor's name (``"kernel"``, ``"inputs"``, ``"gradients"``).
        history: rows of the histogram database.
        bins: histogram bins. Default ``HISTOGRAM_BINS``.
        initial_exponent: the exponent before any statistics. Default 0.
    """

    def __init__(self, layer, name, history, bins=HISTOGRAM_BINS, initial_exponent=0):
        self.name = name
        self.exponent = layer.add_weight(
            name=f"{name}_exponent", shape=(), dtype="int32", trainable=False,
            initializer=keras.initializers.Constant(int(initial_exponent)))
        self.histograms = layer.add_weight(
            name=f"{name}_histograms", shape=(history, bins), dtype="int64",
            trainable=False, initializer="zeros")
        self.updates = layer.add_weight(
            name=f"{name}_updates", shape=(), dtype="int64", trainable=False,
            initializer="zeros")

    @property
    def variables(self):
        return [self.exponent, self.histograms, self.updates]

    def latest_histogram(self):
        """The most recently stored histogram (int64 ``[HISTOGRAM_BINS]``)."""
        return self.histograms[-1]


@keras.saving.register_keras_serializable(package="keras_dlu")
class FixedPointPolicy:
    """Chooses each tensor's fixed-point exponent from the statistics its ops collected.

    A value is stored as ``q * 2**e`` with an integer ``q`` in
    ``[-2**(bits-1), 2**(bits-1) - 1]`` and one exponent ``e`` (the "decimal point
    position") per tensor. The ops that produce and consume a tensor also build its
    histogram of ``floor(log2|x|)`` (the DLU analysis block); the layer keeps the last
    ``history`` histograms (the database) and the exponent (the settings) as
    non-trainable variables, and after each step this policy picks the next exponent:

    1. For each stored histogram, the smallest exponent whose overflow share (the share
       of non-zero values with ``floor(log2|x|) >= bits - 1 + e``, which saturate) is at
       most ``overflow_rate``. The smallest such exponent keeps the most fractional bits.
    2. The largest of these over the history (as delayed scaling keeps an amax history),
       so one quiet step does not cut the range the previous steps needed.
    3. If ``predict_growth``, plus the growth per step of the required exponent between
       the oldest and the newest stored histogram, rounded up (as Flexpoint predicts
       the exponent from its history): a tensor whose magnitude keeps growing gets the
       larger exponent before it overflows, not after.
    4. Plus ``headroom``.

    Steps without statistics (an all-zero tensor) keep the current exponent.

    Reference: Fujitsu's Deep Learning Unit (DLU) dynamic fixed point; Courbariaux,
    Bengio & David, "Training deep neural networks with low precision multiplications"
    (2014), whose overflow-rate rule this generalises.

    Args:
        bits: width of the integers, 8 or 16. Default 8.
        overflow_rate: the largest share of a tensor's non-zero values allowed to
            saturate, in ``[0, 1)``. Default ``1e-4`` (Courbariaux et al. used 0.01%).
        history: how many past histograms each tensor keeps, an integer >= 1. Default 4.
        headroom: extra exponent steps added to the choice, an integer >= 0. Default 0.
        predict_growth: whether to extrapolate a growing exponent one step ahead.
            Default True.
    """

    def __init__(self, bits=8, overflow_rate=1e-4, history=4, headroom=0,
                 predict_growth=True):
        check_bits(bits, MATMUL_BITS)
        if (isinstance(overflow_rate, bool) or not isinstance(overflow_rate, (int, float))
                or not 0.0 <= overflow_rate < 1.0):
            raise ValueError(f"`overflow_rate` must be a number in [0, 1); "
                             f"got {overflow_rate!r}.")
        if isinstance(history, bool) or not isinstance(history, int) or history < 1:
            raise ValueError(f"`history` must be an integer >= 1; got {history!r}.")
        if isinstance(headroom, bool) or not isinstance(headroom, int) or headroom < 0:
            raise ValueError(f"`headroom` must be an integer >= 0; got {headroom!r}.")
        if not isinstance(predict_growth, bool):
            raise ValueError(f"`predict_growth` must be True or False; "
                             f"got {predict_growth!r}.")
        self.bits = int(bits)
        self.overflow_rate = float(overflow_rate)
        self.history = history
        self.headroom = headroom
        self.predict_growth = predict_growth

    @property
    def qmax(self):
        """The largest integer of the format, ``2**(bits-1) - 1``."""
        return 2 ** (self.bits - 1) - 1

    def required_exponent(self, histogram):
        """The smallest exponent whose overflow share of ``histogram`` is within bounds.

        Args:
            histogram: ``[..., HISTOGRAM_BINS]`` counts as returned by
                ``exponent_histogram``.

        Returns:
            int32 ``[...]``: the exponents; an empty histogram gives the exponent that
            would hold values below ``2**-32`` (the caller treats it as "no statistics").
        """
        counts = tf.cast(histogram, tf.float64)
        total = tf.reduce_sum(counts, axis=-1, keepdims=True)
        # tail[i]: values in bins >= i; tail[HISTOGRAM_BINS] = 0.
        tail = tf.concat([tf.cumsum(counts, axis=-1, reverse=True),
                          tf.zeros_like(total)], axis=-1)
        allowed = tail <= self.overflow_rate * total
        # The first bin index whose tail is small enough (tail is non-increasing).
        first = tf.argmax(tf.cast(allowed, tf.int32), axis=-1, output_type=tf.int32)
        return first - HISTOGRAM_OFFSET - (self.bits - 1)

    def next_exponent(self, histograms, current):
        """The exponent for the next step from a tensor's stored histograms.

        Args:
            histograms: ``[history, HISTOGRAM_BINS]`` counts, oldest first (empty rows
                are ignored).
            current: the exponent in use (kept when no row has statistics).

        Returns:
            An int32 scalar tensor.
        """
        histograms = tf.convert_to_tensor(histograms)
        current = tf.cast(current, tf.int32)
        required = self.required_exponent(histograms)
        present = tf.reduce_sum(histograms, axis=-1) > 0
        lowest = tf.constant(-(2 ** 30), tf.int32)
        masked = tf.where(present, required, lowest)
        chosen = tf.reduce_max(masked)
        if self.predict_growth:
            chosen = chosen + self._growth(required, present)
        chosen = chosen + self.headroom
        return tf.where(tf.reduce_any(present), chosen, current)

    @staticmethod
    def _growth(required, present):
        """Per-step growth of the required exponent over the history, rounded up, >= 0."""
        rows = tf.shape(required)[0]
        index = tf.range(rows)
        first = tf.reduce_min(tf.where(present, index, rows))
        last = tf.reduce_max(tf.where(present, index, -1))
        span = last - first
        rise = (tf.gather(required, tf.maximum(last, 0))
                - tf.gather(required, tf.minimum(first, rows - 1)))
        slope = tf.math.ceil(tf.cast(rise, tf.float32) / tf.cast(tf.maximum(span, 1), tf.float32))
        return tf.where(span > 0, tf.maximum(tf.cast(slope, tf.int32), 0), 0)

    def create_state(self, layer, name, initial_exponent=0):
        """Adds one tensor's database and settings to ``layer`` as non-trainable weights."""
        return FixedPointState(layer, name, self.history, HISTOGRAM_BINS, initial_exponent)

    def update(self, state, histogram):
        """Stores ``histogram`` in ``state`` and sets its exponent for the next step."""
        histogram = tf.cast(tf.convert_to_tensor(histogram), tf.int64)
        stored = tf.concat([tf.convert_to_tensor(state.histograms)[1:],
                            histogram[tf.newaxis]], axis=0)
        state.histograms.assign(stored)
        state.exponent.assign(self.next_exponent(stored, state.exponent))
        state.updates.assign_add(1)

    def __eq__(self, other):
        return isinstance(other, FixedPointPolicy) and self.get_config() == other.get_config()

    def __hash__(self):
        return hash(tuple(sorted(self.get_config().items())))

    def __repr__(self):
        arguments = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"FixedPointPolicy({arguments})"

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def get_config(self):
        return {"bits": self.bits, "overflow_rate": self.overflow_rate,
                "history": self.history, "headroom": self.headroom,
                "predict_growth": self.predict_growth}


def resolve_policy(bits, policy):
    """Validates ``bits``/``policy`` (ValueError naming them) and returns the policy."""
    if isinstance(policy, dict):
        policy = keras.saving.deserialize_keras_object(policy)
    if policy is not None and not isinstance(policy, FixedPointPolicy):
        raise ValueError(f"`policy` must be a keras_dlu.quantization.FixedPointPolicy or "
                         f"None; got {policy!r}.")
    if bits is not None:
        check_bits(bits, MATMUL_BITS)
    if policy is None:
        return FixedPointPolicy(bits=8 if bits is None else bits)
    if bits is not None and bits != policy.bits:
        raise ValueError(f"`bits`={bits} differs from `policy`.bits={policy.bits}; "
                         f"pass one of them, or equal values.")
    return policy
