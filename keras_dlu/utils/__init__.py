"""Small helpers shared by the package, its tutorials, benchmarks and tests."""

from keras_dlu.utils.models import mnist_lenet, mnist_mlp
from keras_dlu.utils.quiet import quiet_tensorflow
from keras_dlu.utils.reports import reports_dir, save_figure

__all__ = ["mnist_lenet", "mnist_mlp", "quiet_tensorflow", "reports_dir", "save_figure"]
