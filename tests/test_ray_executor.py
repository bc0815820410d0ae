"""`keras-crl study --executor ray`: the same runs as the sequential executor, on Ray.

One module fixture trains the tiny study of tests/ray_study.py twice, each
in a process of its own: sequentially, then on a local Ray instance (2 CPUs,
two runs at a time) while this process watches it: it lists the instance's
listening sockets, and SIGKILLs the Ray worker of the CE run once that run
has checkpointed inside its first epoch. Every wait is bounded.
"""

import contextlib
import ipaddress
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from keras_crl import run_folder

pytestmark = pytest.mark.once_per_suite
ROOT = Path(__file__).resolve().parents[1]
RUNS = ("ce", "crl-a0-b0.25")
RAISES = "RaisesInTraining"
TIMING = {"seconds_per_epoch", "images_per_second"}


def _start(out_dir, executor):
    env = dict(os.environ, KERAS_BACKEND="jax")
    # Ray 2.60 kills a dead worker's process group by itself; off, only the
    # executor's parent-death signal can end the training process of a
    # killed worker, which is what test_a_killed_worker_... checks.
    env["RAY_process_group_cleanup_enabled"] = "0"
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    return subprocess.Popen(
        [sys.executable, "-m", "tests.ray_study", str(out_dir), executor],
        env=env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _finish(proc, timeout):
    try:
        output, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        output, _ = proc.communicate()
        pytest.fail(f"the study did not finish in {timeout} s:\n{output[-3000:]}")
    assert proc.returncode == 0, output[-3000:]
    return output


def _mid_epoch(state):
    try:
        epoch, step = run_folder.state_position(state)
    except (OSError, ValueError, KeyError):
        return False
    return epoch == 0 and step > 0


def _watch(proc, out_dir, psutil, deadline):
    """Watches the Ray study: its processes, its sockets, and one killed worker."""
    seen, listening, killed, started = {}, set(), {}, {}
    state = out_dir / "runs" / "jax" / "ce" / "seed0" / "state.npz"
    polls = 0
    while proc.poll() is None and time.monotonic() < deadline:
        polls += 1
        try:
            family = psutil.Process(proc.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            break
        for p in family:
            try:
                seen[(p.pid, p.create_time())] = p
            except psutil.Error:
                continue
            if polls % 20:
                continue  # sockets every 0.4 s: a kill must not wait for them
            try:
                listening |= {
                    c.laddr.ip
                    for c in p.net_connections(kind="inet")
                    if c.status == psutil.CONN_LISTEN
                }
            except psutil.Error:
                pass
        for p in family:
            try:
                command = p.cmdline()
            except psutil.Error:
                continue
            if "keras_crl.study.ray_executor" not in command:
                continue
            name = command[command.index("keras_crl.study.ray_executor") + 2]
            started.setdefault(name, p.create_time())
            if name == "ce" and not killed and _mid_epoch(state):
                killed = _kill_worker(p, psutil)
        time.sleep(0.02)
    killed["started"] = started
    return seen, listening, killed


def _kill_worker(trainer, psutil):
    """SIGKILLs the Ray worker above `trainer`, stopped first: stopped, the
    training process can only end by being killed, not by finishing its run."""
    killed = {"trainer": trainer, "worker": trainer.parent()}
    trainer.suspend()
    killed["time"] = time.time()
    killed["worker"].send_signal(signal.SIGKILL)
    end = time.monotonic() + 2.0
    while _alive(trainer, psutil) and time.monotonic() < end:
        time.sleep(0.01)
    if _alive(trainer, psutil):
        trainer.resume()  # an orphan: let it end, the test has failed
    else:
        killed["trainer_died"] = time.time()
    return killed


@pytest.fixture(scope="module")
def studies(tmp_path_factory):
    psutil = pytest.importorskip("psutil")
    pytest.importorskip("ray")
    root = tmp_path_factory.mktemp("ray_study")
    _finish(_start(root / "sequential", "sequential"), timeout=240)
    proc = _start(root / "ray", "ray")
    seen = {}
    try:
        seen, listening, killed = _watch(proc, root / "ray", psutil, time.monotonic() + 240)
        output = _finish(proc, timeout=60)
        left = [p for p in seen.values() if not _gone(p, psutil, timeout=20)]
    finally:
        proc.kill()
        proc.communicate()
        for p in seen.values():
            try:
                p.kill()
            except psutil.Error:
                pass
    return {
        "sequential": root / "sequential",
        "ray": root / "ray",
        "listening": listening,
        "killed": killed,
        "left": left,
        "output": output,
    }


def _alive(process, psutil):
    try:
        return process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _gone(process, psutil, timeout):
    try:
        process.wait(timeout=timeout)
    except psutil.TimeoutExpired:
        return False
    except psutil.NoSuchProcess:
        pass
    return True


def _run(study, name):
    return study / "runs" / "jax" / name / "seed0"


def _json(path):
    return json.loads(Path(path).read_text())


def test_ray_runs_equal_the_sequential_runs(studies):
    for name in RUNS:
        seq, ray = _run(studies["sequential"], name), _run(studies["ray"], name)
        a, b = _json(seq / "metrics.json"), _json(ray / "metrics.json")
        assert {k: v for k, v in a.items() if k not in TIMING} == {
            k: v for k, v in b.items() if k not in TIMING
        }, name
        for weights in ("last.weights.h5", "best.weights.h5"):
            wa = run_folder.read_weights(seq / weights)
            wb = run_folder.read_weights(ray / weights)
            assert wa.keys() == wb.keys()
            for key in wa:
                assert (wa[key] == wb[key]).all(), (name, weights, key)


def test_both_executors_apply_the_study_threads(studies):
    for study in ("sequential", "ray"):
        assert _json(studies[study] / "study.json")["threads"] == 1
        for name in RUNS:
            threads = _json(_run(studies[study], name) / "study_time.json")["threads"]
            # Ray sets OMP_NUM_THREADS by itself; TensorFlow's and XLA's only the study does.
            assert threads["OMP_NUM_THREADS"] == threads["TF_NUM_INTRAOP_THREADS"] == "1"
            assert "intra_op_parallelism_threads=1" in threads["XLA_FLAGS"], threads


def test_ray_runs_overlap_in_time(studies):
    # CE's first attempt: from its training process's start to its kill.
    ce = (studies["killed"]["started"]["ce"], studies["killed"]["time"])
    crl = _json(_run(studies["ray"], "crl-a0-b0.25") / "study_time.json")
    assert crl["start"] < ce[1] and ce[0] < crl["end"], (ce, crl)


def test_a_killed_worker_resumes_from_its_checkpoint(studies):
    assert "worker" in studies["killed"], "CE finished before a mid-epoch checkpoint was seen"
    # Killed with its worker (it was stopped, so it did not just finish).
    assert "trainer_died" in studies["killed"], "the stopped training process outlived its worker"
    ce = _run(studies["ray"], "ce")
    assert _json(ce / "study_time.json")["resumed"] is True
    resumes = _json(ce / "config.json")["resumes"]
    # It went on from inside the first epoch: only the steps left were trained.
    assert len(resumes) == 1 and resumes[0]["epoch"] == 0 and resumes[0]["step"] > 0, resumes


def test_a_raising_loss_is_recorded_failed_and_the_others_finish(studies):
    failed = _run(studies["ray"], RAISES) / "failed.json"
    assert "this loss refuses to train" in _json(failed)["error"]
    assert "this loss refuses to train" in studies["output"]
    results = _json(studies["ray"] / "results.json")
    assert results  # the report was written with the two finished runs
    for name in RUNS:
        assert (_run(studies["ray"], name) / "metrics.json").exists()


def test_no_ray_or_training_process_is_left(studies):
    assert studies["left"] == [], studies["left"]


def test_the_local_instance_listens_on_loopback_only(studies):
    assert studies["listening"], "no listening socket was seen"
    addresses = {ipaddress.ip_address(ip.removeprefix("::ffff:")) for ip in studies["listening"]}
    assert all(a.is_loopback for a in addresses), studies["listening"]


def test_run_lock_lets_one_process_train_a_folder(tmp_path):
    assert not run_folder.is_locked(tmp_path)
    with run_folder.run_lock(tmp_path):
        assert run_folder.is_locked(tmp_path)
    assert not run_folder.is_locked(tmp_path)


def test_a_run_trains_only_while_it_holds_its_folder_lock(tmp_path, monkeypatch):
    import threading

    from keras_crl import train as train_lib
    from keras_crl.study import runner
    from keras_crl.study.variants import variant
    from tests.ray_study import settings

    trained = []

    def fake_train(config):
        trained.append(run_folder.is_locked(config.run_dir))
        return {"test_accuracy": 0.5}

    monkeypatch.setattr(train_lib, "train", fake_train)
    ce = variant("ce")
    folder = runner.run_dir(tmp_path, "jax", ce, 0)
    with run_folder.run_lock(folder):  # an earlier attempt, still alive
        worker = threading.Thread(
            target=runner.train_one, args=(tmp_path, settings("sequential"), ce, 0)
        )
        worker.start()
        worker.join(timeout=1.0)
        assert trained == [] and worker.is_alive()
    worker.join(timeout=30)
    assert trained == [True]


def test_progress_is_quiet_off_a_terminal():
    import io

    from keras_crl.study.ray_executor import Progress

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    quiet, shown = io.StringIO(), Terminal()
    for stream in (quiet, shown):
        progress = Progress(3, stream)
        progress.finished(None)
        progress.finished("FAILED: x")
        progress.show(1)
        progress.close()
    assert quiet.getvalue() == ""
    assert "1/3 finished, 1 running, 1 failed, ETA" in shown.getvalue()


def test_without_ray_the_executor_is_one_line_naming_the_extra(tmp_path, monkeypatch, capsys):
    from keras_crl.cli import main

    monkeypatch.setitem(sys.modules, "ray", None)
    monkeypatch.setenv("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    argv = ["study", "--executor", "ray", "--seeds", "1", "--epochs", "1", "--limit", "64"]
    assert main([*argv, "--out-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.splitlines() == [
        "keras-crl study: error: --executor ray needs ray: pip install 'keras-crl[ray]'"
    ]


def test_a_bad_cpus_per_run_names_the_flag(tmp_path, capsys):
    from keras_crl.cli import main

    argv = ["study", "--executor", "ray", "--cpus-per-run", "0", "--out-dir", str(tmp_path)]
    assert main(argv) == 2
    assert "--cpus-per-run 0.0: must be" in capsys.readouterr().err
    argv = ["study", "--threads-per-run", "0", "--out-dir", str(tmp_path)]
    assert main(argv) == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        "keras-crl study: error: --threads-per-run 0: must be an integer of at least 1"
    ]


def test_a_study_with_folds_is_one_task_per_seed_and_fold(tmp_path):
    # Adience's protocol on Ray: the tasks are the sequential executor's runs,
    # one per (loss, seed, test fold), each in its fold's folder.
    from keras_crl.study import ray_executor
    from keras_crl.study.settings import StudySettings
    from keras_crl.study.settings import run_dir
    from keras_crl.study.variants import variant

    ce, crl = variant("ce"), variant("crl", beta=0.25)
    settings = StudySettings(
        training={}, seeds=[0, 1], backends=["jax"], variants=[ce, crl], folds=[0, 1, 2]
    )
    todo = ray_executor.missing_runs(settings, tmp_path)
    assert len(todo) == 2 * 2 * 3
    assert {(seed, fold) for _, _, seed, fold in todo} == set(settings.units())
    done = run_dir(tmp_path, "jax", crl, 1, 2)
    done.mkdir(parents=True)
    (done / "metrics.json").write_text("{}")
    assert ("jax", crl, 1, 2) not in ray_executor.missing_runs(settings, tmp_path)
    assert done.name == "fold-2"
    assert ray_executor._tag("jax", crl, 1, 2) == f"jax/{crl.name}/seed1/fold-2"


def _descendants(proc, psutil):
    try:
        return psutil.Process(proc.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


@contextlib.contextmanager
def _group_killed_at_exit(proc):
    """Yields `proc`; on the way out, SIGKILLs its process group if it still runs."""
    try:
        yield proc
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()


def test_ctrl_c_stops_every_process_and_the_same_command_finishes(tmp_path):
    psutil = pytest.importorskip("psutil")
    pytest.importorskip("ray")
    out = tmp_path / "study"
    command = [
        *(sys.executable, "-m", "keras_crl.cli", "study", "--executor", "ray"),
        *("--dataset", "digits", "--model", "small_cnn", "--epochs", "1", "--limit", "320"),
        *("--batch-size", "32", "--no-augment", "--seeds", "1", "--threads-per-run", "1"),
        *("--backends", "jax", "--out-dir", str(out)),
    ]
    env = dict(os.environ, KERAS_BACKEND="jax")
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])

    def start():
        # Its own process group, as a terminal's foreground job: Ctrl-C
        # reaches the driver, Ray's processes and the training processes.
        return subprocess.Popen(
            command,
            env=env,
            cwd=ROOT,
            text=True,
            start_new_session=True,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )

    seen, first = {}, None
    deadline = time.monotonic() + 180
    with _group_killed_at_exit(start()) as proc:
        while proc.poll() is None and time.monotonic() < deadline:
            for p in _descendants(proc, psutil):
                seen.setdefault(p.pid, p)
            first = next(iter(sorted(out.glob("runs/jax/*/seed0/metrics.json"))), None)
            if first is not None:
                break
            time.sleep(0.1)
        assert first is not None, "no run finished before the deadline"
        finished = {m: m.read_bytes() for m in out.glob("runs/jax/*/seed0/metrics.json")}
        os.killpg(proc.pid, signal.SIGINT)
        _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr[-3000:]
    assert stderr.strip().splitlines()[-1] == (
        "keras-crl study: interrupted; the same command again trains only the runs not finished"
    ), stderr[-3000:]
    assert "Traceback" not in stderr, stderr[-3000:]
    left = [p for p in seen.values() if not _gone(p, psutil, timeout=20)]
    assert left == [], left
    assert not (out / "report.md").exists()

    with _group_killed_at_exit(start()) as proc:
        _, stderr = proc.communicate(timeout=240)
    assert proc.returncode == 0, stderr[-3000:]
    assert (out / "report.md").exists()
    # What had finished was not trained again.
    assert {m: m.read_bytes() for m in finished} == finished
    assert len(list(out.glob("runs/jax/*/seed0/metrics.json"))) == 7
