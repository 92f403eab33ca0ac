"""The built-in Shapes set: determinism, shapes, captions that are true of their pictures, cache."""
import itertools
import os

import numpy as np
import pytest

from data import shapes
from data.records import DataError
from data.shapes import (COLOUR_RGB, COLOURS, RELATIONS, SHAPES, SIZES, generate_scenes,
                         load_shapes_split)

N = 40


@pytest.fixture(scope="module")
def scenes64():
    return generate_scenes(N, seed=3)


def _mentions(caption: str) -> list[tuple[int, str, str, str | None]]:
    """(token index, colour, shape, size or None) for every "[size] colour shape" in the caption."""
    tokens = caption.split()
    found = []
    for i in range(len(tokens) - 1):
        if tokens[i] in COLOURS and tokens[i + 1] in SHAPES:
            size = tokens[i - 1] if i > 0 and tokens[i - 1] in SIZES else None
            found.append((i, tokens[i], tokens[i + 1], size))
    return found


def _find(objects: list[dict], colour: str, shape: str) -> dict:
    matches = [o for o in objects if o["colour"] == colour and o["shape"] == shape]
    assert len(matches) == 1, (colour, shape, objects)
    return matches[0]


def test_deterministic_per_seed():
    a = generate_scenes(20, seed=7)
    b = generate_scenes(20, seed=7)
    c = generate_scenes(20, seed=8)
    np.testing.assert_array_equal(a[0], b[0])
    assert a[1] == b[1] and a[2] == b[2]
    assert not np.array_equal(a[0], c[0])
    assert a[1] != c[1]


@pytest.mark.parametrize("size", [32, 64, 128])
def test_shapes_and_dtypes(size):
    images, captions, scenes = generate_scenes(12, seed=0, image_size=size)
    assert images.shape == (12, size, size, 3) and images.dtype == np.uint8
    assert len(captions) == len(scenes) == 12
    for caps, scene in zip(captions, scenes):
        assert len(caps) == 5 and len(set(caps)) == 5
        assert all(c and c == c.strip().lower() and "  " not in c for c in caps)
        assert 1 <= len(scene["objects"]) <= 3


def test_max_objects():
    _, _, scenes = generate_scenes(30, seed=1, max_objects=1)
    assert all(len(s["objects"]) == 1 for s in scenes)
    _, _, scenes = generate_scenes(60, seed=1, max_objects=3)
    assert {len(s["objects"]) for s in scenes} == {1, 2, 3}
    with pytest.raises(ValueError):
        generate_scenes(1, seed=0, max_objects=4)


def test_scene_objects_are_distinct_and_apart(scenes64):
    every = [o for scene in scenes64[2] for o in scene["objects"]]
    assert {o["size"] for o in every} == set(SIZES) and {o["shape"] for o in every} == set(SHAPES)
    for scene in scenes64[2]:
        objs = scene["objects"]
        assert len({(o["colour"], o["shape"]) for o in objs}) == len(objs)
        for a, b in itertools.combinations(objs, 2):
            # Two small objects have half-extents of 0.1 each: centres must be further apart.
            assert np.hypot(a["x"] - b["x"], a["y"] - b["y"]) >= 0.2


def test_captions_agree_with_scene(scenes64):
    position_ok = {
        "on the left": lambda o: o["x"] < 0.45,
        "on the right": lambda o: o["x"] > 0.55,
        "at the top": lambda o: o["y"] < 0.45,
        "at the bottom": lambda o: o["y"] > 0.55,
        "in the center": lambda o: abs(o["x"] - 0.5) < 0.15 and abs(o["y"] - 0.5) < 0.15,
    }
    axis_sign = {"left of": ("x", -1), "right of": ("x", 1), "above": ("y", -1), "below": ("y", 1)}
    n_relations = n_partial = 0
    for caps, scene in zip(scenes64[1], scenes64[2]):
        objs = scene["objects"]
        for cap in caps:
            tokens = cap.split()
            mentions = _mentions(cap)
            assert mentions, cap
            # Every colour and shape word belongs to a "colour shape" pair naming a real object.
            n_colour = sum(t in COLOURS for t in tokens)
            n_shape = sum(t in SHAPES for t in tokens)
            assert n_colour == n_shape == len(mentions), cap
            mentioned = [_find(objs, colour, shape) for _, colour, shape, _ in mentions]
            for (_, _, _, size), obj in zip(mentions, mentioned):
                assert size in (None, obj["size"]), (cap, obj)
            n_partial += len({id(o) for o in mentioned}) < len(objs)
            for count, word in ((1, "one"), (2, "two"), (3, "three")):
                if word in tokens:
                    assert len(objs) == count, cap
            for phrase, ok in position_ok.items():
                if phrase in cap:
                    assert len(mentions) == 1 and ok(mentioned[0]), (cap, objs)
            rels = [r for r in RELATIONS if f" {r} " in f" {cap} "]
            if rels:
                n_relations += 1
                assert len(rels) == 1 and len(mentioned) == 2, cap
                a, b = mentioned
                axis, sign = axis_sign[rels[0]]
                offset = sign * (a[axis] - b[axis])
                assert offset > 0.5 * np.hypot(a["x"] - b["x"], a["y"] - b["y"]), (cap, objs)
    # Real signal: relations and partial descriptions both occur.
    assert n_relations >= N // 2 and n_partial >= N // 2


def test_vocabulary_is_small(scenes64):
    words = {w for caps in scenes64[1] for c in caps for w in c.split()}
    assert words <= set(COLOURS) | set(SHAPES) | set(SIZES) | {
        "a", "an", "the", "there", "is", "and", "of", "left", "right", "above", "below", "on", "at",
        "in", "top", "bottom", "center", "picture", "one", "two", "three", "shape", "shapes"}


def test_pixels_show_the_objects(scenes64):
    images, _, scenes = scenes64
    size = images.shape[1]
    for image, scene in zip(images, scenes):
        objs = scene["objects"]
        pixels = image.reshape(-1, 3)
        # The background is the most common colour.
        values, counts = np.unique(pixels, axis=0, return_counts=True)
        assert tuple(values[counts.argmax()]) == shapes.BACKGROUND
        # Exact palette colours appear iff an object has that colour.
        exact = {c: int((pixels == COLOUR_RGB[c]).all(axis=1).sum()) for c in COLOURS}
        assert {c for c, k in exact.items() if k > 0} == {o["colour"] for o in objs}
        for obj in objs:
            # Nothing covers the centre of an object, so every object is visible.
            row, col = int(obj["y"] * size), int(obj["x"] * size)
            assert tuple(image[row, col]) == COLOUR_RGB[obj["colour"]], obj
            if sum(o["colour"] == obj["colour"] for o in objs) == 1:
                # At 64 px a small object covers fewer than 160 pixels, a large one more.
                assert (exact[obj["colour"]] < 160) == (obj["size"] == "small"), obj


def test_cache_roundtrip(tmp_path, monkeypatch):
    first = load_shapes_split("val", 20, 2, 32, 3, str(tmp_path))
    files = sorted(os.listdir(tmp_path))
    assert len(files) == 2 and {os.path.splitext(f)[1] for f in files} == {".npz", ".json"}
    assert all(f"v{shapes.GENERATOR_VERSION}" in f for f in files)
    assert first.name == "val" and first.num_images == 20 and first.num_captions == 100
    assert os.path.exists(first.source)
    # The val split is its own derived seed.
    images, captions, _ = generate_scenes(20, seed=2 * 1000 + 1, image_size=32)
    np.testing.assert_array_equal(first.images.array, images)
    assert first.captions == captions

    def refuse(*args, **kwargs):
        raise AssertionError("should have read the cache")

    monkeypatch.setattr(shapes, "generate_scenes", refuse)
    second = load_shapes_split("val", 20, 2, 32, 3, str(tmp_path))
    np.testing.assert_array_equal(second.images.array, first.images.array)
    assert second.captions == first.captions and second.extra == first.extra
    assert second.images.load(0).size == (32, 32)
    assert sorted(os.listdir(tmp_path)) == files


def test_splits_differ_and_unknown_split(tmp_path):
    train = load_shapes_split("train", 10, 0, 32, 3, str(tmp_path))
    test = load_shapes_split("test", 10, 0, 32, 3, str(tmp_path))
    assert not np.array_equal(train.images.array, test.images.array)
    assert len(os.listdir(tmp_path)) == 4
    with pytest.raises(DataError):
        load_shapes_split("restval", 10, 0, 32, 3, str(tmp_path))
