"""Mutation smoke: deliberate breakages that the tests must catch.

    python tests/mutants.py            every mutant (`make mutants`)
    python tests/mutants.py NAME ...   some of them; --list names them all

Each mutant replaces one exact piece of code in a copy of the project and
runs the tests that guard that promise (its guards), on one backend
(`None`: the cross-backend tests, which start their own processes). A mutant
is caught when every one of its guards has a failing test: a guard that
still passes with the promise broken guards nothing. A mutant whose code is
no longer found exactly once is stale: keep this list in step with the code.
A guard stops at its first failing test (tests/guard_plugin.py): the rest
of it cannot change the verdict.
Not part of `make test`: it reruns parts of the suite once per mutant.
"""

import argparse
import dataclasses
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ElementTree
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ON_HOST = "tests/test_losses.py::TestEagerChecksOnTheHostOnly::"
GPU_CHECK = "tests/test_gpu_check.py::"
STREAM = "tests/test_stream.py::"
DATA = "tests/test_data.py::"
JIT = "tests/test_jit.py::"
LOADERS = "tests/test_benchmark_loaders.py::"
ZOO = "tests/test_models.py::"
PROMISES = "tests/test_cli_promises.py::"
BENCH = "tests/test_benchmark_training.py::"
FACTORY = "tests/test_loss_factory.py::"
RAY = "tests/test_ray_executor.py::"


@dataclasses.dataclass(frozen=True)
class Mutant:
    name: str
    file: str
    old: str
    new: str
    guards: tuple
    backend: str | None = "torch"


MUTANTS = [
    Mutant(
        "CRL from logits via log(1 - softmax), integer labels",
        "keras_crl/losses.py",
        "losses = _ratio_loss(log_ratio, alpha, beta, epsilon)",
        "losses = _ratio_loss(log_ratio, 0.0, 0.0, epsilon) + beta * ops.log(alpha + 1.0 - "
        "ops.minimum(ops.sum(ops.where(is_label, ops.softmax(y_pred), 0.0), axis=-1), "
        "1.0 - epsilon))",
        (
            "tests/test_loss_properties.py",
            "tests/test_losses.py::TestNumerics::test_float32_matches_float64_oracle",
            "tests/test_losses.py::TestNumerics::test_value_and_gradient_match_formula_in_float32",
        ),
        # On torch the native kernel (_torch_kernels) runs instead.
        backend="jax",
    ),
    Mutant(
        "CRL from logits via 1 - softmax, one-hot targets",
        "keras_crl/losses.py",
        "        probs, rest = _competing_mass(exps, total)",
        "        probs, rest = exps / total, 1.0 - exps / total",
        (
            "tests/test_loss_properties.py",
            "tests/test_losses.py::TestNumerics::test_float32_matches_float64_oracle",
            "tests/test_losses.py::TestNumerics::test_soft_targets_precise_near_one",
        ),
    ),
    Mutant(
        "probabilities via 1 - p_y, integer labels",
        "keras_crl/losses.py",
        "label_mass / total, competing / total, alpha, beta, epsilon",
        "label_mass / total, 1.0 - label_mass / total, alpha, beta, epsilon",
        (
            "tests/test_loss_properties.py",
            "tests/test_losses.py::TestNumerics::test_float32_matches_float64_oracle",
        ),
    ),
    Mutant(
        "probabilities via 1 - p, one-hot targets",
        "keras_crl/losses.py",
        "    probs, rest = _competing_mass(probs, total)",
        "    probs, rest = probs / total, 1.0 - probs / total",
        (
            "tests/test_loss_properties.py",
            "tests/test_losses.py::TestNumerics::test_float32_matches_float64_oracle",
        ),
    ),
    Mutant(
        "epsilon clamp removed, logits and integer labels",
        "keras_crl/losses.py",
        "    log_ratio = ops.maximum(log_ratio, math.log(epsilon) - math.log1p(-epsilon))",
        "    log_ratio = log_ratio",
        (
            "tests/test_loss_properties.py",
            "tests/test_losses.py::TestNumerics::test_clamp_stops_the_push_past_one_minus_epsilon",
        ),
        # On torch the native kernel (_torch_kernels) runs instead.
        backend="jax",
    ),
    Mutant(
        "native torch kernel: epsilon clamp removed from the value",
        "keras_crl/_torch_kernels.py",
        "        d = torch.clamp(log_ratio, min=floor)",
        "        d = log_ratio",
        (
            "tests/test_loss_properties.py",
            "tests/test_losses.py::TestNumerics::test_clamp_stops_the_push_past_one_minus_epsilon",
        ),
    ),
    Mutant(
        "epsilon clamp removed from the gradient, logits and one-hot targets",
        "keras_crl/losses.py",
        "        u = ops.where(log_probs < log_one_minus_epsilon, targets, 0.0)",
        "        u = targets",
        (
            "tests/test_loss_properties.py",
            "tests/test_losses.py::TestNumerics::test_clamp_stops_the_push_past_one_minus_epsilon",
        ),
    ),
    Mutant(
        "epsilon clamp removed from the gradient, logits and integer labels",
        "keras_crl/losses.py",
        "        scale = ops.where(active, 1.0 + beta * label_p / (alpha + rest), 0.0)",
        "        scale = 1.0 + beta * label_p / (alpha + rest)",
        (
            "tests/test_loss_properties.py",
            "tests/test_losses.py::TestNumerics::test_clamp_stops_the_push_past_one_minus_epsilon",
        ),
        # On torch the native kernel (_torch_kernels) runs instead.
        backend="jax",
    ),
    Mutant(
        "closed-form gradient with p_y - 1 formed in float32, integer labels",
        "keras_crl/losses.py",
        "            delta = ops.where(is_label, -ops.expand_dims(rest, -1), probs)",
        "            delta = ops.where(is_label, probs - 1.0, probs)",
        (
            "tests/test_loss_properties.py",
            "tests/test_losses.py::TestNumerics::test_float32_matches_float64_oracle",
        ),
        # On torch the native kernel (_torch_kernels) runs instead.
        backend="jax",
    ),
    Mutant(
        "native torch kernel: gradient with p_y - 1 formed in float32",
        "keras_crl/_torch_kernels.py",
        "        grad.scatter_(-1, index, -rest.unsqueeze(-1))",
        "        grad.scatter_add_(-1, index, torch.full_like(rest.unsqueeze(-1), -1.0))",
        (
            "tests/test_loss_properties.py",
            "tests/test_losses.py::TestNumerics::test_float32_matches_float64_oracle",
            "tests/test_losses.py::TestNativeTorchKernel::test_same_bits_as_keras_ops",
        ),
    ),
    Mutant(
        "native torch kernel: epsilon clamp removed from the gradient",
        "keras_crl/_torch_kernels.py",
        "        scale = torch.where(log_ratio > floor, scale, 0.0)",
        "        scale = scale",
        (
            "tests/test_loss_properties.py",
            "tests/test_losses.py::TestNumerics::test_clamp_stops_the_push_past_one_minus_epsilon",
        ),
    ),
    Mutant(
        "native torch kernel switched off",
        "keras_crl/losses.py",
        'if keras.backend.backend() == "torch":\n        from keras_crl import _torch_kernels',
        "if False:\n        from keras_crl import _torch_kernels",
        ("tests/test_losses.py::TestNativeTorchKernel::test_the_native_kernel_runs",),
    ),
    Mutant(
        "closed-form gradient with the others' sum as total minus own, soft targets",
        "keras_crl/losses.py",
        "            return (probs * _sum_of_others(own) - own * rest)",
        "            return (probs * (ops.sum(own, axis=-1, keepdims=True) - own) - own * rest)",
        (
            "tests/test_loss_properties.py",
            "tests/test_losses.py::TestValues::test_soft_targets_are_the_expectation",
        ),
    ),
    Mutant(
        "epsilon clip removed, probabilities",
        "keras_crl/losses.py",
        "    p, rest = ops.clip(p, epsilon, 1.0 - epsilon), ops.clip(rest, epsilon, 1.0 - epsilon)",
        "    p, rest = p, rest",
        (
            "tests/test_loss_properties.py",
            "tests/test_losses.py::TestNumerics::test_probability_clamp_at_both_ends",
            "tests/test_losses.py::TestValues::test_probabilities_match_authors_code",
        ),
    ),
    Mutant(
        "label-range check removed",
        "keras_crl/losses.py",
        "    if bad.any():",
        "    if False:",
        (
            "tests/test_losses.py::TestBadInput::test_label_out_of_range",
            "tests/test_losses.py::TestBadInput::test_ignore_class_is_not_out_of_range",
        ),
    ),
    Mutant(
        "16-bit inputs not computed in float32",
        "keras_crl/losses.py",
        "    if _dtype_bits(out_dtype) < 32:",
        "    if False:",
        (
            "tests/test_loss_properties.py",
            "tests/test_losses.py::TestNumerics::test_16_bit_probabilities_computed_in_float32",
            "tests/test_losses.py::TestNumerics::test_integer_labels_exact_for_large_k_in_bfloat16",
        ),
    ),
    Mutant(
        "resume ignores the checkpoint",
        "keras_crl/train.py",
        "    if not (config.resume and state_path.exists()):",
        "    if True:",
        (
            "tests/test_crash_resume.py",
            "tests/test_train.py::test_resume_continues_exactly",
            "tests/test_cli.py::test_train_with_overrides_and_resume",
        ),
    ),
    Mutant(
        "resume restarts from the initial weights",
        "keras_crl/train.py",
        "    if resume.resuming:\n"
        '        run_folder.load_state(trainer, run_dir / "state.npz", rank)\n',
        "",
        ("tests/test_crash_resume.py", "tests/test_train.py::test_resume_continues_exactly"),
    ),
    Mutant(
        "resume inside an epoch: metric totals not restored",
        "keras_crl/train.py",
        "RestoreEpochState(state_path, resume.epoch, parallel.rank()) if resume.step else None",
        "None",
        ("tests/test_crash_resume.py",),
    ),
    Mutant(
        "resume inside an epoch: the epoch restarts from its first batch",
        "keras_crl/train.py",
        "data = data_lib.EpochRemainder(batches, resume.step)",
        "data = batches",
        ("tests/test_crash_resume.py",),
    ),
    Mutant(
        "resume inside an epoch: replays the last step done",
        "keras_crl/train.py",
        "data = data_lib.EpochRemainder(batches, resume.step)",
        "data = data_lib.EpochRemainder(batches, resume.step - 1)",
        ("tests/test_crash_resume.py",),
    ),
    Mutant(
        "checkpoint written in place",
        "keras_crl/run_folder.py",
        '    tmp = Path(f"{path}.tmp")\n    with open(tmp, "wb") as f:\n        np.savez(',
        '    tmp = path\n    with open(tmp, "wb") as f:\n        np.savez(',
        (
            "tests/test_run_folder.py::test_a_kill_during_a_save_leaves_the_previous_checkpoint",
            "tests/test_crash_resume.py",
        ),
    ),
    Mutant(
        "keep-last-k keeps one too many",
        "keras_crl/run_folder.py",
        "[: -(keep - 1) or None]",
        "[: -keep or None]",
        (
            "tests/test_run_folder.py::test_keep_the_last_k_checkpoints",
            "tests/test_crash_resume.py",
        ),
    ),
    Mutant(
        "two processes resume with the chief's batch-norm statistics",
        "keras_crl/run_folder.py",
        '        if f"r{rank}_n0" in state.files:',
        "        if False:",
        ("tests/cross_backend/test_resume_two_processes.py",),
        backend=None,
    ),
    Mutant(
        "data order not seeded by epoch",
        "keras_crl/data/pipeline.py",
        "rng = np.random.default_rng([self.seed, epoch, _SHUFFLE_TAG])",
        "rng = np.random.default_rng([self.seed, 0, _SHUFFLE_TAG])",
        ("tests/test_data.py::test_pipeline_epochs_differ_and_cover_data",),
    ),
    Mutant(
        "L2 decoupled in TorchSGD",
        "keras_crl/recipes.py",
        "        if self.l2:\n            gradient = gradient + self.l2 * variable\n",
        "        if self.l2:\n"
        "            self.assign_sub(variable, learning_rate * self.l2 * variable)\n",
        ("tests/test_recipes.py",),
    ),
    Mutant(
        "NumPy initialisation skipped",
        "keras_crl/reproducible.py",
        "    owners = _variable_initializers(model)\n",
        "    return model\n    owners = _variable_initializers(model)\n",
        ("tests/cross_backend/test_consistency.py::test_initial_weights_are_bit_identical",),
        backend=None,
    ),
    Mutant(
        "replica averaging removed",
        "keras_crl/parallel/_torch.py",
        "        dist.all_reduce(tensor)\n        return tensor.numpy() / dist.get_world_size()",
        "        return tensor.numpy()",
        (
            "tests/cross_backend/test_multi_device.py::test_two_torch_processes_step_equals_one",
            "tests/cross_backend/test_multi_device.py::test_two_torch_processes_average_batch_norm_statistics",
            "tests/cross_backend/test_multi_device.py::test_train_command_with_two_torch_processes",
        ),
        backend=None,
    ),
    Mutant(
        "each torch process trains on the whole batch",
        "keras_crl/parallel/sharding.py",
        "        return tuple(array[part] for array in self.pipeline[index])",
        "        return self.pipeline[index]",
        (
            "tests/cross_backend/test_multi_device.py::test_two_torch_processes_train_on_their_shares",
            "tests/cross_backend/test_multi_device.py::test_two_torch_processes_average_batch_norm_statistics",
            # Not test_train_command_with_two_torch_processes: it sees the shares only
            # through a moving variance 1e-5 lower, which the mutant sometimes passes.
        ),
        backend=None,
    ),
    Mutant(
        "JAX never splits the batch",
        "keras_crl/parallel/_jax.py",
        "    elif devices == 1:\n        yield\n        return\n",
        "    elif True:\n        yield\n        return\n",
        ("tests/cross_backend/test_multi_device.py::test_two_devices_split_the_batch[jax]",),
        backend=None,
    ),
    Mutant(
        "TensorFlow never splits the batch",
        "keras_crl/parallel/_tensorflow.py",
        "    if devices == 1:\n        yield\n        return\n",
        "    if True:\n        yield\n        return\n",
        ("tests/cross_backend/test_multi_device.py::test_two_devices_split_the_batch[tensorflow]",),
        backend=None,
    ),
    Mutant(
        "torch gradients summed, not averaged",
        "keras_crl/parallel/_torch.py",
        '        object.__setattr__(self, "_ddp", DistributedDataParallel(model))\n',
        '        object.__setattr__(self, "_ddp", DistributedDataParallel(model))\n'
        "        import torch.distributed as dist\n"
        "        self._ddp.register_comm_hook(None, lambda _, bucket: dist.all_reduce(\n"
        "            bucket.buffer(), async_op=True).get_future().then(lambda f: f.value()[0]))\n",
        ("tests/cross_backend/test_multi_device.py::test_two_torch_processes_step_equals_one",),
        backend=None,
    ),
    Mutant(
        "TensorFlow loss not scaled by the replicas",
        "keras_crl/parallel/_tensorflow.py",
        "    with _mirrored_strategy(tuple(available[:devices])).scope():\n",
        "    import keras.src.losses.loss as loss_module\n"
        "    loss_module.scale_loss_for_distribution = lambda value: value\n"
        "    with _mirrored_strategy(tuple(available[:devices])).scope():\n",
        (
            "tests/cross_backend/test_multi_device.py::test_two_devices_step_equals_one",
            "tests/cross_backend/test_multi_device.py::test_train_command_with_two_devices_equals_one",
        ),
        backend=None,
    ),
    Mutant(
        "TensorFlow batch norm per replica",
        "keras_crl/parallel/_tensorflow.py",
        "                layer.synchronized = True\n",
        "                layer.synchronized = False\n",
        (
            "tests/cross_backend/test_multi_device.py::test_two_devices_step_equals_one",
            "tests/cross_backend/test_multi_device.py::test_train_command_with_two_devices_equals_one",
        ),
        backend=None,
    ),
    Mutant(
        "last partial batch kept on several devices",
        "keras_crl/train.py",
        "drop_remainder=parallel.splits_batches(config.devices),",
        "drop_remainder=False,",
        (
            "tests/cross_backend/test_multi_device.py::"
            "test_two_devices_drop_in_training_and_pad_in_evaluation",
        ),
        backend=None,
    ),
    Mutant(
        "evaluation on several devices drops the last partial batch",
        "keras_crl/train.py",
        "    if not parallel.splits_batches(config.devices):\n        return batches\n",
        "    if not parallel.splits_batches(config.devices):\n        return batches\n"
        "    return ds.pipeline(split, batch_size, data_format=config.data_format, "
        "drop_remainder=True)\n",
        (
            "tests/cross_backend/test_multi_device.py::"
            "test_two_devices_drop_in_training_and_pad_in_evaluation",
            "tests/cross_backend/test_multi_device.py::test_train_command_with_two_devices_equals_one",
            "tests/cross_backend/test_multi_host.py::test_two_processes_train_as_one",
        ),
        backend=None,
    ),
    Mutant(
        "padding counted in the accuracy: plain metrics ignore the sample weights",
        "keras_crl/train.py",
        "        weighted_metrics=[",
        "        metrics=[",
        (
            "tests/cross_backend/test_multi_device.py::"
            "test_two_devices_drop_in_training_and_pad_in_evaluation",
        ),
        backend=None,
    ),
    Mutant(
        "test loss averaged over padded batches",
        "keras_crl/train.py",
        '        "test_loss": float(test["loss"]) * _loss_scale(trainer, test_data),',
        '        "test_loss": float(test["loss"]),',
        (
            "tests/cross_backend/test_multi_device.py::"
            "test_two_devices_drop_in_training_and_pad_in_evaluation",
        ),
        backend=None,
    ),
    Mutant(
        "mixed precision ignored",
        "keras_crl/train.py",
        "keras.config.set_dtype_policy(config.precision)",
        'keras.config.set_dtype_policy("float32")',
        ("tests/test_train.py::test_mixed_precision_computes_in_16_bits_with_a_float32_loss",),
    ),
    Mutant(
        "TF32 left on, TensorFlow",
        "keras_crl/reproducible.py",
        "        tf.config.experimental.enable_tensor_float_32_execution(False)\n",
        "",
        ("tests/test_reproducible.py::test_tf32_off_tensorflow",),
        backend="tensorflow",
    ),
    Mutant(
        "TF32 left on, torch matmul",
        "keras_crl/reproducible.py",
        "        torch.backends.cuda.matmul.allow_tf32 = False\n",
        "",
        ("tests/test_reproducible.py::test_tf32_off_torch",),
    ),
    Mutant(
        "TF32 left on, torch cuDNN",
        "keras_crl/reproducible.py",
        "        torch.backends.cudnn.allow_tf32 = False\n",
        "",
        ("tests/test_reproducible.py::test_tf32_off_torch",),
    ),
    Mutant(
        "TF32 left on, JAX",
        "keras_crl/reproducible.py",
        '        jax.config.update("jax_default_matmul_precision", "highest")\n',
        "",
        ("tests/test_reproducible.py::test_tf32_off_jax",),
        backend="jax",
    ),
    Mutant(
        "every torch tensor taken for a CPU tensor",
        "keras_crl/losses.py",
        '        return getattr(device, "type", None) == "cpu"',
        "        return True",
        (
            f"{ON_HOST}test_accelerator_tensors_are_not",
            f"{ON_HOST}test_torch_tensors_off_the_cpu_are_never_read",
        ),
    ),
    Mutant(
        "every TensorFlow tensor taken for a CPU tensor",
        "keras_crl/losses.py",
        '        return tf.DeviceSpec.from_string(device).device_type == "CPU"',
        "        return True",
        (f"{ON_HOST}test_accelerator_tensors_are_not",),
        backend="tensorflow",
    ),
    Mutant(
        "every JAX array taken for a CPU array",
        "keras_crl/losses.py",
        '        return bool(found) and all(d.platform == "cpu" for d in found)',
        "        return True",
        (f"{ON_HOST}test_accelerator_tensors_are_not",),
        backend="jax",
    ),
    Mutant(
        "no torch tensor taken for a CPU tensor",
        "keras_crl/losses.py",
        '        return getattr(device, "type", None) == "cpu"',
        "        return False",
        (
            f"{ON_HOST}test_cpu_tensors_are_on_the_host",
            "tests/test_losses.py::TestBadInput::test_label_out_of_range",
            "tests/test_losses.py::TestBadInput::test_logits_passed_as_probabilities_warn",
        ),
    ),
    Mutant(
        "label check reads labels on any device",
        "keras_crl/losses.py",
        "    if num_classes is None or not _is_eager(labels) or not _on_host(labels):",
        "    if num_classes is None or not _is_eager(labels):",
        (
            f"{ON_HOST}test_off_the_host_nothing_is_read_back",
            f"{ON_HOST}test_torch_tensors_off_the_cpu_are_never_read",
        ),
    ),
    Mutant(
        "probabilities warning reads predictions on any device",
        "keras_crl/losses.py",
        "    if not _is_eager(y_pred) or not _on_host(y_pred) or _size(y_pred) == 0:",
        "    if not _is_eager(y_pred) or _size(y_pred) == 0:",
        (
            f"{ON_HOST}test_off_the_host_nothing_is_read_back",
            f"{ON_HOST}test_torch_tensors_off_the_cpu_are_never_read",
        ),
    ),
    Mutant(
        "BatchPipeline ignores num_classes",
        "keras_crl/data/pipeline.py",
        '        check_labels(y, num_classes, where="BatchPipeline y")\n',
        "        pass\n",
        (f"{ON_HOST}test_pipeline_checks_labels_on_the_host",),
    ),
    Mutant(
        "GPU check trains in float32",
        "benchmarks/gpu_check.sh",
        '"precision": "mixed_bfloat16"',
        '"precision": "float32"',
        (f"{GPU_CHECK}test_each_backend_trained_resnet_settings_in_bf16_with_jit",),
    ),
    Mutant(
        "GPU check never compiles the train step",
        "benchmarks/gpu_check.sh",
        "    tensorflow) jit=true deterministic=false ;;\n"
        "    torch) jit=false deterministic=true ;;\n"
        "    *) jit=true deterministic=true ;;\n",
        "    tensorflow) jit=false deterministic=false ;;\n"
        "    torch) jit=false deterministic=true ;;\n"
        "    *) jit=false deterministic=true ;;\n",
        (f"{GPU_CHECK}test_each_backend_trained_resnet_settings_in_bf16_with_jit",),
    ),
    Mutant(
        "GPU check asks TensorFlow for XLA under op determinism",
        "benchmarks/gpu_check.sh",
        "    tensorflow) jit=true deterministic=false ;;",
        "    tensorflow) jit=true deterministic=true ;;",
        (f"{GPU_CHECK}test_dry_run_passes_every_step",),
    ),
    Mutant(
        "GPU check runs every backend's tests on torch",
        "benchmarks/gpu_check.sh",
        '        KERAS_BACKEND=$backend run_step "tests-$backend"',
        '        KERAS_BACKEND=torch run_step "tests-$backend"',
        (f"{GPU_CHECK}test_each_backend_ran_its_own_tests",),
    ),
    Mutant(
        "GPU check summary drops the agreement",
        "benchmarks/gpu_check.sh",
        "    for backend in trained[1:]:",
        "    for backend in trained[1:1]:",
        (f"{GPU_CHECK}test_summary_holds_speed_and_agreement",),
    ),
    Mutant(
        "GPU check forgets its steps' results",
        "benchmarks/gpu_check.sh",
        '    printf \'%s\\t%s\\t%s\\n\' "$name" "$status" "$((SECONDS - start))" '
        '>>"$WORK/steps.tsv"\n',
        "",
        (f"{GPU_CHECK}test_dry_run_passes_every_step",),
    ),
    Mutant(
        "TensorFlow --jit on silently runs without XLA: op determinism on whatever the config",
        "keras_crl/train.py",
        "    make_deterministic(config.seed, ops=config.deterministic)\n",
        "    make_deterministic(config.seed)\n",
        (
            f"{JIT}test_jit_on_runs_xla_on_tensorflow",
            f"{JIT}test_a_process_that_ran_deterministic_can_run_xla",
        ),
        backend="tensorflow",
    ),
    Mutant(
        "TensorFlow --jit on under op determinism not refused",
        "keras_crl/config.py",
        '    if backend == "tensorflow" and deterministic:',
        '    if backend == "tensorflow" and deterministic and False:',
        (f"{JIT}test_jit_on_under_determinism_is_refused_on_tensorflow",),
        backend="tensorflow",
    ),
    Mutant(
        "torch --jit on compiled: torch.compile recompiles the step layer by layer",
        "keras_crl/config.py",
        '    if backend == "torch":\n        raise ConfigError(',
        '    if backend == "torch" and False:\n        raise ConfigError(',
        (f"{JIT}test_the_jit_rule",),
        backend="jax",
    ),
    Mutant(
        "config.json says the step compiled when Keras turned jit off",
        "keras_crl/train.py",
        '    return {"jit": bool(trainer.jit_compile),',
        '    return {"jit": True,',
        (f"{JIT}test_a_process_that_ran_deterministic_can_run_xla",),
        backend="tensorflow",
    ),
    Mutant(
        "streaming folder decodes everything into memory",
        "keras_crl/data/stream.py",
        "        self.epoch = initial_epoch\n",
        "        self.epoch = initial_epoch\n"
        "        self._decoded = [self.load(f, np.random.default_rng(0)) for f in self.files]\n",
        (f"{STREAM}test_memory_is_bounded_by_the_prefetch_window",),
    ),
    Mutant(
        "streaming augmentation not keyed by epoch",
        "keras_crl/data/stream.py",
        "default_rng([self.seed, epoch, _AUGMENT_TAG, position])",
        "default_rng([self.seed, 0, _AUGMENT_TAG, position])",
        (f"{STREAM}TestDeterminism::test_epochs_differ_in_order_and_in_augmentation",),
    ),
    Mutant(
        "streaming augmentation keyed by the row of the shard's batch",
        "keras_crl/data/stream.py",
        "default_rng([self.seed, epoch, _AUGMENT_TAG, position])",
        "default_rng([self.seed, epoch, _AUGMENT_TAG, row])",
        (f"{STREAM}TestDeterminism::test_shard_reads_only_its_slice_of_the_global_batch",),
    ),
    Mutant(
        "streaming shard ignored",
        "keras_crl/data/stream.py",
        "        start += self.shard_index * share\n",
        "",
        (f"{STREAM}TestDeterminism::test_shard_reads_only_its_slice_of_the_global_batch",),
    ),
    Mutant(
        "random resized crop placed past the image's edge",
        "keras_crl/data/augment.py",
        "            left = int(rng.integers(0, width - w + 1))\n",
        "            left = int(rng.integers(0, width - w + 2))\n",
        (f"{STREAM}TestListing::test_random_resized_crop_box_stays_inside",),
    ),
    # The data tests below are backend-independent (once_per_suite): they run
    # under JAX only.
    Mutant(
        "a data set's own augmentation ignored by its pipeline",
        "keras_crl/data/dataset.py",
        "            **self.augmentation,\n",
        "",
        (
            f"{DATA}test_dataset_pipeline_gives_the_batches_train_built_before",
            f"{DATA}test_dataset_pipeline_options_override_the_data_sets",
        ),
        backend="jax",
    ),
    Mutant(
        "BatchPipeline shard ignored",
        "keras_crl/data/pipeline.py",
        "            x, idx = x[part], idx[part]\n",
        "            pass\n",
        (f"{DATA}test_dataset_pipeline_shard_is_the_slice_shard_batches_cut",),
        backend="jax",
    ),
    Mutant(
        "numpy_initialise alias without its warning",
        "keras_crl/reproducible.py",
        "        DeprecationWarning,\n",
        "        UserWarning,\n",
        ("tests/test_reproducible.py::test_numpy_initialise_is_a_deprecated_alias",),
        backend="jax",
    ),
    Mutant(
        "corrupt image error without its path",
        "keras_crl/data/folder.py",
        'f"Corrupt or truncated image {file}: {type(error).__name__}: {error}"',
        'f"Corrupt or truncated image: {type(error).__name__}: {error}"',
        (
            f"{STREAM}test_corrupt_file_mid_stream_names_its_path",
            f"{STREAM}test_cli_stops_on_a_corrupt_file_with_one_line",
        ),
    ),
    Mutant(
        "each process feeds the whole global batch",
        "keras_crl/parallel/sharding.py",
        "    return ShardBatches(pipeline, process.index, process.count)",
        "    return pipeline",
        (
            "tests/cross_backend/test_multi_host.py::"
            "test_each_process_feeds_its_half_of_every_global_batch",
        ),
        backend=None,
    ),
    Mutant(
        "every process writes the run folder",
        "keras_crl/parallel/__init__.py",
        "    return this_process().chief",
        "    return True",
        ("tests/cross_backend/test_multi_host.py::test_only_the_chief_writes_the_run_folder",),
        backend=None,
    ),
    Mutant(
        "the cluster timeout not applied",
        "keras_crl/parallel/_jax.py",
        "    with deadline(cluster.timeout, message):",
        "    with deadline(cluster.timeout + 300, message):",
        (
            "tests/cross_backend/test_multi_host.py::"
            "test_a_missing_coordinator_or_process_fails_in_time_naming_the_address",
        ),
        backend=None,
    ),
    Mutant(
        "TensorFlow processes rebatch and shard their own shares again",
        "keras_crl/parallel/_tensorflow.py",
        "        def experimental_distribute_dataset(self, dataset, options=None):\n"
        "            return self.distribute_datasets_from_function(lambda _: dataset, options)\n",
        "",
        ("tests/cross_backend/test_multi_host.py::test_two_processes_train_as_one[tensorflow]",),
        backend=None,
    ),
    Mutant(
        "TensorFlow processes left waiting inside TensorFlow for a missing one",
        "keras_crl/parallel/_tensorflow.py",
        "    _meet(cluster, message)\n",
        "    pass\n",
        (
            "tests/cross_backend/test_multi_host.py::"
            "test_a_missing_coordinator_or_process_fails_in_time_naming_the_address[tensorflow]",
        ),
        backend=None,
    ),
    Mutant(
        "TensorFlow processes checkpoint inside epochs",
        "keras_crl/parallel/_tensorflow.py",
        "    if not STATE.tf_strategy or not (",
        "    if True or not (",
        ("tests/test_cli.py::test_tensorflow_processes_checkpoint_at_epoch_ends_only",),
    ),
    Mutant(
        "TensorFlow processes keep the 10-minute checkpoint default",
        "keras_crl/cli/commands.py",
        ' == "tensorflow" and args.checkpoint_every is None:',
        " == 'tensorflow' and False:",
        ("tests/cross_backend/test_multi_host.py::test_two_processes_train_as_one[tensorflow]",),
        backend=None,
    ),
    Mutant(
        "the user-loss check runs before --devices splits the CPU",
        "keras_crl/config.py",
        "    _check_dataset_options(config)\n",
        "    _check_dataset_options(config)\n    from keras_crl.loss_factory import check_loss\n"
        "    check_loss(config_loss(config), config.loss)\n",
        ("tests/cross_backend/test_multi_device.py::test_two_devices_split_the_batch[tensorflow]",),
        backend=None,
    ),
    Mutant(
        "OneHotTargets takes predictions given as a list for a tensor",
        "keras_crl/loss_factory.py",
        "        y_pred = keras.ops.convert_to_tensor(y_pred)\n        labels = keras.ops.cast(",
        "        labels = keras.ops.cast(",
        ("tests/test_docstrings.py::test_docstring_examples[keras_crl.loss_factory]",),
    ),
    Mutant(
        "a paused probe outlives its killed torchrun",
        "tests/train_probe.py",
        "    while os.getppid() == parent and time.time() < deadline:",
        "    while time.time() < deadline:",
        (
            "tests/cross_backend/test_resume_two_processes.py::"
            "test_two_processes_killed_inside_an_epoch_resume_exactly",
        ),
        backend=None,
    ),
    Mutant(
        "torch nodes started each on its own",
        "keras_crl/cli/commands.py",
        '    if cluster is None:\n        where = ["--standalone"]',
        '    if True:\n        where = ["--standalone"]',
        (
            "tests/cross_backend/test_multi_host.py::"
            "test_each_process_feeds_its_half_of_every_global_batch",
            "tests/cross_backend/test_multi_host.py::test_only_the_chief_writes_the_run_folder",
        ),
        backend=None,
    ),
    Mutant(
        "keras-hub backbone ends in a softmax, not logits",
        "keras_crl/models/applications.py",
        "    outputs = logits_head(backbone(inputs), num_classes, data_format=data_format, "
        "dropout=dropout)",
        "    outputs = keras.layers.Softmax()(logits_head(backbone(inputs), num_classes, "
        "data_format=data_format, dropout=dropout))",
        (f"{ZOO}test_keras_hub_zoo_names_resnets_with_a_logits_head",),
    ),
    Mutant(
        "keras-hub zoo builds every depth from basic blocks",
        "keras_crl/models/__init__.py",
        "            block_type=block_type,",
        '            block_type="basic_block",',
        (f"{ZOO}test_keras_hub_zoo_names_resnets_with_a_logits_head",),
    ),
    Mutant(
        "keras-hub backbone ignores data_format",
        "keras_crl/models/applications.py",
        "            image_shape=tuple(input_shape),\n            data_format=data_format,\n",
        "            image_shape=tuple(input_shape),\n",
        (f"{ZOO}test_keras_hub_backbone_trains_with_crl",),
    ),
    Mutant(
        "keras-hub example trains with cross-entropy",
        "examples/keras_hub_backbone.py",
        "    loss=CompetingRatioLoss(beta=0.25, from_logits=True),",
        "    loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),",
        ("tests/test_examples.py::test_keras_hub_backbone",),
    ),
    Mutant(
        "user losses not checked before the study starts",
        "keras_crl/study/settings.py",
        "        check_loss(config_loss(TrainConfig(**v.train_fields())), v.spec)",
        "        config_loss(TrainConfig(**v.train_fields()))",
        ("tests/test_study.py::test_user_losses_are_checked_before_any_run",),
    ),
    Mutant(
        "user losses built without from_logits",
        "keras_crl/loss_factory.py",
        '        options.setdefault("from_logits", True)',
        "        pass",
        (
            "tests/test_study.py::test_user_losses_are_checked_before_any_run",
            "tests/test_study.py::test_a_user_loss_trains",
        ),
    ),
    Mutant(
        "a missing package named by its module, not its pip name",
        "keras_crl/_optional.py",
        "        package = _PACKAGES.get(top, top)",
        "        package = top",
        ("tests/test_optional.py::test_a_missing_package_names_itself_and_its_extra",),
        backend="jax",
    ),
    Mutant(
        "run plots without matplotlib stop the run",
        "keras_crl/run_folder.py",
        '        warnings.warn(f"{missing}; no loss.png or accuracy.png written", stacklevel=2)',
        "        raise missing",
        ("tests/test_optional.py::test_run_plots_are_skipped_with_one_warning_without_matplotlib",),
        backend="jax",
    ),
    Mutant(
        "a missing optional package taken for a crash, not a user error",
        "keras_crl/config.py",
        "    MissingOptionalDependency,\n)",
        ")",
        (
            "tests/test_optional.py::test_the_demo_without_scikit_learn_is_one_line_naming_the_extra",
        ),
        backend="jax",
    ),
    Mutant(
        "head-to-head compares every loss with CE instead of the authors' CRL",
        "keras_crl/study/stats.py",
        "[(AUTHORS, v) for v in settings.variants if v not in (AUTHORS, BASELINE)],",
        "[(v, BASELINE) for v in settings.variants if v not in (AUTHORS, BASELINE)],",
        ("tests/test_study.py::test_report_states_what_known_numbers_support",),
    ),
    Mutant(
        "CUB ignores train_test_split.txt (a random split)",
        "keras_crl/data/cub200.py",
        '        files, labels = splits[flag == "1"]',
        "        files, labels = splits[bool(np.random.default_rng(image_id).integers(2))]",
        (
            f"{LOADERS}test_cub_official_split_labels_and_class_order",
            f"{LOADERS}test_cub_stream_lists_the_same_split",
        ),
        # The loader tests run once per suite, under JAX.
        backend="jax",
    ),
    Mutant(
        "Adience test fold leaks into training (a fold index off by one)",
        "keras_crl/data/adience.py",
        "        files += lists[k][0]\n        labels += lists[k][1]\n",
        "        files += lists[(k + 1) % NUM_FOLDS][0]\n"
        "        labels += lists[(k + 1) % NUM_FOLDS][1]\n",
        (f"{LOADERS}test_adience_test_fold_is_the_test_split",),
        backend="jax",
    ),
    Mutant(
        "ImageNet val labels off by one",
        "keras_crl/data/imagenet.py",
        "        labels.append(label_of[synset])",
        "        labels.append((label_of[synset] + 1) % len(label_of))",
        (f"{LOADERS}test_imagenet_val_labels_from_either_ground_truth",),
        backend="jax",
    ),
    Mutant(
        "OneOffAccuracy off by a class (two classes off counted right)",
        "keras_crl/metrics.py",
        "ops.less_equal(distance, 1)",
        "ops.less_equal(distance, 2)",
        (
            "tests/test_metrics.py::test_one_off_per_example",
            "tests/test_metrics.py::test_one_off_weighted_running_mean",
            "tests/test_metrics.py::test_one_off_in_a_compiled_model_with_sample_weights",
        ),
    ),
    Mutant(
        "the site's API reference hides public names without a docstring",
        "mkdocs.yml",
        "show_if_no_docstring: true",
        "show_if_no_docstring: false",
        ("tests/test_docs.py::test_every_public_name_is_in_the_reference",),
        # A once_per_suite test: it runs under JAX only.
        backend="jax",
    ),
    Mutant(
        "keras-crl --help shows an example that does not parse",
        "keras_crl/cli/flags.py",
        "  keras-crl compare-backends --epochs 2 ",
        "  keras-crl compare-backends --epochs two ",
        ("tests/test_doc_commands.py",),
        # once_per_suite: it runs under JAX only.
        backend="jax",
    ),
    Mutant(
        "--no-deterministic ignored: the command line always asks for deterministic kernels",
        "keras_crl/cli/to_config.py",
        "        deterministic=args.deterministic,\n",
        "        deterministic=True,\n",
        (f"{JIT}test_jit_on_runs_xla_on_tensorflow",),
        backend="tensorflow",
    ),
    # The command line keeps its word (tests/test_cli_promises.py runs once
    # per suite, under JAX).
    Mutant(
        "--epochs 0 accepted: the untrained weights' accuracy reported",
        "keras_crl/config.py",
        '    "epochs": _whole(1),',
        '    "epochs": _whole(0),',
        (f"{PROMISES}test_out_of_range_or_inapplicable_flags_refuse_before_any_work",),
        backend="jax",
    ),
    Mutant(
        "--beta with ce silently ignored",
        "keras_crl/config.py",
        '            if value != {"alpha": alpha, "beta": beta}[field]:',
        "            if False:",
        (f"{PROMISES}test_out_of_range_or_inapplicable_flags_refuse_before_any_work",),
        backend="jax",
    ),
    Mutant(
        "a resume may change the loss",
        "keras_crl/resume.py",
        '    "epochs",\n    "run_dir",',
        '    "epochs",\n    "loss",\n    "run_dir",',
        (f"{PROMISES}test_resume_refuses_other_training_settings",),
        backend="jax",
    ),
    Mutant(
        "more epochs on resume rescale the milestones the trained epochs used",
        "keras_crl/resume.py",
        "        return dataclasses.replace(requested, milestones=milestones, "
        "reference_epochs=epochs)",
        "        return requested",
        (f"{PROMISES}test_resume_with_more_epochs_keeps_the_settings_and_records_the_change",),
        backend="jax",
    ),
    Mutant(
        "a longer cosine schedule resumed, changing the rates already used",
        "keras_crl/resume.py",
        '    if schedule == "cosine":',
        '    if schedule == "cosine" and False:',
        (f"{PROMISES}test_resume_refuses_fewer_epochs_and_a_longer_cosine",),
        backend="jax",
    ),
    Mutant(
        "a fresh run leaves a former run's files in its folder",
        "keras_crl/train.py",
        "        run_folder.clear(run_dir)\n",
        "        pass\n",
        (f"{PROMISES}test_a_fresh_run_clears_a_former_runs_files",),
        backend="jax",
    ),
    Mutant(
        "a finished run resumed on another backend trains again and relabels its metrics",
        "keras_crl/train.py",
        "    if resume.resuming and run_folder.finished(config.run_dir, recipe.epochs):",
        "    if False:",
        (f"{PROMISES}test_a_finished_run_resumed_on_another_backend_trains_nothing",),
        backend="jax",
    ),
    Mutant(
        "a worker's mistake comes back as a nested traceback",
        "keras_crl/backends.py",
        "    if returncode != USER_ERROR_EXIT:\n        return None",
        "    if True:\n        return None",
        (f"{PROMISES}test_compare_backends_reports_a_workers_mistake_as_one_line",),
        backend="jax",
    ),
    Mutant(
        "Adience trains without its one-off accuracy",
        "keras_crl/metrics.py",
        '    if name == "adience":',
        '    if name == "adience" and False:',
        (f"{BENCH}test_adience_fold_trains_and_reports_one_off_accuracy",),
        backend="jax",
    ),
    Mutant(
        "--fold ignored: Adience always tests on fold 0",
        "keras_crl/cli/to_config.py",
        '        options["fold"] = args.fold',
        "        pass",
        (f"{BENCH}test_adience_fold_trains_and_reports_one_off_accuracy",),
        backend="jax",
    ),
    Mutant(
        "--weights ignored: the backbone starts seeded",
        "keras_crl/cli/to_config.py",
        '    options = {} if args.weights is None else {"weights": args.weights}',
        "    options = {}",
        (f"{BENCH}test_fine_tuning_starts_from_a_saved_backbone",),
        backend="jax",
    ),
    Mutant(
        "--weights on a model that has no backbone passes the check",
        "keras_crl/config.py",
        "    if not str(config.model).startswith((models_lib.APP_PREFIX, models_lib.HUB_PREFIX)):",
        "    if False:",
        (f"{BENCH}test_benchmark_flags_refuse_what_does_not_apply",),
        backend="jax",
    ),
    Mutant(
        "--backend set after Keras loads its default backend",
        "keras_crl/cli/__init__.py",
        '    if "keras" not in sys.modules:\n        os.environ["KERAS_BACKEND"] = backend\n',
        '    if "keras" not in sys.modules:\n        import keras  # noqa: F401\n'
        '        os.environ["KERAS_BACKEND"] = backend\n',
        ("tests/test_cli.py::test_backend_flag_loads_no_other_backend",),
        backend="jax",
    ),
    Mutant(
        "findings claim a difference from the raw p, not the Holm-adjusted one",
        "keras_crl/study/findings.py",
        'c.get("p_holm") is not None and c["p_holm"] < 0.05]\n    lines = []',
        'c.get("p_t") is not None and c["p_t"] < 0.05]\n    lines = []',
        ("tests/test_study_stats.py::test_findings_claim_only_what_survives_holm",),
        backend="jax",
    ),
    Mutant(
        "seeds to resolve 1 pp with the t quantile's degrees of freedom off by one",
        "keras_crl/study/stats.py",
        "        if stats.t.ppf(0.5 + confidence / 2, n - 1) * std / math.sqrt(n) <= difference:",
        "        if stats.t.ppf(0.5 + confidence / 2, n) * std / math.sqrt(n) <= difference:",
        ("tests/test_study_stats.py::test_seeds_for_1pp_at_the_documented_spreads",),
        backend="jax",
    ),
    Mutant(
        "the CE baseline ignores its label smoothing",
        "keras_crl/loss_factory.py",
        '            label_smoothing=label_smoothing,\n            name="cross_entropy",',
        '            label_smoothing=0.0,\n            name="cross_entropy",',
        (f"{FACTORY}test_a_baseline_changes_the_loss_and_its_gradient",),
        backend="jax",
    ),
    Mutant(
        "focal built without its options (gamma)",
        "keras_crl/loss_factory.py",
        '{"from_logits": True, "label_smoothing": label_smoothing, **options},',
        '{"from_logits": True, "label_smoothing": label_smoothing},',
        (f"{FACTORY}test_focal_gamma_reaches_the_loss",),
        backend="jax",
    ),
    Mutant(
        "a study variant's label smoothing never reaches training",
        "keras_crl/study/variants.py",
        '            "label_smoothing": self.label_smoothing,\n            "loss_options"',
        '            "label_smoothing": 0.0,\n            "loss_options"',
        (f"{FACTORY}test_a_baseline_changes_the_loss_and_its_gradient",),
        backend="jax",
    ),
    Mutant(
        "the native kernel's backward ignores the upstream gradient",
        "keras_crl/_torch_kernels.py",
        "        grad.mul_((scale * upstream).unsqueeze(-1))",
        "        grad.mul_(scale.unsqueeze(-1))",
        (
            "tests/test_losses.py::TestNativeTorchKernel::test_vjp_with_a_random_upstream_gradient",
            "tests/test_losses.py::TestNativeTorchKernel::test_sample_weights_through_the_kernel",
        ),
        backend="torch",
    ),
    # --- ignore_class and masks, against the property tests ---
    Mutant(
        "ignored rows keep their loss",
        "keras_crl/losses.py",
        "        losses = ops.where(keep, losses, 0.0)\n        set_keras_mask(losses, keep)",
        "        set_keras_mask(losses, keep)",
        ("tests/test_loss_properties.py::test_ignored_and_masked_rows_count_for_nothing",),
    ),
    Mutant(
        "a mask on the predictions is dropped",
        "keras_crl/losses.py",
        "        in_mask = get_keras_mask(y_pred)\n",
        "        in_mask = None\n",
        ("tests/test_loss_properties.py::test_ignored_and_masked_rows_count_for_nothing",),
    ),
    # --- checkpoint triggers, the chief's clock, the log, the statistics ---
    Mutant(
        "a time-based checkpoint taken by each process's own clock",
        "keras_crl/callbacks.py",
        "due = parallel.chief_decides(time.monotonic() - self.last >= self.every_seconds)",
        "due = time.monotonic() - self.last >= self.every_seconds",
        ("tests/test_callbacks.py::test_a_time_based_checkpoint_is_the_chiefs_decision",),
        backend="jax",
    ),
    Mutant(
        "chief_decides returns each torch process's own flag",
        "keras_crl/parallel/_torch.py",
        "    return bool(tensor.item())",
        "    return bool(flag)",
        ("tests/test_callbacks.py::test_chief_decides_gives_every_torch_process_the_chiefs_flag",),
        backend="jax",
    ),
    Mutant(
        "time-based checkpoints never fire",
        "keras_crl/callbacks.py",
        "due = parallel.chief_decides(time.monotonic() - self.last >= self.every_seconds)",
        "due = parallel.chief_decides(False)",
        ("tests/test_callbacks.py::test_state_checkpoint_saves_inside_epochs",),
        backend="jax",
    ),
    Mutant(
        "a resumed epoch numbers its checkpoint steps from 0",
        "keras_crl/callbacks.py",
        "        done = self.offset + batch + 1",
        "        done = batch + 1",
        ("tests/test_callbacks.py::test_state_checkpoint_saves_inside_epochs",),
        backend="jax",
    ),
    Mutant(
        "truncate_log keeps the epoch after the checkpoint",
        "keras_crl/run_folder.py",
        'int(float(line.split(",")[0])) < epochs',
        'int(float(line.split(",")[0])) <= epochs',
        ("tests/test_run_folder.py::test_truncate_log_keeps_the_checkpointed_epochs",),
        backend="jax",
    ),
    Mutant(
        "Holm's adjustment not monotone",
        "keras_crl/study/stats.py",
        "        running = max(running, min(1.0, (m - rank) * p))",
        "        running = min(1.0, (m - rank) * p)",
        ("tests/test_study_stats.py::test_holm_is_monotone_and_capped",),
        backend="jax",
    ),
    Mutant(
        "the paired t test's standard error over n - 1",
        "keras_crl/study/stats.py",
        '        se = out["std"] / math.sqrt(n)',
        '        se = out["std"] / math.sqrt(n - 1)',
        ("tests/test_study_stats.py",),
        backend="jax",
    ),
    # --- memory bounds of the in-memory and streaming folders ---
    Mutant(
        "channel_stats converts the whole training set to float64 at once",
        "keras_crl/data/dataset.py",
        "    rows = min(len(x), max(1, int(chunk_bytes) // (8 * x[0].size)))\n",
        "    rows = len(x)\n",
        (f"{DATA}test_image_folder_in_memory_peaks_within_one_and_a_half_times_its_pixels",),
        backend="jax",
    ),
    Mutant(
        "channel_stats' short last chunk sums stale rows of its buffer",
        "keras_crl/data/dataset.py",
        "            chunk = buffer[: len(part)]\n",
        "            chunk = buffer\n",
        (f"{DATA}test_channel_stats_chunk_by_chunk_equal_the_whole",),
        backend="jax",
    ),
    Mutant(
        "the in-memory splits copied out of the decoded array (once)",
        "keras_crl/data/folder.py",
        "    x_train, x_val, x_test = np.split(x, [len(keep), len(keep) + len(hold)])\n",
        "    x_train, x_val, x_test = (\n"
        "        p.copy() for p in np.split(x, [len(keep), len(keep) + len(hold)])\n"
        "    )\n",
        (
            f"{DATA}test_image_folder_in_memory_peaks_within_one_and_a_half_times_its_pixels",
            f"{DATA}test_image_folder_splits_are_views_of_one_decoded_array",
            f"{LOADERS}test_cub_official_split_labels_and_class_order",
        ),
        backend="jax",
    ),
    Mutant(
        "the in-memory splits copied twice (test split, then validation split)",
        "keras_crl/data/folder.py",
        "    x_train, x_val, x_test = np.split(x, [len(keep), len(keep) + len(hold)])\n",
        "    rest, x_test = x[: len(keep) + len(hold)].copy(), x[len(keep) + len(hold) :].copy()\n"
        "    x_train, x_val = rest[: len(keep)].copy(), rest[len(keep) :].copy()\n",
        (
            f"{DATA}test_image_folder_in_memory_peaks_within_one_and_a_half_times_its_pixels",
            f"{DATA}test_image_folder_splits_are_views_of_one_decoded_array",
            f"{LOADERS}test_cub_official_split_labels_and_class_order",
        ),
        backend="jax",
    ),
    Mutant(
        "streaming folder decodes every image up front at its own size",
        "keras_crl/data/stream.py",
        "        self.epoch = initial_epoch\n",
        "        self.epoch = initial_epoch\n"
        '        self._native = [np.asarray(read_image(f, "RGB")) for f in self.files]\n',
        (f"{STREAM}test_memory_is_bounded_by_the_prefetch_window",),
        backend="jax",
    ),
    # --- Adience folds (train/study --folds all) ---
    Mutant(
        "a fold trains on its own test fold",
        "keras_crl/data/adience.py",
        "        if k == fold:\n            continue\n        files += lists[k][0]\n"
        "        labels += lists[k][1]\n",
        "        files += lists[k][0]\n        labels += lists[k][1]\n"
        "        if k == fold:\n            continue\n",
        ("tests/test_folds.py::test_five_folds_train_summarize_and_resume",),
        backend="jax",
    ),
    Mutant(
        "every fold of --folds all tests fold 0",
        "keras_crl/folds.py",
        'dataset_options={**config.dataset_options, "fold": fold},',
        'dataset_options={**config.dataset_options, "fold": 0},',
        ("tests/test_folds.py::test_five_folds_train_summarize_and_resume",),
        backend="jax",
    ),
    Mutant(
        "the folds' std is the population std (ddof=0)",
        "keras_crl/folds.py",
        '"std": float(values.std(ddof=1)) if len(values) > 1 else None,',
        '"std": float(values.std()) if len(values) > 1 else None,',
        ("tests/test_folds.py::test_five_folds_train_summarize_and_resume",),
        backend="jax",
    ),
    Mutant(
        "the folds' one-off summary is the exact accuracy's",
        "keras_crl/folds.py",
        "values = np.array([r[measure] for r in rows if measure in r], float)",
        'values = np.array([r["test_accuracy"] for r in rows if measure in r], float)',
        ("tests/test_folds.py::test_five_folds_train_summarize_and_resume",),
        backend="jax",
    ),
    Mutant(
        "the study pairs runs by seed only, folds mixed",
        "keras_crl/study/stats.py",
        'return (record["seed"], record.get("fold"))',
        'return (record["seed"], None)',
        ("tests/test_folds.py::test_study_pairs_runs_by_seed_and_fold",),
        backend="jax",
    ),
    Mutant(
        "the study's std over folds is taken over every run",
        "keras_crl/study/stats.py",
        "                        per_fold.append(float(np.mean(values)))",
        "                        per_fold.extend(values)",
        ("tests/test_folds.py::test_study_pairs_runs_by_seed_and_fold",),
        backend="jax",
    ),
    # --- paper benchmarks as study presets, fine-grained recipe ---
    Mutant(
        "benchmark: a flag given on the command line is overridden by the preset",
        "keras_crl/study/benchmarks.py",
        "    return {k: v for k, v in flags.items() if k not in given}",
        "    return flags",
        ("tests/test_study_benchmarks.py::test_flags_given_override_the_preset",),
        backend="jax",
    ),
    Mutant(
        "benchmark: study --benchmark ignores the preset",
        "keras_crl/cli/commands.py",
        "            setattr(args, dest, value)",
        "            pass",
        (
            "tests/test_study_benchmarks.py::"
            "test_a_benchmark_study_runs_end_to_end_on_a_miniature_tree",
        ),
        backend="jax",
    ),
    Mutant(
        "benchmark: the backbone's learning-rate scale is not applied",
        "keras_crl/recipes.py",
        "            learning_rate = learning_rate * scale",
        "            learning_rate = learning_rate",
        ("tests/test_recipes.py::test_backbone_steps_at_the_scaled_learning_rate",),
        backend="torch",
    ),
    Mutant(
        "benchmark: the recipe's backbone scale never reaches its optimizer",
        "keras_crl/recipes.py",
        "            backbone_lr_scale=self.backbone_lr_scale,\n",
        "",
        ("tests/test_recipes.py::test_backbone_steps_at_the_scaled_learning_rate",),
        backend="tensorflow",
    ),
    Mutant(
        "benchmark: --benchmark list leaves out the published number",
        "keras_crl/study/benchmarks.py",
        '                b.published or "-",',
        '                "-",',
        (
            "tests/test_study_benchmarks.py::"
            "test_list_names_the_seven_benchmarks_with_estimates_and_the_published_number",
        ),
        backend="jax",
    ),
    Mutant(
        "benchmark: a keras-hub backbone ignores its --weights file",
        "keras_crl/models/applications.py",
        "            backbone.load_weights(weights)",
        "            pass",
        ("tests/test_benchmark_training.py::test_a_keras_hub_backbone_starts_from_a_saved_file",),
        backend="jax",
    ),
    Mutant(
        "benchmark: training scales the head's learning rate too",
        "keras_crl/train.py",
        "recipe.optimizer(steps_per_epoch, models_lib.head_variables(model))",
        "recipe.optimizer(steps_per_epoch)",
        ("tests/test_recipes.py::test_training_gives_its_optimizer_the_head",),
        backend="jax",
    ),
    # --- the study on Ray (issue 25) ---
    Mutant(
        "ray: the training process outlives its Ray worker (no parent-death signal)",
        "keras_crl/study/ray_executor.py",
        "            libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)",
        "            pass",
        (f"{RAY}test_a_killed_worker_resumes_from_its_checkpoint",),
        backend="jax",
    ),
    Mutant(
        "ray: a run trains without its folder lock",
        "keras_crl/study/runner.py",
        "    with run_folder.run_lock(folder, echo=echo):",
        "    with open(os.devnull):",
        (f"{RAY}test_a_run_trains_only_while_it_holds_its_folder_lock",),
        backend="jax",
    ),
    Mutant(
        "ray: a retried run starts afresh instead of resuming",
        "keras_crl/study/runner.py",
        "        resume=True,\n        verbose=0,\n        checkpoint_steps=checkpoint_steps,",
        "        resume=False,\n        verbose=0,\n        checkpoint_steps=checkpoint_steps,",
        (f"{RAY}test_a_killed_worker_resumes_from_its_checkpoint",),
        backend="jax",
    ),
    Mutant(
        "ray: the executor ignores the study's threads",
        "keras_crl/study/ray_executor.py",
        "            worker_env(threads),",
        "            worker_env(None),",
        (f"{RAY}test_both_executors_apply_the_study_threads",),
        backend="jax",
    ),
    Mutant(
        "ray: a study with folds trains one task per seed, every fold's in one folder",
        "keras_crl/study/ray_executor.py",
        "        for seed, fold in settings.units()\n",
        "        for seed, fold in ((s, None) for s in settings.seeds)\n",
        (f"{RAY}test_a_study_with_folds_is_one_task_per_seed_and_fold",),
        backend="jax",
    ),
    Mutant(
        "ray: the local instance takes the machine's outward address",
        "keras_crl/study/ray_executor.py",
        '        os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")',
        "        pass",
        (f"{RAY}test_the_local_instance_listens_on_loopback_only",),
        backend="jax",
    ),
    # --- calibration beside accuracy (issue 25, point 7) ---
    Mutant(
        "ECE: a confidence on an edge goes to the bin above",
        "keras_crl/calibration.py",
        "above = ops.greater(ops.expand_dims(confidence, -1), edges)",
        "above = ops.greater_equal(ops.expand_dims(confidence, -1), edges)",
        ("tests/test_calibration.py::test_ece_bins_edges_zero_one_and_weights",),
        backend="jax",
    ),
    Mutant(
        "ECE ignores the sample weights",
        "keras_crl/calibration.py",
        "        if sample_weight is None:\n            weight = ops.ones_like(confidence)",
        "        if True:\n            weight = ops.ones_like(confidence)",
        (
            "tests/test_calibration.py::test_ece_bins_edges_zero_one_and_weights",
            "tests/test_calibration.py::"
            "test_weighted_metrics_of_a_compiled_model_count_padding_as_nothing",
        ),
        backend="torch",
    ),
    Mutant(
        "Brier averaged over the classes instead of summed",
        "keras_crl/calibration.py",
        "return ops.sum(ops.square(p - is_label), axis=-1)",
        "return ops.mean(ops.square(p - is_label), axis=-1)",
        ("tests/test_calibration.py::test_nll_brier_confidence_by_hand",),
        backend="tensorflow",
    ),
    Mutant(
        "the calibration figures' Holm family merged with accuracy's",
        "keras_crl/study/stats.py",
        'for family in [comparisons, *(c["comparisons"] for c in calibration.values())]:',
        "for family in [comparisons + "
        '[r for c in calibration.values() for r in c["comparisons"]]]:',
        ("tests/test_study.py::test_calibration_has_holm_families_of_its_own",),
        backend="jax",
    ),
    Mutant(
        "the test ECE's bins never reach metrics.json",
        "keras_crl/train.py",
        '        "test_calibration_bins": bins,\n',
        '        "test_calibration_bins": None,\n',
        ("tests/test_train.py::test_run_folder",),
        backend="jax",
    ),
    # --- several hosts (issue 23, points 2 and 6) ---
    Mutant(
        "a streaming folder not told its shard: every process decodes the whole batch",
        "keras_crl/train.py",
        "        shard_index=shard_index,\n        shard_count=shard_count,\n",
        "",
        ("tests/cross_backend/test_multi_host.py::test_each_process_decodes_only_its_own_files",),
        backend=None,
    ),
    Mutant(
        "every process streams shard 0",
        "keras_crl/train.py",
        "    shard_index, shard_count = parallel.process_index_and_count()",
        "    shard_index, shard_count = 0, parallel.process_index_and_count()[1]",
        (
            "tests/cross_backend/test_multi_host.py::test_each_process_decodes_only_its_own_files",
            "tests/cross_backend/test_multi_host.py::test_streamed_processes_train_as_one",
        ),
        backend=None,
    ),
    Mutant(
        "process 1 also writes an HDF5 weights file",
        "keras_crl/train.py",
        "    parallel.barrier()  # the chief's files are complete\n",
        # (Its own file: Keras' save_weights in process 1 ends the JAX
        # cluster, a crash rather than a write to see.)
        "    parallel.barrier()  # the chief's files are complete\n    if not chief:\n"
        '        with __import__("h5py").File(run_dir / "p1.weights.h5", "w") as f:\n'
        '            f["w"] = 0\n',
        ("tests/cross_backend/test_multi_host.py::test_only_the_chief_writes_the_run_folder[jax]",),
        backend=None,
    ),
    Mutant(
        "the JAX join waits three times its time-out",
        "keras_crl/parallel/_jax.py",
        "    with deadline(cluster.timeout, message):",
        "    with deadline(3 * cluster.timeout, message):",
        (
            "tests/cross_backend/test_multi_host.py::"
            "test_a_missing_coordinator_or_process_fails_in_time_naming_the_address[jax]",
        ),
        backend=None,
    ),
    Mutant(
        "the TensorFlow meeting waits three times its time-out",
        "keras_crl/parallel/_tensorflow.py",
        "    end = time.monotonic() + cluster.timeout",
        "    end = time.monotonic() + 3 * cluster.timeout",
        (
            "tests/cross_backend/test_multi_host.py::"
            "test_a_missing_coordinator_or_process_fails_in_time_naming_the_address[tensorflow]",
        ),
        backend=None,
    ),
    Mutant(
        "torch nodes train each alone: gradients not averaged",
        "keras_crl/parallel/_torch.py",
        "    return TorchDataParallel(model)",
        "    return model",
        (
            "tests/cross_backend/test_multi_host.py::"
            "test_two_torch_nodes_without_batch_norm_train_as_one",
        ),
        backend=None,
    ),
    Mutant(
        "small_cnn keeps batch norm when asked for none",
        "keras_crl/models/small_cnn.py",
        "        if batch_norm:\n",
        "        if True:\n",
        ("tests/test_models.py::test_small_cnn_without_batch_norm",),
        backend="jax",
    ),
    Mutant(
        "fresh cluster processes resume from the initial weights",
        "keras_crl/train.py",
        "    if resume.resuming:\n"
        '        run_folder.load_state(trainer, run_dir / "state.npz", rank)\n',
        "",
        (
            "tests/cross_backend/test_resume_two_processes.py::"
            "test_cluster_killed_inside_an_epoch_resumes_in_fresh_processes",
        ),
        backend=None,
    ),
    Mutant(
        "fresh JAX cluster processes replay the last step done",
        "keras_crl/train.py",
        "data = data_lib.EpochRemainder(batches, resume.step)",
        "data = data_lib.EpochRemainder(batches, resume.step - 1)",
        (
            "tests/cross_backend/test_resume_two_processes.py::"
            "test_cluster_killed_inside_an_epoch_resumes_in_fresh_processes[jax]",
        ),
        backend=None,
    ),
    Mutant(
        "an empty validation split divides its loss scale by zero",
        "keras_crl/data/pipeline.py",
        "self.images if self.images else 1.0",
        "self.images",
        (f"{DATA}test_padded_batches_of_no_images_rescale_nothing",),
        backend="jax",
    ),
    Mutant(
        "Ctrl-C is a traceback, not one line and exit 130",
        "keras_crl/cli/__init__.py",
        "        return 130",
        "        raise",
        (f"{RAY}test_ctrl_c_stops_every_process_and_the_same_command_finishes",),
        backend="jax",
    ),
]

# The resume mutants once more on JAX and on TensorFlow: each backend saves and
# restores its own optimizer, metric and pipeline state.
RESUMED_ON_EVERY_BACKEND = (
    "resume ignores the checkpoint",
    "resume restarts from the initial weights",
    "resume inside an epoch: metric totals not restored",
    "resume inside an epoch: the epoch restarts from its first batch",
    "resume inside an epoch: replays the last step done",
)
MUTANTS += [
    dataclasses.replace(m, name=f"{m.name} [{backend}]", backend=backend)
    for m in MUTANTS
    if m.name in RESUMED_ON_EVERY_BACKEND
    for backend in ("jax", "tensorflow")
]


# A guard run longer than this is a hang, not a catch.
GUARD_TIMEOUT = 1800


class HarnessFailure(Exception):
    """The guards could not judge the mutant: a collection error or a hang."""


def copy_project(destination):
    shutil.copytree(
        ROOT,
        destination,
        ignore=shutil.ignore_patterns(".git", "runs", "__pycache__", "*.egg-info", ".pytest_cache"),
    )


def apply(mutant, tree):
    path = tree / mutant.file
    text = path.read_text()
    count = text.count(mutant.old)
    if count != 1:
        return f"the code to break is found {count} times in {mutant.file}"
    path.write_text(text.replace(mutant.old, mutant.new))
    return None


def failed_guards(mutant, tree, report):
    """Runs the guards on the mutated tree; returns the guards with a failure."""
    env = dict(os.environ, PYTHONPATH=str(tree), TF_CPP_MIN_LOG_LEVEL="3")
    env.pop("KERAS_BACKEND", None)
    if mutant.backend:
        env["KERAS_BACKEND"] = mutant.backend
    env["MUTANT_GUARDS"] = json.dumps(mutant.guards)
    # The copy must be what runs, not the installed package (found without
    # importing it: a Keras import per mutant is seconds).
    where = subprocess.run(
        [
            sys.executable,
            "-c",
            "import importlib.util; print(importlib.util.find_spec('keras_crl').origin)",
        ],
        cwd=tree,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert where.stdout.strip().startswith(str(tree)), where.stdout
    try:
        run = subprocess.run(
            [
                sys.executable,
                "-m",
                "pytest",
                "-q",
                "-p",
                "no:cacheprovider",
                "-p",
                "tests.guard_plugin",
                f"--junitxml={report}",
                *mutant.guards,
            ],
            cwd=tree,
            env=env,
            capture_output=True,
            text=True,
            timeout=GUARD_TIMEOUT,
        )
    except subprocess.TimeoutExpired:
        # A hang is caught only by a guard that fails within its own limit.
        raise HarnessFailure(f"the guards hung past {GUARD_TIMEOUT} s") from None
    # 1: tests failed (a catch). 2-5: interrupted, internal or usage error,
    # no tests collected: an import or collection error is no catch.
    if run.returncode not in (0, 1):
        tail = (run.stdout + run.stderr).strip().splitlines()[-3:]
        raise HarnessFailure(f"pytest exit {run.returncode}: {' / '.join(tail)}")
    failing = set()
    for case in ElementTree.parse(report).iter("testcase"):
        if case.find("failure") is not None or case.find("error") is not None:
            path = case.get("classname", "").replace(".", "/")
            failing.add((path, case.get("name", "").split("[")[0]))
    caught = []
    for guard in mutant.guards:
        file, _, test = guard.partition("::")
        # A guard may name one parameter ("test_x[tensorflow]"); the report
        # names the test without it.
        module, test = file.removesuffix(".py"), test.split("::")[-1].split("[")[0]
        if any(path.startswith(module) and (not test or name == test) for path, name in failing):
            caught.append(guard)
    return caught


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help="mutants to run (default: all)")
    parser.add_argument("--list", action="store_true", help="list the mutants and exit")
    args = parser.parse_args(argv)
    if args.list:
        for m in MUTANTS:
            print(
                f"{m.name}: {m.file} ({m.backend or 'cross-backend'}); "
                f"guards: {', '.join(m.guards)}"
            )
        return 0
    unknown = set(args.names) - {m.name for m in MUTANTS}
    if unknown:
        parser.error(f"unknown mutants {sorted(unknown)}; see --list")
    chosen = [m for m in MUTANTS if not args.names or m.name in args.names]
    rows, survivors = [], 0
    with tempfile.TemporaryDirectory() as scratch:
        for i, mutant in enumerate(chosen):
            start = time.perf_counter()
            tree = Path(scratch) / f"m{i}"
            copy_project(tree)
            problem = apply(mutant, tree)
            if problem is None:
                try:
                    caught = failed_guards(mutant, tree, Path(scratch) / f"m{i}.xml")
                except HarnessFailure as failure:
                    verdict = f"HARNESS: {failure}"
                else:
                    missed = [g for g in mutant.guards if g not in caught]
                    verdict = "caught" if not missed else f"SURVIVED {', '.join(missed)}"
            else:
                verdict = f"STALE: {problem}"
            survivors += verdict != "caught"
            rows.append(
                (
                    mutant.name,
                    f"{len(mutant.guards)}",
                    verdict,
                    f"{time.perf_counter() - start:.0f} s",
                )
            )
            print(" | ".join(rows[-1]), flush=True)
            shutil.rmtree(tree)
    print(f"\n{len(chosen) - survivors} of {len(chosen)} mutants caught by every guard.")
    return 1 if survivors else 0


if __name__ == "__main__":
    sys.exit(main())
