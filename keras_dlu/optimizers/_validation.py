"""Constructor-time checks of optimizer hyperparameters (a clear ValueError, no state touched)."""

import numbers


def _is_real(value):
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def check_learning_rate(learning_rate):
    """A positive number, a `LearningRateSchedule` or a callable; anything else is an error."""
    if callable(learning_rate):
        return
    if not _is_real(learning_rate) or not learning_rate > 0:
        raise ValueError("`learning_rate` must be a positive float, a LearningRateSchedule or "
                         f"a callable; got {learning_rate!r}.")


def check_range(name, value, low, high, allowed, low_open=False, high_open=False):
    """Raises ``ValueError`` naming ``name`` unless ``low (<|<=) value (<|<=) high``."""
    ok = _is_real(value) and value == value  # rejects NaN
    if ok and low is not None:
        ok = value > low if low_open else value >= low
    if ok and high is not None:
        ok = value < high if high_open else value <= high
    if not ok:
        raise ValueError(f"`{name}` must be {allowed}; got {value!r}.")


def check_int(name, value, minimum, allowed, allow_none=False):
    """Raises ``ValueError`` naming ``name`` unless ``value`` is an int >= ``minimum``."""
    if value is None and allow_none:
        return
    if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < minimum:
        raise ValueError(f"`{name}` must be {allowed}; got {value!r}.")
