"""Process-group basics: ``init``, ``rank``, ``size``, ``local_rank`` (thin over Horovod).

Horovod (Sergeev & Del Balso 2018) is the engine: ``horovodrun -np N python train.py``
starts N processes, gloo (or MPI, when Horovod was built with it) carries the collectives.
These helpers are idempotent and raise :class:`NotInitializedError` with a clear message
instead of Horovod's terse one when a collective is attempted before ``init()``.
"""

import os

_DEFAULT_GLOO_TIMEOUT_SECONDS = "30"


class NotInitializedError(RuntimeError):
    """Raised when keras_dlu.distributed is used before ``keras_dlu.distributed.init()``."""


def _horovod():
    try:
        import horovod.tensorflow as hvd
    except ImportError as error:  # pragma: no cover - depends on the installation
        raise ImportError(
            "keras_dlu.distributed needs Horovod built with TensorFlow support "
            "(`make setup` builds it into .venv)") from error
    return hvd


def init():
    """Initializes Horovod once; later calls do nothing. Returns ``size()``.

    Sets ``HOROVOD_GLOO_TIMEOUT_SECONDS`` to 30 unless the caller chose a value, so that a
    rank that dies makes the others fail with an error instead of waiting forever.
    """
    os.environ.setdefault("HOROVOD_GLOO_TIMEOUT_SECONDS", _DEFAULT_GLOO_TIMEOUT_SECONDS)
    hvd = _horovod()
    if not hvd.is_initialized():
        hvd.init()
    return hvd.size()


def is_initialized():
    """True once ``init()`` ran in this process."""
    hvd = _horovod()
    return bool(hvd.is_initialized())


def require_initialized(what="keras_dlu.distributed"):
    """Returns ``horovod.tensorflow``; raises :class:`NotInitializedError` before ``init()``."""
    hvd = _horovod()
    if not hvd.is_initialized():
        raise NotInitializedError(
            f"{what} was used before keras_dlu.distributed.init(); call "
            "keras_dlu.distributed.init() at the top of the training script, before "
            "building the model and compiling it.")
    return hvd


def rank():
    """This process' rank in ``0 .. size()-1``."""
    return require_initialized("keras_dlu.distributed.rank()").rank()


def size():
    """The number of processes in the job."""
    return require_initialized("keras_dlu.distributed.size()").size()


def local_rank():
    """This process' rank among the processes of its host."""
    return require_initialized("keras_dlu.distributed.local_rank()").local_rank()


def local_size():
    """The number of processes on this host."""
    return require_initialized("keras_dlu.distributed.local_size()").local_size()
