"""SDProp: stochastic-variance-based adaptive learning rates (NTT, IJCAI 2017)."""

import keras
from keras import ops

from keras_dlu.optimizers._gradients import dense_gradient
from keras_dlu.optimizers._validation import check_learning_rate, check_range


@keras.saving.register_keras_serializable(package="keras_dlu")
class SDProp(keras.optimizers.Optimizer):
    """Optimizer that implements SDProp (Ida, Fujiwara and Iwamura, IJCAI 2017).

    SDProp divides the gradient by the square root of its *centered* running variance,
    which reacts to the stochastic (mini-batch) noise of each parameter rather than to
    the raw gradient magnitude as RMSprop does. The rule follows the author's reference
    implementation: the variance uses the mean of the previous step, epsilon is added
    outside the square root, and the learning rate is bias-corrected:

    ```
    c_t   = gamma * c_{t-1} + gamma * (1 - gamma) * (g_t - mu_{t-1})**2
    mu_t  = gamma * mu_{t-1} + (1 - gamma) * g_t
    lr_t  = lr * sqrt(1 - gamma**t)          (lr when bias_correction=False)
    theta = theta - lr_t * g_t / (sqrt(c_t) + epsilon)
    ```

    With `momentum > 0` (NTT's later PyTorch port) a heavy-ball buffer is kept:
    `buf = momentum * buf + g_t / (sqrt(c_t) + epsilon); theta -= lr_t * buf`.

    Sparse gradients (`IndexedSlices` from `Embedding`) are applied as the equivalent
    dense gradient (rows absent from the batch have gradient zero, so their running
    mean and variance decay exactly as in the dense rule).

    State: two parameter-sized slots (`mean`, `variance`), plus `momentum` when
    `momentum > 0`.

    Reference: Y. Ida, Y. Fujiwara, S. Iwamura, "Adaptive Learning Rate via Covariance
    Matrix Based Preconditioning for Deep Neural Networks", IJCAI 2017.

    Args:
        learning_rate: a positive float, a `keras.optimizers.schedules.LearningRateSchedule`
            or a callable returning the rate. Defaults to `0.001`.
        gamma: decay of the running mean and variance, in (0, 1). Defaults to `0.99`.
        epsilon: positive constant added to the standard deviation. Defaults to `1e-8`.
        momentum: heavy-ball coefficient in [0, 1). Defaults to `0.0` (no buffer).
        bias_correction: multiply the rate by `sqrt(1 - gamma**t)`. Defaults to `True`.
        weight_decay, clipnorm, clipvalue, global_clipnorm, use_ema, ema_momentum,
        ema_overwrite_frequency, loss_scale_factor, gradient_accumulation_steps, name:
            the standard arguments of `keras.optimizers.Optimizer`.
    """

    def __init__(
        self,
        learning_rate=0.001,
        gamma=0.99,
        epsilon=1e-8,
        momentum=0.0,
        bias_correction=True,
        weight_decay=None,
        clipnorm=None,
        clipvalue=None,
        global_clipnorm=None,
        use_ema=False,
        ema_momentum=0.99,
        ema_overwrite_frequency=None,
        loss_scale_factor=None,
        gradient_accumulation_steps=None,
        name="sdprop",
        **kwargs,
    ):
        check_learning_rate(learning_rate)
        check_range("gamma", gamma, 0.0, 1.0, "in the open interval (0, 1)", low_open=True,
                    high_open=True)
        check_range("epsilon", epsilon, 0.0, None, "a positive float", low_open=True)
        check_range("momentum", momentum, 0.0, 1.0, "in [0, 1)", high_open=True)
        if not isinstance(bias_correction, bool):
            raise ValueError(f"`bias_correction` must be True or False; got {bias_correction!r}.")
        super().__init__(
            learning_rate=learning_rate,
            name=name,
            weight_decay=weight_decay,
            clipnorm=clipnorm,
            clipvalue=clipvalue,
            global_clipnorm=global_clipnorm,
            use_ema=use_ema,
            ema_momentum=ema_momentum,
            ema_overwrite_frequency=ema_overwrite_frequency,
            loss_scale_factor=loss_scale_factor,
            gradient_accumulation_steps=gradient_accumulation_steps,
            **kwargs,
        )
        self.gamma = float(gamma)
        self.epsilon = float(epsilon)
        self.momentum = float(momentum)
        self.bias_correction = bias_correction

    def build(self, var_list):
        """Creates the `mean` and `variance` slots (and `momentum` when enabled)."""
        if self.built:
            return
        super().build(var_list)
        self._means, self._variances = self.add_optimizer_variables(
            var_list, ["mean", "variance"])
        self._momentums = []
        if self.momentum > 0:
            self._momentums = self.add_optimizer_variables(var_list, "momentum")

    def update_step(self, gradient, variable, learning_rate):
        """Applies one SDProp step to `variable`."""
        dtype = variable.dtype
        gradient = ops.cast(dense_gradient(gradient, variable), dtype)
        lr = ops.cast(learning_rate, dtype)
        gamma = ops.cast(self.gamma, dtype)
        index = self._get_variable_index(variable)
        mean, variance = self._means[index], self._variances[index]

        deviation = ops.subtract(gradient, mean)
        new_variance = ops.add(ops.multiply(gamma, variance),
                               ops.multiply(gamma * (1 - gamma), ops.square(deviation)))
        self.assign(variance, new_variance)
        self.assign_add(mean, ops.multiply(1 - gamma, deviation))
        if self.bias_correction:
            step = ops.cast(self.iterations + 1, dtype)
            lr = lr * ops.sqrt(1 - ops.power(gamma, step))
        direction = ops.divide(gradient, ops.add(ops.sqrt(new_variance),
                                                 ops.cast(self.epsilon, dtype)))
        if self.momentum > 0:
            buffer = self._momentums[index]
            self.assign(buffer, ops.add(ops.multiply(ops.cast(self.momentum, dtype), buffer),
                                        direction))
            direction = buffer
        self.assign_sub(variable, ops.multiply(lr, direction))

    def get_config(self):
        config = super().get_config()
        config.update({
            "gamma": self.gamma,
            "epsilon": self.epsilon,
            "momentum": self.momentum,
            "bias_correction": self.bias_correction,
        })
        return config
