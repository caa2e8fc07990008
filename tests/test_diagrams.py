"""labkit.plots.flow_diagram: the block diagrams of the book (threat models, attack pipelines)."""
import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import pytest

from labkit.plots import flow_diagram


def test_flow_diagram_draws_one_box_per_node_and_one_arrow_per_edge():
    fig = flow_diagram(
        {"a": (1, 1, "data $X$", "data"), "b": (5, 1, "model $f$"), "c": (9, 1, "$\\vdots$", "plain")},
        [("a", "b", "train"), ("b", "c", "", {"dashed": True, "rad": 0.2})],
    )
    ax = fig.axes[0]
    texts = {t.get_text(): t for t in ax.texts}
    assert {"data $X$", "model $f$", "$\\vdots$", "train"} <= set(texts)
    assert texts["data $X$"].get_bbox_patch() is not None and texts["$\\vdots$"].get_bbox_patch() is None
    arrows = [c for c in ax.get_children() if type(c).__name__ == "Annotation"]
    assert len(arrows) == 2
    assert arrows[1].arrow_patch.get_linestyle() == "--"
    plt.close(fig)


@pytest.mark.parametrize(
    "boxes, arrows, message",
    [
        ({"a": (0, 0)}, [], "must be"),
        ({"a": (0, 0, "x", "cloud")}, [], "kind must be one of"),
        ({"a": (0, 0, "x")}, [("a", "nowhere")], "no box named 'nowhere'"),
        ({"a": (0, 0, "x")}, [("a",)], "an arrow must be"),
    ],
)
def test_flow_diagram_rejects_bad_specs(boxes, arrows, message):
    with pytest.raises(ValueError, match=message):
        flow_diagram(boxes, arrows)
    plt.close("all")
