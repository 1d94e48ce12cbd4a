"""``FixedPointState`` lives in the fixed-point core, :mod:`keras_dlu.fixed_point`;
this module keeps its former import path."""

from keras_dlu.fixed_point import FixedPointState  # noqa: F401
