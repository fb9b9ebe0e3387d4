"""EvaluationResult: plots, metrics.json, the self-contained HTML report."""

import base64
import json
import re
from io import BytesIO

import numpy as np
import pytest
from PIL import Image

from imgrec.evaluate import EvaluationResult
from imgrec.evaluate.plots import PhaseSpan, phase_spans, phase_ticks, plot_training_curves

CLASSES = ["ant", "bee", "wasp"]
HISTORY = [
    {
        "epoch": 1,
        "phase": "head",
        "train_loss": 1.0,
        "train_acc": 0.5,
        "val_loss": 0.9,
        "val_acc": 0.55,
        "lr": 1e-3,
    },
    {
        "epoch": 2,
        "phase": "head",
        "train_loss": 0.8,
        "train_acc": 0.6,
        "val_loss": 0.85,
        "val_acc": 0.6,
        "lr": 1e-3,
    },
    {
        "epoch": 3,
        "phase": "finetune",
        "train_loss": 0.5,
        "train_acc": 0.8,
        "val_loss": 0.7,
        "val_acc": 0.7,
        "lr": 1e-4,
    },
]


def _image(path, colour):
    Image.new("RGB", (300, 200), colour).save(path)
    return str(path)


@pytest.fixture(scope="module")
def result(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("images")
    paths = [
        _image(tmp_path / "right_ant.jpg", "red"),
        _image(tmp_path / "right_bee.png", "green"),
        _image(tmp_path / "<b>x.jpg", "blue"),  # wrong: true wasp, predicted bee
        _image(tmp_path / "wrong_ant.jpg", "white"),  # wrong: true ant, predicted wasp
        str(tmp_path / "gone_missing.jpg"),  # wrong, file does not exist
        str(tmp_path / "corrupt.jpg"),  # wrong, not an image
    ]
    (tmp_path / "corrupt.jpg").write_bytes(b"not a jpeg")
    probs = np.array(
        [
            [0.9, 0.05, 0.05],
            [0.1, 0.8, 0.1],
            [0.1, 0.6, 0.3],
            [0.2, 0.1, 0.7],
            [0.1, 0.5, 0.4],
            [0.3, 0.1, 0.6],
        ]
    )
    targets = np.array([0, 1, 2, 0, 2, 1])
    return EvaluationResult.from_predictions(
        probs,
        targets,
        CLASSES,
        paths,
        history=HISTORY,
        title="Insects",
        info={"model": "tf_efficientnet_lite0"},
        skipped=[("broken.gif", "cannot decode")],
    )


@pytest.fixture(scope="module")
def report(result, tmp_path_factory):
    """Rendered once: drawing the plots is the slow part of these tests."""
    return result.save_report(tmp_path_factory.mktemp("run") / "sub" / "report.html")


@pytest.fixture(scope="module")
def html(report):
    return report.read_text(encoding="utf-8")


def _gallery(html):
    start = html.index("Most confidently wrong")
    end = html.index("Skipped files") if "Skipped files" in html else len(html)
    return html[start:end]


def test_report_is_single_self_contained_file(report, html):
    assert sorted(p.name for p in report.parent.iterdir()) == ["report.html"]
    # confusion, PR, reliability, coverage, training curves
    assert html.count("data:image/png;base64,") == 5
    assert "data:image/jpeg;base64," in html  # thumbnails
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", html, re.IGNORECASE)
    assert "<script" not in html and "<link" not in html and "@import" not in html
    assert "tf_efficientnet_lite0" in html and "Insects" in html
    assert "broken.gif" in html and "cannot decode" in html


def test_gallery_shows_mistakes_only_most_confident_first(html):
    gallery = _gallery(html)

    assert "wrong_ant.jpg" in gallery
    assert "gone_missing.jpg" in gallery and "corrupt.jpg" in gallery  # text-only tiles
    assert "image unavailable" in gallery
    assert "right_ant.jpg" not in gallery and "right_bee.png" not in gallery
    # wrong_ant (0.7 on the wrong class) comes before corrupt (0.6) and <b>x (0.6).
    assert gallery.index("wrong_ant.jpg") < gallery.index("corrupt.jpg")
    assert gallery.count('class="tile"') == 4


def test_file_names_are_escaped(html):
    assert "&lt;b&gt;x.jpg" in html
    assert "<b>x.jpg" not in html


def test_thumbnails_are_small(html):
    for uri in re.findall(r"data:image/jpeg;base64,([A-Za-z0-9+/=]+)", html):
        with Image.open(BytesIO(base64.b64decode(uri))) as thumb:
            assert max(thumb.size) <= 160


def test_save_plots_writes_valid_pngs(result, tmp_path):
    written = result.save_plots(tmp_path / "plots")

    assert set(written) == {
        "confusion_matrix",
        "pr_curves",
        "reliability",
        "coverage",
        "training_curves",
    }
    for name, path in written.items():
        assert path.name == f"{name}.png"
        with Image.open(path) as png:
            assert png.format == "PNG"
            assert png.size[0] > 100


def test_without_history_binary_and_all_correct(tmp_path):
    paths = [_image(tmp_path / f"{i}.png", "gray") for i in range(3)]
    probs = np.array([[0.8, 0.2], [0.3, 0.7], [0.6, 0.4]])
    res = EvaluationResult.from_predictions(probs, np.array([0, 1, 0]), ["no", "yes"], paths)

    plots = {"confusion_matrix", "pr_curves", "reliability", "coverage"}
    assert set(res.save_plots(tmp_path / "plots")) == plots
    html = res.save_report(tmp_path / "report.html").read_text(encoding="utf-8")
    assert html.count("data:image/png;base64,") == 4
    assert "Training curves" not in html
    assert "No misclassified samples" in html
    assert res.accuracy == 1.0 and res.macro_f1 == 1.0


def test_metrics_json_and_to_json(result, tmp_path):
    result.save_metrics(tmp_path / "metrics.json")
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved["accuracy"] == pytest.approx(2 / 6)
    assert saved["classes"] == CLASSES

    data = json.loads(json.dumps(result.to_json()))
    assert data["metrics"] == saved
    first = data["predictions"][3]
    assert first["target"] == "ant" and first["predicted"] == "wasp"
    assert first["confidence"] == pytest.approx(0.7)
    assert first["path"].endswith("wrong_ant.jpg")


def test_mismatched_paths_are_rejected():
    with pytest.raises(ValueError, match="paths"):
        EvaluationResult.from_predictions(
            np.array([[0.5, 0.5]]), np.array([0]), ["a", "b"], ["x.jpg", "y.jpg"]
        )


def test_report_reads_calibration_and_coverage_in_plain_words(result, html):
    assert "Calibration" in html and "Coverage vs accuracy" in html
    calibration = result.metrics["calibration"]
    assert result.ece == calibration["ece"] and calibration["temperature"] == 1.0
    busiest = max(calibration["bins"], key=lambda b: b["count"])
    assert f"When the model says {busiest['confidence']:.0%} it is right" in html
    assert f"{busiest['accuracy']:.0%} of the time" in html
    assert "--min-confidence" in html or "no threshold reaches" in html


def test_report_links_to_the_model_card_only_when_given(result, html, tmp_path):
    assert "model_card.html" not in html and "Read the model card" not in html
    linked = result.save_report(tmp_path / "report.html", card_href="model_card.html")
    text = linked.read_text(encoding="utf-8")
    link = '<a href="model_card.html">Read the model card</a>'
    assert link in text
    assert text.index(link) < text.index("Per-class metrics")  # near the top


def _rows(phase, n):
    return [
        {"phase": phase, "epoch": i, "train_loss": 1 / i, "val_loss": 1.1 / i, "val_acc": 0.5}
        for i in range(1, n + 1)
    ]


def _labels(fig):
    """Bottom tick labels, top (phase) tick labels, x label and caption of the loss panel."""
    loss = fig.axes[0]
    (top,) = loss.child_axes
    return (
        [t.get_text() for t in loss.get_xticklabels()],
        [t.get_text() for t in top.get_xticklabels()],
        loss.get_xlabel(),
        " ".join(t.get_text() for t in fig.texts),
    )


def test_training_curves_number_each_phase_from_one():
    # HISTORY's epoch column runs on (1, 2, 3); the plot counts each phase from 1 regardless
    assert phase_spans(HISTORY) == [PhaseSpan("head", 1, 2), PhaseSpan("finetune", 3, 1)]
    bottom, top, xlabel, caption = _labels(plot_training_curves(HISTORY))
    assert bottom == ["1", "2", "1"]
    assert top == ["head 1\u20132", "fine-tune"]
    assert xlabel == "Epoch, counted from 1 in each phase"
    assert "head \u2014 only the new last layer learns" in caption
    assert "then fine-tune \u2014 the whole network learns" in caption


@pytest.mark.parametrize(
    ("history", "top", "xlabel"),
    [
        (_rows("finetune", 4), ["fine-tune 1\u20134"], "Epoch"),  # cnn-scratch: no head phase
        (_rows("head", 3), ["head 1\u20133"], "Epoch"),  # --epochs 0, or a classic head
        (_rows("search", 2), ["search 1\u20132"], "Candidate setting"),  # classic families
    ],
)
def test_training_curves_of_one_phase(history, top, xlabel):
    bottom, top_labels, x, caption = _labels(plot_training_curves(history))
    assert bottom == [str(i) for i in range(1, len(history) + 1)]
    assert (top_labels, x) == (top, xlabel)
    assert caption.startswith("Phase: ") and "then" not in caption


def test_training_curves_without_phases_plot_plain_epochs():
    history = [{k: v for k, v in row.items() if k != "phase"} for row in HISTORY]
    fig = plot_training_curves(history)
    assert fig.axes[0].child_axes == [] and fig.texts == []
    assert [t.get_text() for t in fig.axes[0].get_xticklabels()] == ["1", "2", "3"]


def test_long_phases_thin_their_ticks_but_each_starts_at_one():
    spans = phase_spans(_rows("head", 8) + _rows("finetune", 60))
    ticks, labels = phase_ticks(spans)
    assert len(ticks) <= 14
    assert labels[0] == "1" and ticks[0] == 1
    first_finetune = ticks.index(9)  # row 9 is fine-tune epoch 1
    assert labels[first_finetune:] == ["1", "10", "20", "30", "40", "50", "60"]
