"""One tensor's fixed-point state on a layer: its histogram database and its exponent."""

import keras


class FixedPointState:
    """The non-trainable variables that hold one tensor's dynamic fixed-point format.

    Created by ``FixedPointPolicy.create_state`` on a layer (so they are saved and
    restored with the model):

    * ``<name>_exponent``: int32 scalar, the exponent the next step uses (the settings).
    * ``<name>_histograms``: int64 ``[history, 64]``, the last histograms of
      ``floor(log2|x|)``, oldest first (the database).
    * ``<name>_updates``: int64 scalar, how many histograms were stored so far; 0 means
      the exponent is still the initial guess.

    Args:
        layer: the Keras layer that owns the variables.
        name: the tensor's name (``"kernel"``, ``"inputs"``, ``"gradients"``).
        history: rows of the histogram database.
        bins: histogram bins (64).
        initial_exponent: the exponent before any statistics. Default 0.
    """

    def __init__(self, layer, name, history, bins, initial_exponent=0):
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
        """The most recently stored histogram (int64 ``[64]``)."""
        return self.histograms[-1]
