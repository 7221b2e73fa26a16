"""Where things live (``tlutils.paths``): ``$TLUTILS_ROOT`` moves runs/, data/ and figures/, and
``shared_data_dir`` finds ``../shared/data`` beside the project or says there is none."""

from __future__ import annotations

from tlutils.paths import data_dir, figures_dir, project_root, runs_dir, shared_data_dir

from conftest import REPO_ROOT


def test_tlutils_root_moves_every_output_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("TLUTILS_ROOT", str(tmp_path / "work"))
    assert project_root() == (tmp_path / "work").resolve()
    assert [data_dir(), figures_dir(), runs_dir("ci")] == [tmp_path.resolve() / "work" / name
                                                             for name in ("data", "figures", "runs/ci")]


def test_the_course_under_tlutils_root_runs_the_checkouts_notebooks(tmp_path, monkeypatch):
    from tlutils.course import course_notebooks

    monkeypatch.setenv("TLUTILS_ROOT", str(tmp_path / "work"))  # a folder for outputs only: no notebooks/
    assert [path.name for path in course_notebooks(["04", "5"])] == ["04_source_detector.ipynb",
                                                                      "05_transfer_study.ipynb"]
    assert course_notebooks()[0].parent == REPO_ROOT / "notebooks"


def test_the_course_creates_a_new_tlutils_root(tmp_path, monkeypatch, capsys):
    import tlutils.course as course

    monkeypatch.setenv("TLUTILS_ROOT", str(tmp_path / "new" / "work"))  # not there yet; the plan runs in it
    monkeypatch.setattr(course, "execute_notebook", lambda *args, **kwargs: 0.0)
    assert course.run_course("ci", only=["02"], estimate=False) == 0
    assert (tmp_path / "new" / "work" / "runs" / "ci" / "notebooks").is_dir()
    assert "02_ssd_vgg16.ipynb" in capsys.readouterr().out


def test_shared_data_is_the_folder_beside_the_project_or_none(tmp_path, monkeypatch):
    project = tmp_path / "project"
    assert shared_data_dir(project) is None
    (tmp_path / "shared").mkdir()
    assert shared_data_dir(project) is None  # shared/ without data/
    (tmp_path / "shared" / "data").mkdir()
    assert shared_data_dir(project) == tmp_path.resolve() / "shared" / "data"
    monkeypatch.setenv("TLUTILS_ROOT", str(project))  # the default project follows $TLUTILS_ROOT
    assert shared_data_dir() == tmp_path.resolve() / "shared" / "data"


def test_the_course_machines_shared_data_is_found(shared_dir, monkeypatch):
    monkeypatch.delenv("TLUTILS_ROOT", raising=False)
    monkeypatch.chdir(REPO_ROOT)
    assert shared_data_dir() == (shared_dir / "data").resolve()
    assert (shared_data_dir() / "gtsdb-sample" / "gt.txt").is_file()
