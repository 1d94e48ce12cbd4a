"""The reference networks that tutorials, benchmarks and tests share."""

MNIST_MLP_HIDDEN = (256, 128, 64)


def mnist_mlp(hidden=MNIST_MLP_HIDDEN, keras_module=None):
    """The 4-layer fully connected MNIST network: 784-256-128-64-10, relu, softmax.

    Args:
        hidden: widths of the hidden layers (default 256, 128, 64).
        keras_module: the Keras to build it with; Keras 3 by default, or ``tf_keras`` for
            Keras 2 tools such as tfmot.
    """
    if keras_module is None:
        import keras as keras_module
    layers = [keras_module.Input((784,))]
    layers += [keras_module.layers.Dense(units, activation="relu") for units in hidden]
    layers += [keras_module.layers.Dense(10, activation="softmax")]
    return keras_module.Sequential(layers)


def mnist_lenet(keras_module=None):
    """A LeNet-style CNN for 28x28x1 digits: conv 6@5x5, pool, conv 16@5x5, pool, 120, 84, 10.

    Args:
        keras_module: the Keras to build it with; Keras 3 by default, or ``tf_keras``.
    """
    if keras_module is None:
        import keras as keras_module
    layers = keras_module.layers
    return keras_module.Sequential([
        keras_module.Input((28, 28, 1)),
        layers.Conv2D(6, 5, padding="same", activation="relu"),
        layers.MaxPooling2D(),
        layers.Conv2D(16, 5, activation="relu"),
        layers.MaxPooling2D(),
        layers.Flatten(),
        layers.Dense(120, activation="relu"),
        layers.Dense(84, activation="relu"),
        layers.Dense(10, activation="softmax"),
    ])
