"""Operations on the parameter vector of an optimizer, held as a list of tensors."""

from keras import ops


def dot(a, b):
    """Inner product of two lists of tensors, as one float32 scalar."""
    return sum(ops.sum(x * y) for x, y in zip(a, b))


def all_finite(tensors):
    return ops.all(ops.stack([ops.all(ops.isfinite(t)) for t in tensors]))


def as_list(value):
    return value if isinstance(value, list) else [value]


def memory_dots(memory, vectors, m):
    """``[2m, k]`` inner products of the stored ``[S; Y]`` rows with k vector lists."""
    total = None
    for index, memory_value in enumerate(memory):
        columns = ops.stack([ops.reshape(v[index], (-1,)) for v in vectors], axis=1)
        flat = ops.reshape(ops.cast(memory_value, "float32"), (2 * m, -1))
        part = ops.matmul(flat, columns)
        total = part if total is None else total + part
    return total
