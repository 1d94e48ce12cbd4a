"""Every private Keras name ``keras_dlu.memory`` relies on, in one place, each with why.

The restructured step replaces ``Model.train_step`` and ``Optimizer.apply`` from the
inside, which Keras has no public API for. Public APIs do the rest: ``keras.tree``,
``keras.utils.unpack_x_y_sample_weight``, ``Model.compute_loss``,
``Optimizer.scale_loss``, ``keras.optimizers.LossScaleOptimizer``, ``keras.name_scope``.
``check()`` raises, naming each missing name and its use, when a Keras upgrade removes
one (``tests/memory/test_keras_internals.py`` runs it).
"""

import keras
from keras.src.backend.tensorflow.trainer import TensorFlowTrainer  # the TF-backend fit
from keras.src.backend.common import masking as _masking  # masks carried by tensors
from keras.src.models import functional as _functional  # the layer graph's runner

# (owner, name): why keras_dlu.memory needs it.
PRIVATE = {
    ("keras.src.models.functional", "Functional"):
        "the class of the layer graph that is walked node by node",
    ("keras.src.models.functional", "operation_fn"):
        "calls one node of the graph as Functional.call does (training=True)",
    ("keras.src.models.functional", "unpack_singleton"):
        "unwraps the graph's single output as Functional.call does",
    ("Functional", "_standardize_inputs"):
        "converts fit's x to the graph's inputs as Functional.call does",
    ("Functional", "_run_through_graph"):
        "runs the graph with our operation_fn, so each node's tensors are recorded",
    ("Functional", "_nodes_by_depth"):
        "the planner reads the nodes in forward order",
    ("keras.src.backend.common.masking", "get_keras_mask"):
        "a node's input mask, carried over to the identity the node reads",
    ("keras.src.backend.common.masking", "set_keras_mask"):
        "sets that mask on the identity",
    ("tensor", "_keras_logits"):
        "the logits Keras' crossentropy reads from a softmax/sigmoid output",
    ("keras.Sequential", "_functional"):
        "the layer graph of a built Sequential model",
    ("keras.Model", "_make_function"):
        "wraps our train_step exactly as fit wraps the stock one (tf.function, "
        "steps_per_execution)",
    ("keras.Model", "_loss_tracker"):
        "the loss metric stock train_step updates",
    ("keras.Model", "_flatten_layers"):
        "every sublayer, to check policies and regularizers",
    ("keras.Model", "_distribute_strategy"):
        "set when the model was built under a tf.distribute strategy",
    ("TensorFlowTrainer", "train_step"):
        "stock train_step, to detect a model that overrides it",
    ("keras.optimizers.Optimizer", "_clip_gradients"):
        "the optimizer's per-variable clipping, applied before our update",
    ("keras.optimizers.Optimizer", "_apply_weight_decay"):
        "the optimizer's decoupled weight decay (SGD path)",
    ("keras.optimizers.Optimizer", "_use_weight_decay"):
        "whether a variable is excluded from weight decay",
    ("keras.optimizers.Optimizer", "_get_variable_index"):
        "the slot index of a variable",
    ("keras.optimizers.Optimizer", "_overwrite_variables_directly_with_gradients"):
        "variables that take their gradient as value (overwrite_with_gradient)",
    ("keras.optimizers.Optimizer", "_backend_apply_gradients"):
        "apply() without the iteration increment, for optimizers without an in-place "
        "update",
    ("keras.optimizers.Adam", "_momentums"):
        "Adam's first-moment slots",
    ("keras.optimizers.Adam", "_velocities"):
        "Adam's second-moment slots",
    ("keras.optimizers.RMSprop", "_velocities"):
        "RMSprop's mean-square slots",
    ("keras.optimizers.RMSprop", "_momentums"):
        "RMSprop's momentum slots (empty without momentum)",
    ("keras.optimizers.RMSprop", "_average_gradients"):
        "centered RMSprop's mean-gradient slots (empty when not centered)",
}

Functional = _functional.Functional


def _resolve(owner):
    if owner == "keras.src.models.functional":
        return _functional
    if owner == "keras.src.backend.common.masking":
        return _masking
    if owner == "Functional":
        return Functional
    if owner == "TensorFlowTrainer":
        return TensorFlowTrainer
    obj = keras
    for part in owner.split(".")[1:]:
        obj = getattr(obj, part)
    return obj


def _instance_attributes():
    """Names set in ``__init__`` (not class attributes), checked on small instances."""
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    model.compile(optimizer="sgd", loss="mse")
    adam = keras.optimizers.Adam()
    adam.build(model.trainable_variables)
    rmsprop = keras.optimizers.RMSprop()
    rmsprop.build(model.trainable_variables)
    graph = model._functional if hasattr(model, "_functional") else None
    import tensorflow as tf

    @tf.function
    def softmax_output():
        output = keras.activations.softmax(tf.zeros([1, 2]))
        return hasattr(output, "_keras_logits")

    logits = type("Tensor", (), {"_keras_logits": None})() if softmax_output() else None
    return {"keras.Sequential": model, "keras.Model": model, "Functional": graph,
            "keras.optimizers.Adam": adam, "keras.optimizers.RMSprop": rmsprop,
            "tensor": logits}


def check():
    """Raises ``ImportError`` naming every private Keras name that no longer exists."""
    instances = _instance_attributes()
    missing = []
    for (owner, name), why in PRIVATE.items():
        target = None if owner == "tensor" else _resolve(owner)
        if (target is not None and hasattr(target, name)) or (
            owner in instances and hasattr(instances[owner], name)
        ):
            continue
        missing.append(f"{owner}.{name} ({why})")
    if missing:
        raise ImportError(
            f"keras_dlu.memory needs private Keras names that Keras {keras.__version__} "
            "no longer has: " + "; ".join(missing)
        )


# The accessors the rest of keras_dlu.memory uses.


def layer_graph(model):
    """The ``Functional`` whose nodes are walked: the model itself or a Sequential's."""
    if isinstance(model, Functional):
        return model
    return getattr(model, "_functional", None)


def run_graph(graph, x, operation_fn):
    """``Functional.call`` with ``operation_fn(operation)`` wrapping each node."""
    inputs = graph._standardize_inputs(x)
    outputs = graph._run_through_graph(inputs, operation_fn=operation_fn)
    return _functional.unpack_singleton(outputs)


def node_call(operation):
    """How ``Functional.call(training=True)`` calls one node."""
    return _functional.operation_fn(operation, training=True)


def nodes_by_depth(graph):
    return graph._nodes_by_depth


def copy_mask(tensor, copy):
    """Gives ``copy`` the Keras mask of ``tensor`` (if any)."""
    mask = _masking.get_keras_mask(tensor)
    if mask is not None:
        _masking.set_keras_mask(copy, mask)


def logits_of(output):
    """The logits a softmax/sigmoid output was computed from, or None."""
    return getattr(output, "_keras_logits", None)


def make_train_function(model, train_step):
    return model._make_function(train_step)


def loss_tracker(model):
    return model._loss_tracker


def all_layers(model):
    return model._flatten_layers()


def built_under_strategy(model):
    return bool(model._distribute_strategy)


def overrides_train_step(model):
    """True for a non-TF-backend model or one whose class replaces train_step."""
    return not isinstance(model, TensorFlowTrainer) or (
        type(model).train_step is not TensorFlowTrainer.train_step
    )


def clip_gradients(optimizer, grads):
    return optimizer._clip_gradients(grads)


def apply_weight_decay(optimizer, variables):
    optimizer._apply_weight_decay(variables)


def uses_weight_decay(optimizer, variable):
    return optimizer.weight_decay is not None and optimizer._use_weight_decay(variable)


def variable_index(optimizer, variable):
    return optimizer._get_variable_index(variable)


def adam_slots(optimizer, variable):
    index = variable_index(optimizer, variable)
    return optimizer._momentums[index], optimizer._velocities[index]


def rmsprop_slots(optimizer, variable):
    """(velocity, momentum or None, average gradient or None) of ``variable``."""
    index = variable_index(optimizer, variable)
    momentums, averages = optimizer._momentums, optimizer._average_gradients
    return (optimizer._velocities[index], momentums[index] if momentums else None,
            averages[index] if averages else None)


def sgd_momentum(optimizer, variable):
    """SGD's momentum slot of ``variable`` (``momentums`` is public)."""
    return optimizer.momentums[variable_index(optimizer, variable)]


def overwrite_with_gradients(optimizer, grads, variables):
    return optimizer._overwrite_variables_directly_with_gradients(grads, variables)


def backend_apply(optimizer, grads, variables):
    optimizer._backend_apply_gradients(grads, variables)
