"""Small CNN and MLP builders with the shapes of the models Shirahata et al. measured.

VGG-style and AlexNet-style (convolution stacks then large dense layers), a ResNet-style
CNN (residual blocks with batch normalization, a functional graph with skip connections)
and a wide MLP. Image sizes are small so the benchmark runs on a 2-core CPU; the ratio of
dense-layer weights to convolution activations is what decides the memory saving.
"""

import keras
import numpy as np
import tensorflow as tf
from keras import layers


def vgg_style(image_size=32, classes=10, width=32, dense=1024):
    """Two VGG blocks of two 3x3 convolutions each, then two dense layers of ``dense``."""
    return keras.Sequential(
        [
            keras.Input((image_size, image_size, 3)),
            layers.Conv2D(width, 3, padding="same", activation="relu"),
            layers.Conv2D(width, 3, padding="same", activation="relu"),
            layers.MaxPooling2D(),
            layers.Conv2D(2 * width, 3, padding="same", activation="relu"),
            layers.Conv2D(2 * width, 3, padding="same", activation="relu"),
            layers.MaxPooling2D(),
            layers.Flatten(),
            layers.Dense(dense, activation="relu"),
            layers.Dense(dense, activation="relu"),
            layers.Dense(classes),
        ],
        name="vgg_style",
    )


def alexnet_style(image_size=32, classes=10, dense=1024):
    """A strided large-kernel convolution, three 3x3 convolutions, two dense layers."""
    return keras.Sequential(
        [
            keras.Input((image_size, image_size, 3)),
            layers.Conv2D(48, 5, strides=2, padding="same", activation="relu"),
            layers.MaxPooling2D(),
            layers.Conv2D(96, 3, padding="same", activation="relu"),
            layers.Conv2D(96, 3, padding="same", activation="relu"),
            layers.Conv2D(64, 3, padding="same", activation="relu"),
            layers.MaxPooling2D(),
            layers.Flatten(),
            layers.Dropout(0.5),
            layers.Dense(dense, activation="relu"),
            layers.Dropout(0.5),
            layers.Dense(dense, activation="relu"),
            layers.Dense(classes),
        ],
        name="alexnet_style",
    )


def resnet_style(image_size=32, classes=10, width=32, blocks=2):
    """A stem convolution, ``blocks`` residual blocks with batch norm, global pooling.

    As in ResNet, the convolutions before batch normalization have no bias (its gradient
    would be rounding noise, which adaptive optimizers amplify into arbitrary steps).
    """
    inputs = keras.Input((image_size, image_size, 3))
    x = layers.Conv2D(width, 3, padding="same", activation="relu")(inputs)
    for _ in range(blocks):
        y = layers.Conv2D(width, 3, padding="same", use_bias=False)(x)
        y = layers.BatchNormalization()(y)
        y = layers.Activation("relu")(y)
        y = layers.Conv2D(width, 3, padding="same", use_bias=False)(y)
        y = layers.BatchNormalization()(y)
        x = layers.Activation("relu")(layers.Add()([x, y]))
    x = layers.GlobalAveragePooling2D()(x)
    outputs = layers.Dense(classes)(x)
    return keras.Model(inputs, outputs, name="resnet_style")


def wide_mlp(features=784, classes=10, width=2048, depth=3):
    """``depth`` dense layers of ``width`` units."""
    stack = [keras.Input((features,))]
    stack += [layers.Dense(width, activation="relu") for _ in range(depth)]
    stack.append(layers.Dense(classes))
    return keras.Sequential(stack, name="wide_mlp")


BUILDERS = {
    "vgg_style": vgg_style,
    "alexnet_style": alexnet_style,
    "resnet_style": resnet_style,
    "wide_mlp": wide_mlp,
}


def compiled_with_batches(name, batch_size, model_kwargs=None, optimizer=None):
    """The probe's and the benchmarks' case: builder ``name``, seeded, compiled with
    ``optimizer`` (a Keras optimizer config) and sparse crossentropy on logits, its
    optimizer built; and an iterator repeating one random batch of ``batch_size``.

    Returns ``(model, iterator)``.
    """
    keras.utils.set_random_seed(0)
    model = BUILDERS[name](**(model_kwargs or {}))
    model.compile(optimizer=keras.optimizers.deserialize(optimizer),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.optimizer.build(model.trainable_variables)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(batch_size,) + tuple(model.inputs[0].shape[1:])).astype("float32")
    y = rng.integers(0, 10, size=(batch_size,))
    return model, iter(tf.data.Dataset.from_tensors((x, y)).repeat())
