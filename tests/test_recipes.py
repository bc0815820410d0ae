"""The recipes against PyTorch's own optimiser and schedulers."""

import keras
import numpy as np
import pytest
import torch

from keras_crl.models import get_model
from keras_crl.models import head_variables
from keras_crl.recipes import EpochSchedule
from keras_crl.recipes import TorchSGD
from keras_crl.recipes import get_recipe


def run_keras(optimizer, w0, targets, steps):
    w = keras.Variable(w0)
    for step in range(steps):
        # loss = 0.5 * |w - target_step|^2, gradient w - target_step
        grad = keras.ops.convert_to_tensor(w.numpy() - targets[step])
        optimizer.apply_gradients([(grad, w)])
    return w.numpy()


def run_torch(
    w0, targets, steps, lr, momentum, l2, nesterov, milestones, steps_per_epoch, cosine_epochs=None
):
    w = torch.nn.Parameter(torch.tensor(w0, dtype=torch.float64))
    opt = torch.optim.SGD([w], lr=lr, momentum=momentum, weight_decay=l2, nesterov=nesterov)
    if cosine_epochs:
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=cosine_epochs)
    else:
        sched = torch.optim.lr_scheduler.MultiStepLR(opt, milestones=list(milestones), gamma=0.1)
    for step in range(steps):
        opt.zero_grad()
        w.grad = w.detach() - torch.tensor(targets[step], dtype=torch.float64)
        opt.step()
        if (step + 1) % steps_per_epoch == 0:
            sched.step()
    return w.detach().numpy()


@pytest.mark.parametrize("nesterov", [False, True])
@pytest.mark.parametrize("schedule", ["step", "cosine"])
def test_torch_sgd_matches_pytorch(nesterov, schedule):
    rng = np.random.default_rng(0)
    w0 = rng.normal(size=(5,)).astype("float32")
    steps_per_epoch, epochs = 3, 6
    targets = rng.normal(size=(steps_per_epoch * epochs, 5)).astype("float32")
    milestones = (2, 4)
    lr = EpochSchedule(
        0.1, steps_per_epoch, schedule=schedule, milestones=milestones, epochs=epochs
    )
    ours = run_keras(
        TorchSGD(lr, momentum=0.9, nesterov=nesterov, l2=5e-2), w0, targets, len(targets)
    )
    theirs = run_torch(
        w0,
        targets,
        len(targets),
        0.1,
        0.9,
        5e-2,
        nesterov,
        milestones,
        steps_per_epoch,
        cosine_epochs=epochs if schedule == "cosine" else None,
    )
    np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-6)


def test_keras_sgd_differs_from_pytorch_which_is_why_torch_sgd_exists():
    rng = np.random.default_rng(1)
    w0 = rng.normal(size=(5,)).astype("float32")
    targets = rng.normal(size=(12, 5)).astype("float32")
    lr = EpochSchedule(0.1, 3, milestones=(2,))
    keras_sgd = run_keras(
        keras.optimizers.SGD(lr, momentum=0.9, weight_decay=5e-2), w0, targets, 12
    )
    theirs = run_torch(w0, targets, 12, 0.1, 0.9, 5e-2, False, (2,), 3)
    assert np.abs(keras_sgd - theirs).max() > 1e-3


def test_paper_recipe_and_scaled_milestones():
    paper = get_recipe("paper")
    assert (paper.learning_rate, paper.momentum, paper.weight_decay) == (0.1, 0.9, 5e-4)
    assert (paper.batch_size, paper.epochs, paper.scaled_milestones()) == (256, 300, (150, 225))
    assert get_recipe("paper", epochs=30).scaled_milestones() == (15, 22)
    assert get_recipe("paper", epochs=4).scaled_milestones() == (2, 3)
    cosine = get_recipe("cosine", learning_rate=0.05, batch_size=None)
    assert (cosine.schedule, cosine.learning_rate, cosine.batch_size) == ("cosine", 0.05, 128)


def test_schedule_values():
    lr = EpochSchedule(0.1, steps_per_epoch=10, milestones=(2, 3))
    values = [float(keras.ops.convert_to_numpy(lr(s))) for s in (0, 19, 20, 29, 30, 100)]
    np.testing.assert_allclose(values, [0.1, 0.1, 0.01, 0.01, 0.001, 0.001], rtol=1e-6)
    cos = EpochSchedule(0.1, steps_per_epoch=2, schedule="cosine", epochs=4)
    values = [float(keras.ops.convert_to_numpy(cos(s))) for s in (0, 2, 4, 8, 10)]
    np.testing.assert_allclose(values, [0.1, 0.0853553, 0.05, 0.0, 0.0], atol=1e-6)


def test_serialisation_round_trip():
    opt = TorchSGD(EpochSchedule(0.1, 5, milestones=(1,)), momentum=0.9, l2=1e-4, nesterov=True)
    restored = keras.optimizers.deserialize(keras.optimizers.serialize(opt))
    assert isinstance(restored, TorchSGD)
    assert (restored.momentum, restored.l2, restored.nesterov) == (0.9, 1e-4, True)
    assert restored.get_config() == opt.get_config()
    scaled = TorchSGD(0.1, backbone_lr_scale=0.1, head_variables=["logits/kernel"])
    restored = keras.optimizers.deserialize(keras.optimizers.serialize(scaled))
    assert (restored.backbone_lr_scale, restored.head_variables) == (0.1, ("logits/kernel",))


def one_step(model, recipe, start, gradients):
    """The change of each trainable variable after one step of `recipe`'s optimizer."""
    model.set_weights(start)
    before = [keras.ops.convert_to_numpy(v) for v in model.trainable_variables]
    optimizer = recipe.optimizer(steps_per_epoch=1, head_variables=head_variables(model))
    optimizer.apply_gradients(zip(gradients, model.trainable_variables))
    return [keras.ops.convert_to_numpy(v) - b for v, b in zip(model.trainable_variables, before)]


def test_backbone_steps_at_the_scaled_learning_rate():
    # The fine-grained recipe (lr 0.01, backbone 0.1 of it) against the same
    # recipe with the backbone at the full rate: same start, same gradients.
    model = get_model("small_cnn", num_classes=3, input_shape=(8, 8, 1))
    # From zeros the change is the step itself, with no rounding of w - step.
    start = [np.zeros_like(w) for w in model.get_weights()]
    rng = np.random.default_rng(0)
    gradients = [rng.normal(size=v.shape).astype("float32") for v in model.trainable_variables]
    recipe = get_recipe("finegrained")
    assert recipe.backbone_lr_scale == 0.1
    scaled = one_step(model, recipe, start, gradients)
    full = one_step(model, get_recipe("finegrained", backbone_lr_scale=1.0), start, gradients)
    head = set(head_variables(model))
    assert head == {"logits/kernel", "logits/bias"}
    for v, s, f in zip(model.trainable_variables, scaled, full):
        assert np.abs(f).max() > 0, v.path
        if v.path in head:
            np.testing.assert_array_equal(s, f, err_msg=v.path)
        else:
            # -0.001 * g against -0.01 * g, each rounded to float32 once.
            np.testing.assert_allclose(s, 0.1 * f, rtol=1e-6, err_msg=v.path)


@pytest.mark.parametrize(
    "call,match",
    [
        (lambda: get_recipe("adam"), "Valid recipes: cosine, finegrained, imagenet, paper"),
        (lambda: get_recipe("paper", lr=0.1), "Unknown recipe fields"),
        (lambda: EpochSchedule(0.1, 10, schedule="linear"), "schedule='linear'"),
        (lambda: TorchSGD(0.1, weight_decay=1e-4), "pass `l2`"),
        (lambda: TorchSGD(0.1, momentum=-1), "momentum=-1"),
        (lambda: TorchSGD(0.1, backbone_lr_scale=-0.1), "backbone_lr_scale=-0.1"),
    ],
)
def test_bad_arguments(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_training_gives_its_optimizer_the_head():
    from keras_crl import train
    from keras_crl.config import TrainConfig

    config = TrainConfig(recipe="finegrained")
    model = get_model("small_cnn", num_classes=3, input_shape=(8, 8, 1))
    trainer = train._compiled(config, config.resolved_recipe(), model, steps_per_epoch=1)
    assert trainer.optimizer.head_variables == ("logits/kernel", "logits/bias")
    assert trainer.optimizer.backbone_lr_scale == 0.1
