"""Learning curves from hand-made run folders: stages chained on one step axis, missing runs skipped."""

import json

import numpy as np

from sepbn.study.curves import plot_learning_curves, read_curves


def _stage(folder, steps, losses, val):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "train.csv").write_text("step,epoch,loss,lr\n" + "".join(
        f"{s},0,{v},0.1\n" for s, v in zip(steps, losses)) + "99,0,")  # a row cut by a kill is ignored
    (folder / "val.csv").write_text("epoch,step,nme\n" + "".join(f"{e},{s},{n}\n" for e, s, n in val))


def test_two_stages_follow_each_other_and_the_plot_is_written(tmp_path):
    run = tmp_path / "cnt" / "seed0"
    _stage(run / "stage1", [10, 20], [1.0, 0.5], [(1, 20, 0.09)])
    _stage(run / "stage2", [10, 20], [0.4, 0.3], [(1, 20, 0.07)])
    run.mkdir(parents=True, exist_ok=True)
    (run / "run.json").write_text(json.dumps({"stages": [{"out": str(run / "stage1")}, {"out": str(run / "stage2")}]}))
    c = read_curves(run)
    np.testing.assert_array_equal(c["loss"][:, 0], [10, 20, 30, 40])
    np.testing.assert_array_equal(c["nme"], [[20, 0.09], [40, 0.07]])
    (tmp_path / "study.json").write_text(json.dumps({"seeds": [0, 1], "variants": [{"name": "cnt"}]}))
    path = plot_learning_curves(tmp_path, tmp_path / "curves.png")
    assert path.stat().st_size > 1000  # seed 1 is missing and skipped


def test_no_logged_step_means_no_plot(tmp_path):
    (tmp_path / "study.json").write_text(json.dumps({"seeds": [0], "variants": [{"name": "bn"}]}))
    assert plot_learning_curves(tmp_path, tmp_path / "curves.png") is None
    assert not (tmp_path / "curves.png").exists()


def test_without_any_validation_the_plot_has_the_loss_panel_alone(tmp_path):
    import matplotlib.image

    for name, val in (("with", [(1, 20, 0.09)]), ("without", [])):
        out = tmp_path / name
        run = out / "bn" / "seed0"
        _stage(run / "stage1", [10, 20], [1.0, 0.5], val)
        (run / "run.json").write_text(json.dumps({"stages": [{"out": str(run / "stage1")}]}))
        (out / "study.json").write_text(json.dumps({"seeds": [0], "variants": [{"name": "bn"}]}))
        plot_learning_curves(out, out / "curves.png")
    wide, narrow = (matplotlib.image.imread(tmp_path / n / "curves.png").shape[1] for n in ("with", "without"))
    assert narrow < 0.6 * wide  # one panel (5.5 in) instead of two (10 in)
