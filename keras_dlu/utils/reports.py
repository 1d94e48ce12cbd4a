"""Where tutorials and benchmarks write plots and reports."""

import os


def reports_dir():
    """``$KERAS_DLU_REPORTS`` or ``reports/`` in the working directory; created if missing."""
    path = os.environ.get("KERAS_DLU_REPORTS", "reports")
    os.makedirs(path, exist_ok=True)
    return path


def save_figure(figure, name):
    """Saves a matplotlib figure as ``<reports>/<name>.png`` and returns the path."""
    path = os.path.join(reports_dir(), f"{name}.png")
    figure.savefig(path, dpi=110, bbox_inches="tight")
    return path
