"""FixedPointMonitor: the DLU's statistics database and exponents, in TensorBoard."""

import os

import keras
import numpy as np
import tensorflow as tf
from tensorflow.core.framework import summary_pb2

from keras_dlu.ops.constants import HISTOGRAM_BINS, HISTOGRAM_OFFSET


def _metadata(plugin, data_class, description):
    """TensorBoard plugin metadata, so the summaries need no tensorboard package here."""
    return summary_pb2.SummaryMetadata(
        plugin_data=summary_pb2.SummaryMetadata.PluginData(plugin_name=plugin),
        summary_description=description, data_class=data_class)


@keras.saving.register_keras_serializable(package="keras_dlu")
class FixedPointMonitor(keras.callbacks.Callback):
    """Writes every DLU tensor's exponent histogram and exponent to TensorBoard.

    For each layer with ``fixed_point_states`` (``DLUDense``, ``DLUConv2D``) and each of
    its tensors (``inputs``, ``kernel``, ``gradients``), it writes with ``tf.summary``

    * ``<layer>/<tensor>/exponent``: a scalar, the exponent the next step uses;
    * ``<layer>/<tensor>/histogram``: a histogram over ``floor(log2|x|)`` (bucket
      ``[p, p+1)`` counts the values in ``[2**p, 2**(p+1))``), the latest entry of the
      layer's database;

    and at the end of training saves a plot of the exponent trajectories with
    ``keras_dlu.utils.save_figure`` (its path is in ``plot_path``). View the summaries
    with ``tensorboard --logdir <log_dir>``.

    Reference: the analysis block and database of Fujitsu's DLU.

    Args:
        log_dir: folder of the TensorBoard event files (created if missing).
        update_freq: ``"epoch"`` (default) or a number of batches between writes.
        plot_name: file name (without ``.png``) of the plot under the reports folder,
            or None for no plot. Default ``"fixed_point_exponents"``.
    """

    def __init__(self, log_dir, update_freq="epoch", plot_name="fixed_point_exponents"):
        super().__init__()
        if not isinstance(log_dir, (str, os.PathLike)) or not str(log_dir):
            raise ValueError(f"`log_dir` must be a non-empty path; got {log_dir!r}.")
        if update_freq != "epoch" and (isinstance(update_freq, bool)
                                       or not isinstance(update_freq, int) or update_freq < 1):
            raise ValueError(f"`update_freq` must be 'epoch' or an integer >= 1; "
                             f"got {update_freq!r}.")
        if plot_name is not None and not isinstance(plot_name, str):
            raise ValueError(f"`plot_name` must be a string or None; got {plot_name!r}.")
        self.log_dir = str(log_dir)
        self.update_freq = update_freq
        self.plot_name = plot_name
        self.trajectories = {}
        self.plot_path = None
        self._writer = None
        self._batches = 0

    def _states(self):
        for layer in self.model._flatten_layers(include_self=False):
            for tensor, state in getattr(layer, "fixed_point_states", {}).items():
                yield f"{layer.name}/{tensor}", state

    def on_train_begin(self, logs=None):
        self._writer = tf.summary.create_file_writer(self.log_dir)
        self.trajectories = {}
        self._batches = 0

    def on_train_batch_end(self, batch, logs=None):
        self._batches += 1
        if self.update_freq != "epoch" and self._batches % self.update_freq == 0:
            self.write(self._batches)

    def on_epoch_end(self, epoch, logs=None):
        if self.update_freq == "epoch":
            self.write(epoch + 1)

    def on_train_end(self, logs=None):
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        if self.plot_name is not None and self.trajectories:
            self.plot_path = self.plot()

    def write(self, step):
        """Writes the current statistics at ``step`` (epochs or batches)."""
        positions = np.arange(HISTOGRAM_BINS, dtype=np.float64) - HISTOGRAM_OFFSET
        histogram_meta = _metadata("histograms", summary_pb2.DATA_CLASS_TENSOR,
                                   "counts of floor(log2|x|), the DLU analysis block")
        scalar_meta = _metadata("scalars", summary_pb2.DATA_CLASS_SCALAR,
                                "fixed-point exponent e (values are q * 2**e)")
        with self._writer.as_default():
            for tag, state in self._states():
                exponent = int(state.exponent.numpy())
                counts = state.histograms.numpy()[-1].astype(np.float64)
                buckets = np.stack([positions, positions + 1, counts], axis=1)
                tf.summary.write(f"{tag}/exponent", tf.constant(float(exponent)),
                                 step=step, metadata=scalar_meta)
                tf.summary.write(f"{tag}/histogram", tf.constant(buckets), step=step,
                                 metadata=histogram_meta)
                self.trajectories.setdefault(tag, []).append((step, exponent))
        self._writer.flush()

    def plot(self):
        """Saves the exponent trajectories (one panel per tensor kind); returns the path."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        from keras_dlu.utils import save_figure

        kinds = sorted({tag.rsplit("/", 1)[1] for tag in self.trajectories})
        figure, axes = plt.subplots(1, len(kinds), figsize=(4.2 * len(kinds), 3.4),
                                    squeeze=False)
        for axis, kind in zip(axes[0], kinds):
            for tag, points in self.trajectories.items():
                if tag.rsplit("/", 1)[1] == kind:
                    steps, exponents = zip(*points)
                    axis.step(steps, exponents, where="post", label=tag.rsplit("/", 1)[0])
            axis.set(title=f"{kind} exponent", xlabel="epoch" if self.update_freq == "epoch"
                     else "batch", ylabel="e (value = q * 2**e)")
        axes[0][-1].legend(fontsize=7)
        figure.suptitle("DLU dynamic fixed point: exponent trajectories")
        path = save_figure(figure, self.plot_name)
        plt.close(figure)
        return path

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def get_config(self):
        return {"log_dir": self.log_dir, "update_freq": self.update_freq,
                "plot_name": self.plot_name}
