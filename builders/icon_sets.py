"""Real-image caption sets built from icon collections in the npm registry (Karpathy format).

    python -m data build-icons tabler --out data/real/tabler
    python -m data build-icons mdi --out data/real/mdi [--package FILE.tgz|DIR] [--max-train 2500]

Each icon of a pinned package version is rasterised with cairosvg (a real SVG renderer) to a PNG
and gets five captions phrased from its name, tags or aliases and category. Splits are
*concept-disjoint*: an icon's concept is the first word of its name ("lock-check" -> "lock"), and
every concept lives in one split only, so val/test ask about things never seen in training (the
words may be shared: "check" appears in many concepts). Everything is deterministic in ``--seed``.

The package comes from ``npm pack`` at the pinned version (the registry is the only download, at
build time; training never downloads), or from ``--package`` (a .tgz or an unpacked folder). A file
that cannot be read or rendered is named on stderr and skipped. Emoji collections are deliberately
not among the sources (they are kept for an independent check), and icons tagged as emoji are left
out.
"""
from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from typing import Callable, Optional

from tqdm import tqdm

from data.atomic import atomic_path, write_json_atomic
from data.records import DataError
from data.vocab import tokenize


@dataclass
class Icon:
    """One icon: its SVG file and the words its captions are made from."""

    name: str  # unique id, e.g. "lock-check"
    svg: str  # path of the SVG file
    words: str  # the name as words: "lock check"
    synonyms: list[str]  # tags or aliases, each a phrase
    category: str  # "" when the collection gives none

    @property
    def concept(self) -> str:
        return self.name.split("-")[0]


@dataclass(frozen=True)
class IconSource:
    """A pinned npm package and the function that lists its icons."""

    package: str
    version: str
    read: Callable[[str], list[Icon]]


def _phrase(text) -> str:
    """A name, tag or category as plain lower-case words ("Account / User" -> "account user");
    "" for a missing or non-text value (metadata has the odd null or number)."""
    if not isinstance(text, (str, int, float)) or isinstance(text, bool):
        return ""
    return " ".join(tokenize(str(text).replace("-", " ").replace("_", " ")))


def _read_tabler(root: str) -> list[Icon]:
    """Tabler icons: outline style, tags and category from icons.json."""
    meta = _load_json(os.path.join(root, "icons.json"))
    icons = []
    for name, entry in sorted(meta.items()):
        if "outline" not in entry.get("styles", {}):
            continue
        tags = [_phrase(t) for t in entry.get("tags") or [] if _phrase(t)]
        icons.append(Icon(name, os.path.join(root, "icons", "outline", f"{name}.svg"), _phrase(name), tags,
                          _phrase(entry.get("category", ""))))
    return icons


def _read_mdi(root: str) -> list[Icon]:
    """Material Design Icons: aliases are the synonyms, the first tag the category (no deprecated or
    emoji-tagged icons; style words such as "outline" are in the name already)."""
    icons = []
    for entry in sorted(_load_json(os.path.join(root, "meta.json")), key=lambda e: e["name"]):
        tags = [t for t in entry.get("tags") or [] if isinstance(t, str)]
        if entry.get("deprecated") or any("emoji" in t.lower() for t in tags):
            continue
        name = entry["name"]
        synonyms = [_phrase(a) for a in entry.get("aliases") or [] if _phrase(a)]
        icons.append(Icon(name, os.path.join(root, "svg", f"{name}.svg"), _phrase(name), synonyms,
                          _phrase(tags[0]) if tags else ""))
    return icons


SOURCES = {
    "tabler": IconSource("@tabler/icons", "3.35.0", _read_tabler),
    "mdi": IconSource("@mdi/svg", "7.4.47", _read_mdi),
}


def _load_json(path: str):
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, json.JSONDecodeError) as err:
        raise DataError(f"{path}: cannot read the collection's metadata ({err})") from None


def _article(phrase: str) -> str:
    return "an" if phrase[:1] in "aeiou" else "a"


def captions_for(icon: Icon, rng: random.Random, n: int = 5) -> list[str]:
    """``n`` different phrasings of what the icon shows, from its name, synonyms and category."""
    name = icon.words or icon.concept
    syn = [s for s in icon.synonyms if s != name]
    rng.shuffle(syn)
    cat = icon.category
    pool = [
        f"{name} icon",
        f"{_article(name)} {name} symbol",
        f"an icon of {_article(name)} {name}",
        f"a line drawing of {_article(name)} {name}",
        f"pictogram showing {name}",
    ]
    if syn:
        pool += [f"{syn[0]} icon", f"an icon for {syn[0]}", f"{name} symbol for {syn[0]}"]
    if len(syn) >= 2:
        pool += [f"{name}, {syn[0]} and {syn[1]}", f"symbol of {syn[1]} and {syn[0]}"]
    if len(syn) >= 3:
        pool.append(f"{name} icon meaning {', '.join(syn[:3])}")
    if cat:
        pool += [f"{_article(cat)} {cat} icon showing {name}", f"{name} from the {cat} set"]
    first, rest = pool[0], pool[1:]
    rng.shuffle(rest)
    # The first caption always names the icon; then up to two phrasings with synonyms and one with
    # the category, where there are some, and plain phrasings for the rest.
    with_syn = [p for p in rest if any(s in p for s in syn[:3])]
    with_cat = [p for p in rest if cat and cat in p and p not in with_syn]
    plain = [p for p in rest if p not in with_syn and p not in with_cat]
    out = []
    for c in [first] + with_syn[:2] + with_cat[:1] + plain + with_syn[2:] + with_cat[1:]:
        if c not in out:
            out.append(c)
    return out[:n]


def split_concepts(icons: list[Icon], seed: int, n_val: int, n_test: int, max_group: int = 40) -> dict[str, str]:
    """Concept -> split. Val and test draw whole concepts (of at most ``max_group`` icons, so a huge
    family such as "brand" does not fill a split) until each holds about ``n_val`` / ``n_test``
    icons; every other concept is train."""
    sizes: dict[str, int] = {}
    for icon in icons:
        sizes[icon.concept] = sizes.get(icon.concept, 0) + 1
    concepts = sorted(sizes)
    random.Random(seed).shuffle(concepts)
    assign, filled = {}, {"val": 0, "test": 0}
    targets = {"test": n_test, "val": n_val}
    for concept in concepts:
        for split in ("test", "val"):
            if filled[split] < targets[split] and sizes[concept] <= max_group:
                assign[concept] = split
                filled[split] += sizes[concept]
                break
        else:
            assign[concept] = "train"
    return assign


def _unpack(package: str, into: str) -> str:
    """The package's root folder (a .tgz from ``npm pack`` is unpacked into ``into``)."""
    if os.path.isdir(package):
        return os.path.join(package, "package") if os.path.isdir(os.path.join(package, "package")) else package
    if not os.path.isfile(package):
        raise DataError(f"--package {package}: no such file or folder")
    try:
        with tarfile.open(package) as tar:
            tar.extractall(into, filter="data")
    except (tarfile.TarError, OSError) as err:
        raise DataError(f"{package}: cannot unpack ({err})") from None
    return os.path.join(into, "package")


def fetch_package(source: IconSource, into: str) -> str:
    """``npm pack`` the pinned version into ``into``; returns the .tgz path."""
    if shutil.which("npm") is None:
        raise DataError(f"npm is not installed: install Node.js, or download {source.package}@{source.version} "
                        "yourself and pass it with --package FILE.tgz")
    spec = f"{source.package}@{source.version}"
    done = subprocess.run(["npm", "pack", spec, "--silent", "--pack-destination", into],
                          capture_output=True, text=True)
    if done.returncode != 0:
        raise DataError(f"npm pack {spec} failed: {done.stderr.strip()[-500:]}")
    return os.path.join(into, done.stdout.strip().splitlines()[-1])


def _rendered(png_path: str, size: int) -> bool:
    """Whether ``png_path`` holds a readable ``size`` x ``size`` image from an earlier build."""
    from PIL import Image

    try:
        with Image.open(png_path) as im:
            return im.size == (size, size)
    except (OSError, ValueError):
        return False


def render_png(svg_path: str, png_path: str, size: int) -> None:
    """Rasterise an SVG to a ``size`` x ``size`` RGB PNG on white (currentColor renders black)."""
    import cairosvg

    with open(svg_path, "rb") as f:
        svg = f.read()
    with atomic_path(png_path) as tmp:
        cairosvg.svg2png(bytestring=svg, write_to=tmp, output_width=size, output_height=size, background_color="white")


def build_icon_set(name: str, out: str, package: Optional[str] = None, max_train: int = 2500, n_val: int = 250,
                   n_test: int = 500, size: int = 72, seed: int = 0, limit: int = 0) -> dict:
    """Build ``out/dataset_<name>.json`` and ``out/images/*.png``; returns counts per split.

    ``limit`` > 0 keeps only that many icons (a quick subset), chosen deterministically; size
    ``n_val`` and ``n_test`` to it. A PNG already in ``out/images`` at the asked size is reused.
    """
    if name not in SOURCES:
        raise DataError(f"unknown icon set '{name}'; one of {', '.join(SOURCES)}")
    source = SOURCES[name]
    os.makedirs(os.path.join(out, "images"), exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        root = _unpack(package or fetch_package(source, tmp), tmp)
        icons = source.read(root)
        if limit > 0:
            icons = sorted(random.Random(seed).sample(icons, min(limit, len(icons))), key=lambda i: i.name)
        assign = split_concepts(icons, seed, n_val, n_test)
        train = [i for i in icons if assign[i.concept] == "train"]
        if max_train > 0 and len(train) > max_train:
            keep = {i.name for i in random.Random(seed + 1).sample(train, max_train)}
            icons = [i for i in icons if assign[i.concept] != "train" or i.name in keep]
        images, skipped = [], 0
        for icon in tqdm(icons, desc=f"render {name}", leave=False):
            png = os.path.join(out, "images", f"{icon.name}.png")
            try:
                if not _rendered(png, size):
                    render_png(icon.svg, png, size)
            except Exception as err:  # a broken SVG (or a missing file) must not stop the other icons
                print(f"skipped {icon.svg}: {type(err).__name__}: {err}", file=sys.stderr)
                skipped += 1
                continue
            digest = int(hashlib.sha1(f"{seed}:{icon.name}".encode()).hexdigest()[:8], 16)
            caps = captions_for(icon, random.Random(digest))
            images.append({"filepath": "images", "filename": f"{icon.name}.png", "split": assign[icon.concept],
                           "concept": icon.concept,
                           "sentences": [{"raw": c, "tokens": tokenize(c)} for c in caps]})
    counts = {s: sum(1 for im in images if im["split"] == s) for s in ("train", "val", "test")}
    dataset = {"dataset": name, "source": f"{source.package}@{source.version}", "seed": seed, "images": images}
    path = os.path.join(out, f"dataset_{name}.json")
    write_json_atomic(path, dataset, indent=None)
    return {**counts, "skipped": skipped, "json": path, "image_root": out}
