"""Shipped runs (tlutils.experiment.shipped): export, install instead of training, retrain on request,
and the cpu profile's shipped source detector against today's code."""

import numpy as np
import pytest

from tlutils.experiment import RunConfig, resolve, run
from tlutils.experiment import shipped as shipping
from tlutils.experiment.results import load_results
from tlutils.experiment.store import read_classes
from tlutils.transfer import load_detector

SOURCE = RunConfig(stage="source", source_data="belgium", strategy="scratch", profile="ci")
TARGET = RunConfig(target_data="germany", strategy="finetune", num_target_images=10, profile="ci")


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("data")


@pytest.fixture(scope="module")
def trained(tmp_path_factory, data_dir):
    """A results folder with the ci source run trained in it, and its rows."""
    results = tmp_path_factory.mktemp("trained")
    return results, run(SOURCE, results, data_dir=data_dir, verbose=0)


@pytest.fixture(scope="module")
def exported(trained, tmp_path_factory, data_dir):
    results, _ = trained
    return shipping.export_shipped(SOURCE, results, tmp_path_factory.mktemp("shipped"), data_dir=data_dir)


@pytest.fixture
def ships(exported, monkeypatch):
    """tlutils ships the exported ci run (and nothing else) during the test."""
    monkeypatch.setattr(shipping, "SHIPPED_DIR", exported.parent)
    return exported


def test_export_writes_the_run_its_key_and_both_scores(exported, trained):
    results, rows = trained
    manifest = shipping.read_manifest(exported)
    assert exported.name == manifest["key"] == resolve(SOURCE).key
    assert sorted(path.name for path in exported.iterdir()) == sorted(shipping.FILES)
    assert manifest["config"] == resolve(SOURCE).to_dict()
    assert manifest["val_map50_float32"] == pytest.approx(rows["val_map50"].iloc[-1], abs=1e-6)
    assert 0.0 <= manifest["val_map50_shipped"] <= 1.0
    assert manifest["weights_sha256"] == shipping.sha256(exported / "weights.npz")


def test_shipped_weights_are_the_runs_rounded_to_float16_bit_for_bit(exported, trained):
    results, rows = trained
    original = load_detector(results / rows["checkpoint"].iloc[-1]).get_weights()
    loaded = shipping.load_shipped_detector(exported).get_weights()
    assert len(loaded) == len(original)
    for mine, theirs in zip(loaded, original):
        assert mine.dtype == np.float32
        np.testing.assert_array_equal(mine, theirs.astype(np.float16).astype(np.float32))


def test_run_installs_a_shipped_run_instead_of_training_it(ships, trained, tmp_path, data_dir):
    _, rows = trained
    installed = run(SOURCE, tmp_path, data_dir=data_dir, verbose=0)
    run_dir = tmp_path / "runs" / resolve(SOURCE).name
    assert shipping.is_installed(run_dir) and not (run_dir / "state").exists()  # nothing trained here
    np.testing.assert_allclose(installed["loss"], rows["loss"], rtol=1e-12)
    assert list(installed["run_key"]) == list(rows["run_key"])
    assert read_classes(run_dir) == read_classes(ships)
    detector = load_detector(tmp_path / installed["checkpoint"].iloc[-1])
    for mine, theirs in zip(detector.get_weights(), shipping.load_shipped_detector(ships).get_weights()):
        np.testing.assert_array_equal(mine, theirs)


def test_a_target_run_starts_from_the_installed_source(ships, tmp_path, data_dir):
    rows = run(TARGET, tmp_path, data_dir=data_dir, verbose=0)
    assert rows["source_run_key"].iloc[0] == ships.name
    table = load_results(tmp_path)
    assert set(table["run_key"]) == {ships.name, resolve(TARGET).key}
    assert shipping.is_installed(tmp_path / "runs" / resolve(SOURCE).name)


def test_shipped_false_trains_over_an_installed_copy(ships, trained, tmp_path, data_dir):
    _, rows = trained
    run(SOURCE, tmp_path, data_dir=data_dir, verbose=0)
    retrained = run(SOURCE, tmp_path, data_dir=data_dir, verbose=0, shipped=False)
    run_dir = tmp_path / "runs" / resolve(SOURCE).name
    assert not shipping.is_installed(run_dir) and (run_dir / "state").exists()
    np.testing.assert_array_equal(retrained["val_map50"], rows["val_map50"])  # ci: float32, deterministic here
    assert len(load_results(tmp_path)) == len(rows)  # the installed rows were replaced, not added to


def test_a_retrain_killed_over_an_installed_copy_resumes_and_never_reads_the_copy_back(ships, trained, tmp_path,
                                                                                     data_dir):
    import keras

    class Killed(RuntimeError):
        pass

    class KillAfterFirstEpoch(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            raise Killed("killed after epoch 1")

    _, rows = trained
    run(SOURCE, tmp_path, data_dir=data_dir, verbose=0)  # the installed copy
    with pytest.raises(Killed):
        run(SOURCE, tmp_path, data_dir=data_dir, verbose=0, shipped=False, callbacks=[KillAfterFirstEpoch()])
    assert load_results(tmp_path).empty  # the copy's rows went before training began
    resumed = run(SOURCE, tmp_path, data_dir=data_dir, verbose=0, shipped=False)
    np.testing.assert_array_equal(resumed["val_map50"], rows["val_map50"])
    np.testing.assert_array_equal(resumed["loss"], rows["loss"])


def test_export_refuses_an_installed_copy(ships, tmp_path, data_dir):
    run(SOURCE, tmp_path, data_dir=data_dir, verbose=0)
    with pytest.raises(ValueError, match="installed"):
        shipping.export_shipped(SOURCE, tmp_path, tmp_path / "again", data_dir=data_dir)


def test_nothing_is_installed_without_a_shipped_run_of_that_key(ships, tmp_path):
    other = resolve(SOURCE.replace(seed=1))
    assert not shipping.install_shipped(tmp_path, other)
    assert not (tmp_path / "results.csv").exists()


def test_a_replaced_weights_file_is_refused(exported, tmp_path):
    folder = tmp_path / exported.name
    folder.mkdir()
    for name in shipping.FILES:
        (folder / name).write_bytes((exported / name).read_bytes())
    with np.load(folder / "weights.npz") as stored:
        arrays = {name: stored[name] for name in stored.files}
    arrays["w0"] = arrays["w0"] + np.float16(1)
    with open(folder / "weights.npz", "wb") as handle:
        np.savez_compressed(handle, **arrays)
    with pytest.raises(ValueError, match="SHA-256"):
        shipping.load_shipped_detector(folder)


def test_export_refuses_a_run_that_has_not_finished(tmp_path):
    with pytest.raises(ValueError, match="has not finished"):
        shipping.export_shipped(SOURCE, tmp_path, tmp_path / "shipped")


CPU_SOURCE = RunConfig(stage="source", source_data="belgium", strategy="scratch", profile="cpu")


def shipped_cpu_source():
    """The folder of the cpu profile's shipped source detector, failing if tlutils ships it no longer
    under today's key (a change of the key's meaning must re-export it: tlutils pretrain source)."""
    folders = [path for path in shipping.SHIPPED_DIR.iterdir() if (path / "manifest.json").is_file()]
    cpu = [path for path in folders if shipping.read_manifest(path)["config"]["profile"] == "cpu"]
    assert cpu, f"no cpu source detector in {shipping.SHIPPED_DIR}"
    key = resolve(CPU_SOURCE).key
    assert [path.name for path in cpu] == [key], (
        f"the shipped cpu source's key {[path.name for path in cpu]} is not today's {key}: re-export it "
        "with `tlutils pretrain source --profile cpu`")
    return cpu[0]


def test_the_cpu_source_detector_is_shipped_under_todays_key():
    folder = shipped_cpu_source()
    manifest = shipping.read_manifest(folder)
    assert manifest["config"] == resolve(CPU_SOURCE).to_dict()
    assert manifest["config"]["mixed_precision"] == "float32"
    assert sum((folder / name).stat().st_size for name in shipping.FILES) < 8 * 2**20


def test_the_shipped_cpu_source_reproduces_its_recorded_val_map(tmp_path):
    """It loads into today's model and scores what the manifest says on the deterministic val set."""
    folder = shipped_cpu_source()
    manifest = shipping.read_manifest(folder)
    detector = shipping.load_shipped_detector(folder)
    score = shipping.val_map50(detector, resolve(CPU_SOURCE), read_classes(folder), data_dir=tmp_path)
    # float32 inference on another CPU sums in another order: a near-tie may rank differently
    assert score == pytest.approx(manifest["val_map50_shipped"], abs=2e-3)
    assert manifest["val_map50_shipped"] == pytest.approx(manifest["val_map50_float32"], abs=0.01)
