"""The imagined-Shapes probe: named colour dominant, one object (synthesis/probe.py)."""
import numpy as np

from data.shapes import BACKGROUND, COLOURS, SHAPES, _draw
from synthesis.probe import classify, probe_images


def scene(objects, size=64):
    return _draw([{"size": "large", **o} for o in objects], size)


def test_real_single_objects_score_full_marks():
    rng = np.random.default_rng(0)
    images, colours = [], []
    for c in COLOURS:
        for s in SHAPES:
            images.append(scene([{"colour": c, "shape": s, "x": float(rng.uniform(.3, .7)),
                                  "y": float(rng.uniform(.3, .7))}]))
            colours.append(c)
    out = probe_images(np.stack(images), colours)
    assert out["colour_dominant"] == 100.0 and out["one_object"] == 100.0 and out["images"] == 40


def test_objects_are_counted_and_the_wrong_colour_is_caught():
    two = scene([{"colour": "red", "shape": "circle", "x": 0.25, "y": 0.25},
                 {"colour": "blue", "shape": "square", "x": 0.75, "y": 0.75}])
    empty = np.zeros((64, 64, 3), np.uint8) + np.array(BACKGROUND, np.uint8)
    found = classify(np.stack([two, empty]))
    assert found[0][1] == 2 and found[0][0] in ("red", "blue") and found[1] == (None, 0)
    one_blue = scene([{"colour": "blue", "shape": "diamond", "x": 0.5, "y": 0.5}])
    assert probe_images(one_blue[None], ["red"])["colour_dominant"] == 0.0


def test_noise_scores_low():
    noise = np.random.default_rng(1).integers(0, 256, size=(16, 64, 64, 3), dtype=np.uint8)
    out = probe_images(noise, ["red"] * 16)
    assert out["one_object"] < 50 and out["colour_dominant"] < 50
