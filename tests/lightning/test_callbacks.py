import pytest

from gdl_pyg.lightning.callbacks import LearningCurvePlot, ResultsPrinter

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_learning_curve_plot_draws_recorded_history(tmp_path):
    cb = LearningCurvePlot(metrics=["loss", "acc"])
    assert repr(cb) == "LearningCurvePlot(metrics=['loss', 'acc'], filename='learning_curves.png')"
    cb.history = {"train/loss": {0: 2.0, 1: 1.0, 2: 0.5}, "val/loss": {0: 2.2, 1: 1.4},
                  "train/acc": {0: 0.1, 1: 0.5, 2: 0.8}}
    path = cb.plot(["loss", "acc"], str(tmp_path / "sub" / "curves.png"))
    data = open(path, "rb").read()
    assert data[:8] == PNG_MAGIC
    import matplotlib.image
    img = matplotlib.image.imread(path)
    assert img.shape[1] > img.shape[0] > 100  # two panels side by side


def test_learning_curve_plot_arguments():
    with pytest.raises(TypeError, match="list of metric names"):
        LearningCurvePlot(metrics="loss")
    with pytest.raises(ValueError, match="at least one"):
        LearningCurvePlot(metrics=[])
    with pytest.raises(ValueError, match=".png"):
        LearningCurvePlot(filename="curves.pdf")


def test_results_table():
    results = {"test/acc_upright": 0.98, "test/acc_rotated": 0.5, "test/loss_upright": 0.1,
               "test/loss_rotated": 2.0, "test/f1_rotated": 0.45}
    table = ResultsPrinter.table(results, ["upright", "rotated"])
    lines = table.splitlines()
    assert lines[0].split() == ["set", "acc", "f1", "loss"]
    rows = {line.split()[0]: line.split()[1:] for line in lines[2:]}
    assert rows["upright"] == ["0.9800", "-", "0.1000"]
    assert rows["rotated"] == ["0.5000", "0.4500", "2.0000"]
    # unnamed single test set
    assert ResultsPrinter.table({"test/acc": 0.25}).splitlines()[2].split() == ["test", "0.2500"]
    assert repr(ResultsPrinter()) == "ResultsPrinter(filename='test_results.json')"
