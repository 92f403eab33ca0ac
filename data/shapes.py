"""Shapes: the built-in data set of procedurally drawn scenes with five captions per image.

Each image holds 1-3 non-overlapping objects (colour, shape, size) on a dark grey background.
Its captions come from templates: some describe the whole scene, some one object, some a spatial
relation between two objects, so that attribute binding and relations matter. Everything is a
pure function of the seed: no download, and tests get real signal.

Coordinates: ``x`` and ``y`` are the object's centre as fractions of the image side, ``y`` grows
downwards (so "above" means a smaller ``y``).
"""
from __future__ import annotations

import json
import os
from typing import Optional

import numpy as np
from PIL import Image, ImageDraw

from .atomic import atomic_path, write_json_atomic
from .records import ArrayImages, DataError, Split

# Part of every cache file name: bump it whenever the pictures or captions change.
GENERATOR_VERSION = 1
SHAPES_SPLITS = ("train", "val", "test")

# Word classes, exported so that a caption can be perturbed by swapping one word of a class.
COLOUR_RGB = {
    "red": (225, 45, 45),
    "green": (45, 185, 65),
    "blue": (55, 95, 235),
    "yellow": (240, 220, 45),
    "purple": (155, 65, 205),
    "orange": (250, 145, 25),
    "white": (240, 240, 240),
    "cyan": (45, 215, 225),
}
COLOURS = tuple(COLOUR_RGB)
SHAPES = ("circle", "square", "triangle", "diamond", "cross")
SIZES = ("small", "large")
RELATIONS = ("left of", "right of", "above", "below")
POSITIONS = ("left", "right", "top", "bottom", "center")
BACKGROUND = (40, 40, 44)

_POSITION_PHRASE = {"left": "on the left", "right": "on the right", "top": "at the top",
                    "bottom": "at the bottom", "center": "in the center"}
_COUNT_WORD = {1: "one", 2: "two", 3: "three"}
# Half-extent of an object as a fraction of the image side.
_RADIUS = {"small": 0.10, "large": 0.17}
# Outlines in units of the half-extent; every one fits in a circle of radius ~1.13.
_W = 0.33  # half-width of a cross arm
_OUTLINES = {
    "square": [(-0.8, -0.8), (0.8, -0.8), (0.8, 0.8), (-0.8, 0.8)],
    "triangle": [(0.0, -1.0), (0.98, 0.75), (-0.98, 0.75)],
    "diamond": [(0.0, -1.0), (0.85, 0.0), (0.0, 1.0), (-0.85, 0.0)],
    "cross": [(-_W, -1), (_W, -1), (_W, -_W), (1, -_W), (1, _W), (_W, _W), (_W, 1), (-_W, 1),
              (-_W, _W), (-1, _W), (-1, -_W), (-_W, -_W)],
}
_REACH = 1.15  # radius (in half-extents) that bounds every outline, for the overlap test
_GAP = 0.03  # minimum empty space between two objects and between an object and the border
_SUPERSAMPLE = 4  # draw at 4x and box-filter down: anti-aliased edges for little cost


def position_of(obj: dict) -> Optional[str]:
    """The object's place in the image (one of POSITIONS), or None when it is diagonal/ambiguous."""
    dx, dy = obj["x"] - 0.5, obj["y"] - 0.5
    if max(abs(dx), abs(dy)) < 0.1:
        return "center"
    if abs(dx) > 2 * abs(dy):
        return "left" if dx < 0 else "right"
    if abs(dy) > 2 * abs(dx):
        return "top" if dy < 0 else "bottom"
    return None


def relations_between(a: dict, b: dict) -> list[str]:
    """Every relation in RELATIONS that is true of ``a`` with respect to ``b``.

    A relation holds when the offset along its axis is at least 0.6 of the distance (within
    ~53 degrees of the axis), so a diagonal pair can be both "left of" and "above".
    """
    dx, dy = a["x"] - b["x"], a["y"] - b["y"]
    reach = 0.6 * float(np.hypot(dx, dy))
    checks = {"left of": -dx, "right of": dx, "above": -dy, "below": dy}
    return [rel for rel in RELATIONS if checks[rel] >= reach]


def _sample_objects(rng: np.random.Generator, max_objects: int) -> list[dict]:
    """1..max_objects objects with distinct (colour, shape) pairs, placed without overlap."""
    n = int(rng.integers(1, max_objects + 1))
    while True:  # rejection sampling; crowded draws (three large objects) just start over
        pairs = rng.choice(len(COLOURS) * len(SHAPES), size=n, replace=False)
        objects: list[dict] = []
        for pair in pairs:
            size = SIZES[rng.integers(len(SIZES))]
            reach = _REACH * _RADIUS[size]
            lo, hi = reach + _GAP, 1.0 - reach - _GAP
            for _ in range(30):
                x, y = (round(float(v), 3) for v in rng.uniform(lo, hi, size=2))
                if all(np.hypot(x - o["x"], y - o["y"]) >= reach + _REACH * _RADIUS[o["size"]]
                       + _GAP for o in objects):
                    break
            else:
                break  # no room for this object: redraw the whole scene
            colour, shape = COLOURS[pair // len(SHAPES)], SHAPES[pair % len(SHAPES)]
            objects.append({"colour": colour, "shape": shape, "size": size, "x": x, "y": y})
        if len(objects) == n:
            return objects


def _draw(objects: list[dict], image_size: int) -> np.ndarray:
    """Render the objects as a uint8 (H, W, 3) array."""
    side = image_size * _SUPERSAMPLE
    image = Image.new("RGB", (side, side), BACKGROUND)
    draw = ImageDraw.Draw(image)
    for obj in objects:
        cx, cy, r = obj["x"] * side, obj["y"] * side, _RADIUS[obj["size"]] * side
        fill = COLOUR_RGB[obj["colour"]]
        if obj["shape"] == "circle":
            draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=fill)
        else:
            draw.polygon([(cx + u * r, cy + v * r) for u, v in _OUTLINES[obj["shape"]]], fill=fill)
    return np.asarray(image.reduce(_SUPERSAMPLE))


def _phrase(obj: dict, rng: np.random.Generator, article: str = "a") -> str:
    """A noun phrase for the object; the size word is optional (paraphrase)."""
    words = [obj["colour"], obj["shape"]]
    if rng.random() < 0.5:
        words.insert(0, obj["size"])
    if article == "a" and words[0][0] in "aeiou":
        article = "an"  # "an orange cross"
    return " ".join([article] + words)


def _one_object(obj: dict, rng: np.random.Generator) -> str:
    """A caption about a single object (the whole scene, or only part of it)."""
    templates = ["{p}", "there is {p}", "{p} in the picture"]
    position = position_of(obj)
    if position is not None:
        templates += ["{p} " + _POSITION_PHRASE[position]] * 2
    return templates[rng.integers(len(templates))].format(p=_phrase(obj, rng))


def _whole_scene(objects: list[dict], rng: np.random.Generator) -> str:
    """A caption naming every object, in a random order."""
    phrases = [_phrase(objects[i], rng) for i in rng.permutation(len(objects))]
    listing = " ".join(phrases[:-1] + ["and"] + phrases[-1:]) if len(phrases) > 1 else phrases[0]
    count = f"{_COUNT_WORD[len(objects)]} {'shape' if len(objects) == 1 else 'shapes'}"
    templates = ["there is {l}", "{c} {l}", "a picture of {l}"]
    return templates[rng.integers(len(templates))].format(l=listing, c=count)


def _relation(objects: list[dict], rng: np.random.Generator) -> str:
    """A caption relating two of the objects ("a red circle left of a small blue square")."""
    i, j = rng.choice(len(objects), size=2, replace=False)
    a, b = objects[i], objects[j]
    rels = relations_between(a, b)
    rel = rels[rng.integers(len(rels))]
    if rng.random() < 0.4:
        return f"{_phrase(a, rng, 'the')} is {rel} {_phrase(b, rng, 'the')}"
    return f"{_phrase(a, rng)} {rel} {_phrase(b, rng)}"


def _captions(objects: list[dict], rng: np.random.Generator) -> list[str]:
    """Five distinct captions, each true of the scene; with 2+ objects some describe only part."""
    if len(objects) == 1:
        plan = [_whole_scene, _one_object, _one_object, _one_object, _one_object]
    else:
        plan = [_whole_scene, _relation, _relation, _one_object, _whole_scene]
    captions: list[str] = []
    for family in plan:
        for _ in range(100):  # redraw duplicates; every scene has at least 10 distinct captions
            if family is _one_object:
                caption = _one_object(objects[rng.integers(len(objects))], rng)
            else:
                caption = family(objects, rng)
            if caption not in captions:
                break
        captions.append(caption)
    return [captions[k] for k in rng.permutation(len(captions))]


def generate_scenes(n: int, seed: int, image_size: int = 64,
                    max_objects: int = 3) -> tuple[np.ndarray, list[list[str]], list[dict]]:
    """Draw ``n`` scenes deterministically from ``seed``.

    Returns ``(images, captions, scenes)``: uint8 images ``(n, image_size, image_size, 3)``, five
    caption strings per image, and per image ``{"objects": [{"colour", "shape", "size", "x",
    "y"}, ...]}`` with ``x``/``y`` the centre as fractions of the side (``y`` downwards).
    """
    if not 1 <= max_objects <= 3:
        raise ValueError(f"max_objects must be 1, 2 or 3, got {max_objects}")
    rng = np.random.default_rng(seed)
    images = np.empty((n, image_size, image_size, 3), dtype=np.uint8)
    captions, scenes = [], []
    for k in range(n):
        objects = _sample_objects(rng, max_objects)
        images[k] = _draw(objects, image_size)
        captions.append(_captions(objects, rng))
        scenes.append({"objects": objects})
    return images, captions, scenes


def load_shapes_split(split: str, n: int, seed: int, image_size: int, max_objects: int,
                      cache_dir: str) -> Split:
    """Generate one Shapes split, or read it from ``cache_dir`` when it was generated before.

    Splits use distinct seeds (``seed * 1000 + index``). The cache is ``<key>.npz`` (images) and
    ``<key>.json`` (captions and scenes), where the key names every parameter and GENERATOR_VERSION.
    """
    if split not in SHAPES_SPLITS:
        raise DataError(f"unknown Shapes split {split!r}; expected one of {SHAPES_SPLITS}")
    key = f"shapes-v{GENERATOR_VERSION}-{split}-n{n}-seed{seed}-{image_size}px-max{max_objects}"
    npz_path = os.path.join(cache_dir, key + ".npz")
    json_path = os.path.join(cache_dir, key + ".json")
    if os.path.exists(npz_path) and os.path.exists(json_path):
        with np.load(npz_path, allow_pickle=False) as npz:
            images = npz["images"]
        with open(json_path, encoding="utf-8") as f:
            meta = json.load(f)
        captions, scenes = meta["captions"], meta["scenes"]
    else:
        images, captions, scenes = generate_scenes(
            n, seed * 1000 + SHAPES_SPLITS.index(split), image_size, max_objects)
        os.makedirs(cache_dir, exist_ok=True)
        with atomic_path(npz_path) as tmp, open(tmp, "wb") as f:
            np.savez_compressed(f, images=images)
        # The JSON goes last: a cache entry counts only when both files exist.
        meta = {"captions": captions, "scenes": scenes}
        write_json_atomic(json_path, meta, indent=None)
    if images.shape != (n, image_size, image_size, 3) or len(captions) != n:
        raise DataError(f"{npz_path}: cached Shapes split does not match its parameters; delete it")
    return Split(name=split, images=ArrayImages(images, name=f"shapes-{split}"), captions=captions,
                 source=npz_path, extra={"scenes": scenes})
