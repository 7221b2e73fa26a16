"""Notebooks 01 and 05 run under papermill with their real-data parameters (ci profile; about half a minute each).

``GTSDB_DATA`` names a GTSDB folder of the user's and ``BTSD_DATA`` is left at None on a machine
without ``../shared/data`` (``$TLUTILS_ROOT`` moves the project into a temporary folder): the GTSDB part
reads the user's folder and the BTSD part falls back to the stand-in, without error.
"""

from __future__ import annotations

import pytest

from tlutils.course import KERNEL_ARGUMENTS, KERNEL_ENV
from tlutils.data.export import benchmark_format_example, real_format_example

from conftest import REPO_ROOT


def execute(notebook: str, parameters: dict, project, tmp_path, monkeypatch) -> str:
    """Run ``notebooks/<notebook>.ipynb`` with ``parameters``, the project moved to ``project``; what it printed."""
    import nbformat
    import papermill

    monkeypatch.setenv("TLUTILS_ROOT", str(project))
    for name, value in KERNEL_ENV.items():
        monkeypatch.setenv(name, value)
    output = tmp_path / f"{notebook}.ipynb"
    papermill.execute_notebook(str(REPO_ROOT / "notebooks" / f"{notebook}.ipynb"), str(output),
                               parameters=parameters, cwd=str(tmp_path),
                               progress_bar=False, kernel_name="python3", extra_arguments=KERNEL_ARGUMENTS)
    return "".join(output_["text"] for cell in nbformat.read(output, as_version=4).cells
                   if cell.cell_type == "code" for output_ in cell.outputs if output_.get("name") == "stdout")


@pytest.mark.slow
def test_notebook_01_reads_a_gtsdb_folder_given_as_a_parameter_without_any_btsd(tmp_path, monkeypatch):
    mine = benchmark_format_example("germany", 3, 128, data_dir=tmp_path / "mine").gtsdb  # the user's GTSDB
    project = tmp_path / "project"  # no ../shared beside it: BTSD_DATA = None takes the stand-in
    printed = execute("01_data", {"PROFILE": "ci", "GTSDB_DATA": mine}, project, tmp_path, monkeypatch)
    stand_in = project.resolve() / "data" / "real-format-example" / "germany_6x400_benchmarks"
    assert f"GTSDB: {mine}\nBTSD:  btsd:{stand_in / 'BTSD_training_GTclear.txt'}\n" in printed
    assert "\nGTSDB: 3 images (0 background)" in printed  # the summary of the user's 3 frames
    assert (project / "runs" / "ci" / "figures" / "01_box_statistics.png").is_file()


@pytest.mark.slow
def test_notebook_05_runs_its_study_on_the_data_specs_given_as_parameters(tmp_path, monkeypatch):
    from tlutils.experiment import RunConfig, load_results

    mine = real_format_example("germany", 24, 192, data_dir=tmp_path / "mine").coco  # the user's COCO export
    project = tmp_path / "project"
    parameters = {"PROFILE": "ci", "TARGET_DATA": [mine], "STRATEGIES": ["scratch", "finetune"],
                  "FREEZE_DEPTHS": ["freeze:fc"]}
    printed = execute("05_transfer_study", parameters, project, tmp_path, monkeypatch)
    spec = RunConfig(target_data=mine, num_target_images=1).target_data
    results = load_results(project / "runs" / "ci")
    target = results[results["stage"] == "target"]
    assert set(target["data"]) == {spec} and set(results.loc[results["stage"] == "source", "data"]) == {"synth:belgium"}
    assert set(target["strategy"]) == {"scratch", "finetune", "freeze:fc"}  # the study and the depth curve
    assert f"--source-data synth:belgium --target-data {mine} --classes name " in printed  # the printed commands
    assert (project / "runs" / "ci" / "figures" / "05_transfer_map_vs_images.png").is_file()
