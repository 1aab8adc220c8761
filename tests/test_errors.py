"""User mistakes are one line and exit 2; anything else is a bug: traceback kept, exit 1."""
import pytest

from kapps.cli_models import main as models_main
from retrain.cli.predict import main as predict_main
from kapps.errors import BUG_LINE, UserError, run_cli
from retrain.cli.retrain import main as retrain_main
from tuning.cli_tune import main as tune_main


def test_an_internal_error_keeps_its_traceback_and_says_it_is_a_bug(monkeypatch, capsys,
                                                                   tmp_path):
    """A ValueError from inside kapps or Keras is not the user's fault: it must not pass
    for a one-line user error."""
    import retrain.job

    def broken(config):
        raise ValueError("an invariant inside kapps broke")

    monkeypatch.setattr(retrain.job, "resolve", broken)
    assert retrain_main(["--image_dir", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err and "in broken" in err
    assert "ValueError: an invariant inside kapps broke" in err
    assert err.rstrip().endswith(BUG_LINE)


def test_a_user_error_is_one_line_with_exit_status_2(capsys):
    def mistake(argv):
        raise UserError("--flag x: no such thing; pass --flag y")

    assert run_cli(mistake, []) == 2
    assert capsys.readouterr().err == "error: --flag x: no such thing; pass --flag y\n"


@pytest.mark.parametrize("main, argv, message", [
    (models_main, ["summary", "resnet9000"], "Valid names"),
    (models_main, ["summary", "lenet5", "--input_size", "4"], "--input_size must be at least"),
    (tune_main, ["--image_dir", "x", "--max_trials", "0"], "--max_trials must be at least 1"),
    (tune_main, ["--image_dir", ""], "No image folder given"),
])
def test_mistakes_that_raised_value_error_are_user_errors(capsys, main, argv, message):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and err.count("\n") == 1


def test_unreadable_labels_or_translations_are_user_errors(tmp_path, capsys):
    """A folder given for a file is the user's mistake (it raised IsADirectoryError)."""
    model = tmp_path / "model.keras"
    model.write_bytes(b"never loaded: the labels are read first")
    (tmp_path / "labels.txt").write_text("a\nb\n", encoding="utf-8")
    for flag, value in (("--labels", tmp_path), ("--translations", tmp_path)):
        assert predict_main(["--model", str(model), flag, str(value), str(model)]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: cannot read ") and flag in err and err.count("\n") == 1


def test_an_output_folder_that_cannot_be_written_stops_before_any_work(tmp_path, capsys,
                                                                      monkeypatch):
    """An --output_dir under a file, or in a folder without write permission, is said at
    once: not after an hour of training, as a traceback from the export."""
    import os

    import retrain.job

    (tmp_path / "classes" / "a").mkdir(parents=True)
    a_file = tmp_path / "notes.txt"
    a_file.write_text("not a folder", encoding="utf-8")
    monkeypatch.setattr(retrain.job, "prepare_data", lambda *a, **k: pytest.fail("ran"))
    argv = ["--image_dir", str(tmp_path / "classes"), "--weights", "none", "--fine_tune", "all",
            "--architecture", "small_cnn", "--bottleneck_dir", str(tmp_path / "cache")]
    assert retrain_main(argv + ["--output_dir", str(a_file / "out")]) == 2
    err = capsys.readouterr().err
    assert "--output_dir" in err and "is a file, not a folder" in err and err.count("\n") == 1

    locked = tmp_path / "locked"
    locked.mkdir()
    real_access = os.access
    # Tests may run as root, for whom every folder is writable: the permission is faked.
    monkeypatch.setattr(os, "access", lambda p, mode: p != str(locked) and real_access(p, mode))
    assert retrain_main(argv + ["--output_dir", str(locked / "new" / "out")]) == 2
    err = capsys.readouterr().err
    assert f"cannot write in {locked}" in err and err.count("\n") == 1
    assert not (locked / "new").exists()  # nothing created on the way to the error


def test_a_figure_folder_under_a_file_is_said_before_the_model_loads(tmp_path, capsys):
    a_file = tmp_path / "notes.txt"
    a_file.write_text("not a folder", encoding="utf-8")
    argv = ["--model", str(tmp_path / "no_model"), "--save_figure", str(a_file / "figs"),
            str(a_file)]
    assert predict_main(argv) == 2
    err = capsys.readouterr().err
    assert "--save_figure" in err and "is a file, not a folder" in err and err.count("\n") == 1
