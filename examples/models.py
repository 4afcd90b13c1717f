"""The paper's networks, with layer names the pruning rates refer to.

LeNet-300-100 (fc1, fc2, out), Conv-2/4/6 (conv1..convN, fc1, fc2, out),
CIFAR ResNet-20 and VGG-19 (conv*, out). Gaussian Glorot initialisation as
in the paper; He normal for the SGD-trained ResNet/VGG.
"""

import keras

GLOROT = "glorot_normal"


def lenet_300_100(input_shape, classes=10):
    """LeNet-300-100: 300-100 fully-connected, ReLU."""
    return keras.Sequential(
        [
            keras.Input(input_shape),
            keras.layers.Flatten(),
            keras.layers.Dense(300, activation="relu", kernel_initializer=GLOROT, name="fc1"),
            keras.layers.Dense(100, activation="relu", kernel_initializer=GLOROT, name="fc2"),
            keras.layers.Dense(classes, kernel_initializer=GLOROT, name="out"),
        ],
        name="lenet_300_100",
    )


CONV_WIDTHS = {2: [64, 64], 4: [64, 64, 128, 128], 6: [64, 64, 128, 128, 256, 256]}


def conv_net(depth, input_shape=(32, 32, 3), classes=10):
    """Conv-2/4/6 of the paper: pairs of 3x3 convs then max-pool, fc 256-256."""
    if depth not in CONV_WIDTHS:
        raise ValueError(f"Conv depth must be one of {sorted(CONV_WIDTHS)}; got {depth}.")
    layers = [keras.Input(input_shape)]
    for i, width in enumerate(CONV_WIDTHS[depth], start=1):
        layers.append(
            keras.layers.Conv2D(width, 3, padding="same", activation="relu",
                                kernel_initializer=GLOROT, name=f"conv{i}")
        )
        if i % 2 == 0:
            layers.append(keras.layers.MaxPooling2D(2))
    layers += [
        keras.layers.Flatten(),
        keras.layers.Dense(256, activation="relu", kernel_initializer=GLOROT, name="fc1"),
        keras.layers.Dense(256, activation="relu", kernel_initializer=GLOROT, name="fc2"),
        keras.layers.Dense(classes, kernel_initializer=GLOROT, name="out"),
    ]
    return keras.Sequential(layers, name=f"conv{depth}")


def conv_rates(depth):
    """Per-layer rates of the paper: conv 10% (15% for Conv-6), fc 20%, out 10%."""
    conv_rate = 0.15 if depth == 6 else 0.1
    rates = {"default": 0.2, "output": 0.1}
    rates.update({f"conv{i}": conv_rate for i in range(1, len(CONV_WIDTHS[depth]) + 1)})
    return rates


def _conv_bn(x, filters, stride, name):
    x = keras.layers.Conv2D(filters, 3, strides=stride, padding="same", use_bias=False,
                            kernel_initializer="he_normal", name=name)(x)
    return keras.layers.BatchNormalization(name=f"{name}_bn")(x)


def resnet20(input_shape=(32, 32, 3), classes=10, width=16):
    """CIFAR ResNet-20 (He et al. 2016): 3 stages x 3 basic blocks, 16-32-64."""
    inputs = keras.Input(input_shape)
    x = keras.layers.ReLU()(_conv_bn(inputs, width, 1, "conv0"))
    for stage, filters in enumerate([width, 2 * width, 4 * width]):
        for block in range(3):
            stride = 2 if stage > 0 and block == 0 else 1
            name = f"conv{stage + 1}_{block + 1}"
            y = keras.layers.ReLU()(_conv_bn(x, filters, stride, f"{name}a"))
            y = _conv_bn(y, filters, 1, f"{name}b")
            if stride != 1 or x.shape[-1] != filters:
                x = keras.layers.Conv2D(filters, 1, strides=stride, use_bias=False,
                                        kernel_initializer="he_normal", name=f"{name}_proj")(x)
                x = keras.layers.BatchNormalization(name=f"{name}_proj_bn")(x)
            x = keras.layers.ReLU()(keras.layers.Add()([x, y]))
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(classes, kernel_initializer=GLOROT, name="out")(x)
    return keras.Model(inputs, outputs, name="resnet20")


VGG19 = [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M",
         512, 512, 512, 512, "M", 512, 512, 512, 512]


def vgg19(input_shape=(32, 32, 3), classes=10):
    """CIFAR VGG-19 with batch norm, global average pooling and one fc layer."""
    inputs = keras.Input(input_shape)
    x = inputs
    index = 0
    for item in VGG19:
        if item == "M":
            x = keras.layers.MaxPooling2D(2)(x)
            continue
        index += 1
        x = keras.layers.ReLU()(_conv_bn(x, item, 1, f"conv{index}"))
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(classes, kernel_initializer=GLOROT, name="out")(x)
    return keras.Model(inputs, outputs, name="vgg19")


@keras.saving.register_keras_serializable(package="keras_lottery_examples")
class WarmupPiecewise(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warmup, then the paper's step drops (x0.1 at each boundary)."""

    def __init__(self, base, drops, warmup):
        self.base, self.drops, self.warmup = base, list(drops), warmup

    def __call__(self, step):
        step = keras.ops.cast(step, "float32")
        lr = keras.ops.convert_to_tensor(self.base, "float32")
        for boundary in self.drops:
            lr = keras.ops.where(step >= boundary, lr * 0.1, lr)
        if self.warmup:
            lr = lr * keras.ops.minimum(1.0, (step + 1.0) / self.warmup)
        return lr

    def get_config(self):
        return {"base": self.base, "drops": self.drops, "warmup": self.warmup}
