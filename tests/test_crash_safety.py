"""Never a silently wrong number: a crash or a full disk at any write of a run, a torn results table,
two processes on one results folder, and a sweep that names something invalid.

Each case kills a ci run at one write step (a writer that dies after part of its bytes, or a full
disk), reruns it, and checks the end result equals an uninterrupted run bit for bit with exactly one
row per epoch.

``make test`` runs every case on TensorFlow and one of each kind again on JAX (marked ``backends``):
a torn checkpoint file, the crash between committing and cleaning up (a resume after epoch 2), a
crash writing the results table, a torn table, two processes, stale side files. The reference run is
computed in the same session, so on the same backend.
"""

from __future__ import annotations

import errno
import multiprocessing
import shutil
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pandas as pd
import pytest

import tlutils.experiment.state as state
import tlutils.experiment.store as store
from tlutils.experiment import RESULT_COLUMNS, RunConfig, load_results, resolve, run, source_config, sweep
from tlutils.experiment.atomic import SIDE_PREFIX

pytestmark = pytest.mark.slow

TARGET = RunConfig(target_data="germany", strategy="head_only", num_target_images=10, profile="ci")
TIMING = ("epoch_seconds", "eval_seconds", "images_per_s")


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("data")


@pytest.fixture(scope="module")
def reference(tmp_path_factory, data_dir):
    """An uninterrupted run of TARGET (and its source run): ``(results_dir, target rows)``."""
    results_dir = tmp_path_factory.mktemp("reference")
    return results_dir, run(TARGET, results_dir, data_dir=data_dir, verbose=0, tensorboard=False)


def with_source(reference, where: Path) -> Path:
    """A results folder holding only the reference's finished source run (so a case trains TARGET only)."""
    results_dir, _ = reference
    table = load_results(results_dir)
    source = table[table["stage"] == "source"]
    folder = (results_dir / source["checkpoint"].iloc[-1]).parent
    shutil.copytree(folder, where / folder.relative_to(results_dir))
    source.to_csv(where / "results.csv", index=False)
    return where


def assert_same_as_reference(reference, results_dir: Path, rows: pd.DataFrame) -> None:
    """Every number but the timings equal bit for bit, the same weights, one row per epoch."""
    reference_dir, expected = reference
    numbers = [c for c in RESULT_COLUMNS if c not in TIMING and pd.api.types.is_numeric_dtype(expected[c])]
    pd.testing.assert_frame_equal(rows[numbers], expected[numbers])
    table = load_results(results_dir)
    epochs = table.groupby("run_key")["epoch"].apply(list)
    assert epochs.map(lambda e: e in (list(range(1, len(e) + 1)), list(range(len(e))))).all()
    assert len(table[table["run_key"] == expected["run_key"].iloc[0]]) == len(expected)
    load = lambda where, frame: keras.saving.load_model(where / frame["checkpoint"].iloc[-1], compile=False)  # noqa: E731
    for got, want in zip(load(results_dir, rows).get_weights(), load(reference_dir, expected).get_weights()):
        np.testing.assert_array_equal(got, want)
    leftovers = [p for p in results_dir.rglob(f"{SIDE_PREFIX}*")]
    assert not leftovers, leftovers


class Crash(Exception):
    """The process dies here (raised by an injected writer)."""


def dying_writer(real, path_argument: int, when: int, kind: str):
    """``real``, but its ``when``-th call dies: after writing half of its file, or with a full disk."""
    calls = {"n": 0}

    def writer(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] != when:
            return real(*args, **kwargs)
        if kind == "disk full":
            raise OSError(errno.ENOSPC, "No space left on device")
        real(*args, **kwargs)
        path = Path(args[path_argument])
        if path.is_file():
            data = path.read_bytes()
            path.write_bytes(data[: len(data) // 2])
        raise Crash(f"killed while writing {path.name}")

    return writer


STATE_STEPS = [("_save_weights", 0), ("_save_optimizer", 0), ("_save_rows", 0), ("_save_manifest", 0)]
KINDS = ["killed mid-file", "disk full"]
#: The case run on JAX too: a torn optimizer file (JAX keeps the optimizer's state outside its
#: variables while ``fit`` runs).
ON_BOTH_BACKENDS = ("_save_optimizer", "killed mid-file")


@pytest.mark.parametrize(("step", "path_argument", "kind"), [
    pytest.param(step, path_argument, kind, marks=[pytest.mark.backends] if (step, kind) == ON_BOTH_BACKENDS else [])
    for step, path_argument in STATE_STEPS for kind in KINDS])
def test_a_crash_while_saving_the_epoch_state_resumes_to_the_same_numbers(reference, data_dir, tmp_path, monkeypatch,
                                                                          step, path_argument, kind):
    results_dir = with_source(reference, tmp_path)
    monkeypatch.setattr(state, step, dying_writer(getattr(state, step), path_argument, when=2, kind=kind))
    with pytest.raises((Crash, OSError)):
        run(TARGET, results_dir, data_dir=data_dir, verbose=0, tensorboard=False)
    monkeypatch.undo()
    assert set(load_results(results_dir)["stage"]) == {"source"}  # nothing reported for the unfinished run
    rows = run(TARGET, results_dir, data_dir=data_dir, verbose=0, tensorboard=False)
    assert_same_as_reference(reference, results_dir, rows)


@pytest.mark.backends
def test_a_crash_while_committing_the_epoch_state_resumes_to_the_same_numbers(reference, data_dir, tmp_path,
                                                                             monkeypatch):
    results_dir = with_source(reference, tmp_path)
    real = state.commit_folder

    def commit_then_die(side, final):
        real(side, final)
        if final.name == "epoch-0002":
            raise Crash("killed after renaming the state folder, before cleaning up")

    monkeypatch.setattr(state, "commit_folder", commit_then_die)
    with pytest.raises(Crash):
        run(TARGET, results_dir, data_dir=data_dir, verbose=0, tensorboard=False)
    monkeypatch.undo()
    rows = run(TARGET, results_dir, data_dir=data_dir, verbose=0, tensorboard=False)
    assert_same_as_reference(reference, results_dir, rows)


@pytest.mark.parametrize("kind", [pytest.param(KINDS[0], marks=pytest.mark.backends), KINDS[1]])
def test_a_crash_while_writing_the_results_table_keeps_the_old_table_and_reruns(reference, data_dir, tmp_path,
                                                                                monkeypatch, kind):
    results_dir = with_source(reference, tmp_path)
    before = (results_dir / "results.csv").read_bytes()
    monkeypatch.setattr(store, "_write_table", dying_writer(store._write_table, 0, when=1, kind=kind))
    with pytest.raises((Crash, OSError)):
        run(TARGET, results_dir, data_dir=data_dir, verbose=0, tensorboard=False)
    monkeypatch.undo()
    assert (results_dir / "results.csv").read_bytes() == before
    rows = run(TARGET, results_dir, data_dir=data_dir, verbose=0, tensorboard=False)
    assert_same_as_reference(reference, results_dir, rows)


@pytest.mark.backends
def test_a_torn_results_table_is_repaired_not_fatal(reference, data_dir, tmp_path):
    """What an in-place append killed mid-row leaves: the target run's last row cut, the next run's
    first row glued onto it. The finished source run stays; the damaged run is trained again."""
    results_dir = with_source(reference, tmp_path)
    _, expected = reference
    lines = expected.to_csv(index=False, header=False).splitlines()
    torn = lines[:-1] + [lines[-1][: len(lines[-1]) // 2] + lines[0]]
    with open(results_dir / "results.csv", "a") as table:
        table.write("\n".join(torn) + "\n")
    with pytest.warns(UserWarning, match="unfinished or damaged"):
        assert set(load_results(results_dir)["stage"]) == {"source"}
    with pytest.warns(UserWarning):
        rows = run(TARGET, results_dir, data_dir=data_dir, verbose=0, tensorboard=False)
    assert_same_as_reference(reference, results_dir, rows)


def _run_source(results_dir: str, data_dir: str, trained_dir: str) -> None:
    """The source run of TARGET; every epoch this process trains leaves a file ``<pid>-<epoch>``."""
    import os

    class Mark(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            (Path(trained_dir) / f"{os.getpid()}-{epoch}").touch()

    run(source_config(TARGET), results_dir, data_dir=data_dir, verbose=0, tensorboard=False, callbacks=[Mark()])


@pytest.mark.backends
def test_two_processes_asking_for_one_run_train_it_once(tmp_path, data_dir, reference):
    """Two sweeps that share the source run, started together: one trains, the other waits and reads."""
    results_dir, trained_dir = tmp_path / "results", tmp_path / "trained"
    trained_dir.mkdir()
    context = multiprocessing.get_context("spawn")
    processes = [context.Process(target=_run_source, args=(str(results_dir), str(data_dir), str(trained_dir)))
                 for _ in range(2)]
    for process in processes:
        process.start()
    for process in processes:
        process.join(timeout=600)
    assert [process.exitcode for process in processes] == [0, 0]
    trainers = {path.name.split("-")[0] for path in trained_dir.iterdir()}
    assert len(trainers) == 1, f"the run was trained by {len(trainers)} processes"
    table = load_results(results_dir)
    assert list(table["epoch"]) == list(range(len(table)))  # epoch 0 (the start), then each epoch once
    reference_source = load_results(reference[0]).query("stage == 'source'")
    pd.testing.assert_series_equal(table["val_map50"], reference_source["val_map50"].reset_index(drop=True))


def test_a_sweep_checks_every_configuration_before_the_first_run_trains(tmp_path):
    with pytest.raises(ValueError, match="atlantis"):
        sweep({"country": ["germany", "atlantis"], "strategy": ["finetune"]}, tmp_path,
              base=RunConfig(profile="ci", num_target_images=10))
    assert not (tmp_path / "results.csv").exists() and not (tmp_path / "runs").exists()


@pytest.mark.parametrize(("field", "value"), [("learning_rate", float("inf")), ("learning_rate", float("nan")),
                                               ("l2_regularization", -1.0), ("l2_regularization", float("inf"))])
def test_rates_and_factors_must_be_finite(field, value):
    with pytest.raises(ValueError, match=field):
        RunConfig(num_target_images=10, **{field: value})


def test_the_command_line_reports_a_user_error_in_one_line(tmp_path):
    command = [sys.executable, "-m", "tlutils.cli", "sweep", "--profile", "ci", "--countries", "atlantis",
               "--out", str(tmp_path)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert done.returncode == 2
    errors = [line for line in done.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "atlantis" in errors[0], done.stderr
    assert "Traceback" not in done.stderr
    debug = subprocess.run([sys.executable, "-m", "tlutils.cli", "--debug", *command[3:]], capture_output=True,
                           text=True, timeout=300)
    assert debug.returncode == 1 and "Traceback" in debug.stderr


@pytest.mark.backends
def test_stale_side_files_of_killed_writers_are_removed(reference, data_dir, tmp_path):
    results_dir = with_source(reference, tmp_path)
    stale_table = results_dir / f"{SIDE_PREFIX}999-1.results.csv"
    stale_table.write_text("half a tab")
    run_dir = results_dir / "runs" / resolve(TARGET).name
    (run_dir / "state" / f"{SIDE_PREFIX}999-1.epoch-0001").mkdir(parents=True)
    rows = run(TARGET, results_dir, data_dir=data_dir, verbose=0, tensorboard=False)
    assert not stale_table.exists()
    assert_same_as_reference(reference, results_dir, rows)
