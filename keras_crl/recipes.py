"""Training recipes: the paper's, kuangliu's cosine one, and free overrides.

A recipe is the optimiser, the learning-rate schedule, the weight decay, the
batch size and the number of epochs. The paper's authors trained in PyTorch,
so `TorchSGD` reproduces PyTorch's SGD exactly: L2 weight decay *coupled* into
the gradient of every parameter and momentum on the raw gradient, which Keras'
`SGD(weight_decay=...)` (decoupled decay, learning rate inside the momentum)
does not.
"""

import dataclasses
import math

import keras
from keras import ops


@dataclasses.dataclass
class Recipe:
    """Every knob of a training recipe.

    Args:
        name: The recipe's name.
        learning_rate: Initial learning rate.
        momentum: SGD momentum.
        weight_decay: L2 coefficient, coupled into the gradient as in PyTorch.
        nesterov: Nesterov momentum.
        batch_size: Batch size.
        epochs: Number of epochs.
        schedule: `"step"` (multiply by `gamma` at each milestone), `"cosine"`
            (per-epoch cosine annealing to zero) or `"constant"`.
        milestones: Epochs where the step schedule multiplies by `gamma`,
            given for `reference_epochs` epochs and scaled to `epochs`.
        gamma: Step-schedule factor.
        reference_epochs: The run length the milestones were written for.
        augment: Random padded crop and horizontal flip, with the padding
            and flip the data set asks for (`data.Dataset.augmentation`:
            4 pixels and a flip unless it says otherwise).
        backbone_lr_scale: The learning rate of every trained variable but
            the head's (the `logits` layer), as a fraction of the head's:
            fine-tuning moves pretrained weights less than new ones.
    """

    name: str = "paper"
    learning_rate: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-4
    nesterov: bool = False
    batch_size: int = 256
    epochs: int = 300
    schedule: str = "step"
    milestones: tuple = (150, 225)
    gamma: float = 0.1
    reference_epochs: int = 300
    augment: bool = True
    backbone_lr_scale: float = 1.0

    def scaled_milestones(self):
        """Milestones moved proportionally when fewer/more epochs are asked."""
        scale = self.epochs / self.reference_epochs
        return tuple(max(1, round(m * scale)) for m in self.milestones)

    def optimizer(self, steps_per_epoch, head_variables=()):
        """The recipe's `TorchSGD` with its learning-rate schedule.

        Args:
            steps_per_epoch: Optimizer steps in one epoch.
            head_variables: Paths (`variable.path`) of the variables that
                train at the full rate; the others at `backbone_lr_scale`
                times it.
        """
        return TorchSGD(
            learning_rate=EpochSchedule(
                self.learning_rate,
                steps_per_epoch,
                schedule=self.schedule,
                milestones=self.scaled_milestones(),
                gamma=self.gamma,
                epochs=self.epochs,
            ),
            momentum=self.momentum,
            nesterov=self.nesterov,
            l2=self.weight_decay,
            backbone_lr_scale=self.backbone_lr_scale,
            head_variables=head_variables,
        )


RECIPES = {
    # The authors' CIFAR recipe (paper and released code).
    "paper": Recipe(),
    # kuangliu/pytorch-cifar's current recipe: cosine annealing over 200
    # epochs, batch 128.
    "cosine": Recipe(
        name="cosine",
        batch_size=128,
        epochs=200,
        schedule="cosine",
        milestones=(),
        reference_epochs=200,
    ),
    # The standard ImageNet recipe of He et al. (2016) and Goyal et al.
    # (2017): 90 epochs, batch 256, lr 0.1 divided by 10 at 30 and 60,
    # weight decay 1e-4.
    "imagenet": Recipe(
        name="imagenet",
        weight_decay=1e-4,
        epochs=90,
        milestones=(30, 60),
        reference_epochs=90,
    ),
    # Fine-tuning an ImageNet backbone on a fine-grained set (CUB-200-2011,
    # Stanford Cars): a new head at lr 0.01, the pretrained backbone at a
    # tenth of it, batch 32, 60 epochs divided by 10 at 40 and 50, weight
    # decay 1e-4. Common practice, not the paper's settings, which are not
    # published (docs/guide/benchmarks.md).
    "finegrained": Recipe(
        name="finegrained",
        learning_rate=0.01,
        weight_decay=1e-4,
        batch_size=32,
        epochs=60,
        milestones=(40, 50),
        reference_epochs=60,
        backbone_lr_scale=0.1,
    ),
}


def get_recipe(name="paper", **overrides):
    """Returns a named recipe with any field overridden.

    Args:
        name: A key of `RECIPES`: `"paper"`, `"cosine"`, `"imagenet"` or
            `"finegrained"`.
        **overrides: Any `Recipe` field, e.g. `epochs=30, batch_size=128`.
            `None` values are ignored, so command-line defaults can pass
            through.

    Returns:
        A `Recipe`.

    Example:

    >>> get_recipe("paper", epochs=30).scaled_milestones()
    (15, 22)
    """
    if name not in RECIPES:
        raise ValueError(f"Unknown recipe {name!r}. Valid recipes: {', '.join(sorted(RECIPES))}.")
    fields = {f.name for f in dataclasses.fields(Recipe)}
    unknown = set(overrides) - fields
    if unknown:
        raise ValueError(
            f"Unknown recipe fields {sorted(unknown)}. Valid fields: {sorted(fields)}."
        )
    overrides = {k: v for k, v in overrides.items() if v is not None}
    if "milestones" in overrides:
        overrides["milestones"] = tuple(overrides["milestones"])
    return dataclasses.replace(RECIPES[name], **overrides)


@keras.saving.register_keras_serializable(package="keras_crl")
class EpochSchedule(keras.optimizers.schedules.LearningRateSchedule):
    """A learning rate that changes once per epoch, as PyTorch's schedulers.

    Args:
        initial_learning_rate: Learning rate of epoch 0.
        steps_per_epoch: Optimizer steps in one epoch.
        schedule: `"step"`, `"cosine"` or `"constant"`.
        milestones: Epochs at which `"step"` multiplies the rate by `gamma`.
        gamma: The step factor.
        epochs: Length of the cosine annealing (`T_max`).

    Example:

    >>> lr = EpochSchedule(0.1, steps_per_epoch=10, milestones=(2, 3))
    >>> [round(float(lr(s)), 6) for s in (0, 19, 20, 30)]
    [0.1, 0.1, 0.01, 0.001]
    """

    def __init__(
        self,
        initial_learning_rate,
        steps_per_epoch,
        schedule="step",
        milestones=(),
        gamma=0.1,
        epochs=1,
    ):
        if schedule not in ("step", "cosine", "constant"):
            raise ValueError(
                "`schedule` must be 'step', 'cosine' or 'constant'. "
                f"Received: schedule={schedule!r}"
            )
        if steps_per_epoch < 1:
            raise ValueError(f"`steps_per_epoch` must be >= 1. Received: {steps_per_epoch}")
        self.initial_learning_rate = float(initial_learning_rate)
        self.steps_per_epoch = int(steps_per_epoch)
        self.schedule = schedule
        self.milestones = tuple(int(m) for m in milestones)
        self.gamma = float(gamma)
        self.epochs = int(epochs)

    def __call__(self, step):
        epoch = ops.floor_divide(ops.cast(step, "int32"), self.steps_per_epoch)
        epoch = ops.cast(epoch, "float32")
        if self.schedule == "cosine":
            progress = ops.minimum(epoch / max(self.epochs, 1), 1.0)
            return self.initial_learning_rate * 0.5 * (1.0 + ops.cos(math.pi * progress))
        rate = ops.convert_to_tensor(self.initial_learning_rate, "float32")
        if self.schedule == "step":
            for milestone in self.milestones:
                rate = ops.where(epoch >= milestone, rate * self.gamma, rate)
        return rate

    def get_config(self):
        return {
            "initial_learning_rate": self.initial_learning_rate,
            "steps_per_epoch": self.steps_per_epoch,
            "schedule": self.schedule,
            "milestones": list(self.milestones),
            "gamma": self.gamma,
            "epochs": self.epochs,
        }


@keras.saving.register_keras_serializable(package="keras_crl")
class TorchSGD(keras.optimizers.Optimizer):
    """SGD with PyTorch's update rule, for recipes written for PyTorch.

    ```
    g = grad + l2 * w            # coupled L2, on every parameter
    b = momentum * b + g         # b = g on the first step
    w = w - lr * (g + momentum * b if nesterov else b)
    ```

    With `backbone_lr_scale`, every variable outside `head_variables`
    steps with `backbone_lr_scale * lr`: PyTorch's parameter groups with
    their own learning rates (the momentum buffer is not scaled).

    Keras' `SGD` keeps `lr * grad` in its momentum and decays the weights
    apart from the gradient; after a learning-rate drop, or with weight
    decay, the two rules train differently.

    Args:
        learning_rate: A float or a `LearningRateSchedule`.
        momentum: Momentum factor.
        nesterov: Nesterov momentum.
        l2: The coefficient of the coupled L2 weight decay.
        backbone_lr_scale: The learning rate of the variables outside
            `head_variables`, as a fraction of `learning_rate`.
        head_variables: Paths (`variable.path`) of the variables that step
            with the full learning rate.
        name: Name of the optimizer.
        **kwargs: Other `keras.optimizers.Optimizer` arguments (e.g.
            `clipnorm`, `loss_scale_factor`); its decoupled `weight_decay`
            is refused to avoid decaying twice.

    Example:

    >>> optimizer = TorchSGD(0.1, momentum=0.9, l2=5e-4)
    """

    def __init__(
        self,
        learning_rate=0.01,
        momentum=0.0,
        nesterov=False,
        l2=0.0,
        backbone_lr_scale=1.0,
        head_variables=(),
        name="torch_sgd",
        **kwargs,
    ):
        if kwargs.get("weight_decay"):
            raise ValueError(
                "TorchSGD couples weight decay into the gradient: pass `l2`, not "
                f"`weight_decay`. Received: weight_decay={kwargs['weight_decay']}"
            )
        kwargs.pop("weight_decay", None)
        super().__init__(learning_rate=learning_rate, name=name, **kwargs)
        if momentum < 0:
            raise ValueError(f"`momentum` must be >= 0. Received: momentum={momentum}")
        if l2 < 0:
            raise ValueError(f"`l2` must be >= 0. Received: l2={l2}")
        self.momentum = float(momentum)
        self.nesterov = bool(nesterov)
        self.l2 = float(l2)
        if not backbone_lr_scale >= 0:
            raise ValueError(
                f"`backbone_lr_scale` must be >= 0. Received: backbone_lr_scale={backbone_lr_scale}"
            )
        self.backbone_lr_scale = float(backbone_lr_scale)
        self.head_variables = tuple(head_variables)

    def build(self, variables):
        if self.built:
            return
        super().build(variables)
        # One Python number per variable, known when the step is traced: the
        # same arithmetic on every backend.
        head = set(self.head_variables)
        self.lr_scales = [1.0 if v.path in head else self.backbone_lr_scale for v in variables]
        self.buffers = (
            [self.add_variable_from_reference(v, name="momentum_buffer") for v in variables]
            if self.momentum
            else []
        )

    def update_step(self, gradient, variable, learning_rate):
        learning_rate = ops.cast(learning_rate, variable.dtype)
        scale = self.lr_scales[self._get_variable_index(variable)]
        if scale != 1.0:
            learning_rate = learning_rate * scale
        gradient = ops.cast(gradient, variable.dtype)
        if self.l2:
            gradient = gradient + self.l2 * variable
        if self.momentum:
            buffer = self.buffers[self._get_variable_index(variable)]
            # PyTorch starts the buffer at the first gradient: the same as
            # starting from zeros without dampening.
            new_buffer = self.momentum * buffer + gradient
            self.assign(buffer, new_buffer)
            if self.nesterov:
                gradient = gradient + self.momentum * new_buffer
            else:
                gradient = new_buffer
        self.assign_sub(variable, learning_rate * gradient)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "momentum": self.momentum,
                "nesterov": self.nesterov,
                "l2": self.l2,
                "backbone_lr_scale": self.backbone_lr_scale,
                "head_variables": list(self.head_variables),
            }
        )
        return config


__all__ = [
    "RECIPES",
    "EpochSchedule",
    "Recipe",
    "TorchSGD",
    "get_recipe",
]
