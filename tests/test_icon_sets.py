"""The icon-set builders on tiny fake packages laid out like the real npm ones (no network)."""
import json
import os
from collections import defaultdict

import pytest

from builders.icon_sets import Icon, captions_for, split_concepts
from data.__main__ import main as data_main


def _renderer_available() -> str:
    """'' when cairosvg renders here, else why not (it needs the system's libcairo)."""
    try:
        import cairosvg  # noqa: F401
    except (ImportError, OSError) as err:
        return f"cairosvg cannot load: {err}"
    return ""


needs_renderer = pytest.mark.skipif(bool(_renderer_available()), reason=_renderer_available() or "renderer present")

SVG = ('<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 24 24" fill="none" stroke="currentColor" '
       'stroke-width="2"><path d="M4 4h{w}v{h}H4z"/></svg>')
CONCEPTS = ["lock", "clock", "arrow", "book", "cloud", "user", "phone", "home", "star", "file", "map", "car"]


def _fake_tabler(root: str, broken: str = "") -> str:
    pkg = os.path.join(root, "package")
    os.makedirs(os.path.join(pkg, "icons", "outline"))
    meta = {}
    for c, concept in enumerate(CONCEPTS):
        for v, variant in enumerate(["", "check", "off"]):
            name = f"{concept}-{variant}" if variant else concept
            meta[name] = {"name": name, "category": ["System", "Map", ""][c % 3],
                          "tags": [f"tag{c}", "secure", None, 7][: 2 + v], "styles": {"outline": {}}}
            with open(os.path.join(pkg, "icons", "outline", f"{name}.svg"), "w") as f:
                f.write("<svg><unclosed" if name == broken else SVG.format(w=4 + 2 * c, h=4 + 3 * v))
    meta["ghost"] = {"name": "ghost", "category": "", "tags": ["missing"], "styles": {"outline": {}}}  # no SVG file
    with open(os.path.join(pkg, "icons.json"), "w") as f:
        json.dump(meta, f)
    return pkg


def _fake_mdi(root: str) -> str:
    pkg = os.path.join(root, "package")
    os.makedirs(os.path.join(pkg, "svg"))
    meta = []
    for c, concept in enumerate(CONCEPTS):
        for v, variant in enumerate(["", "outline"]):
            name = f"{concept}-{variant}" if variant else concept
            meta.append({"name": name, "aliases": [f"{concept}-alias"], "tags": ["Home Automation"] if c % 2 else [],
                         "styles": [], "deprecated": False})
            with open(os.path.join(pkg, "svg", f"{name}.svg"), "w") as f:
                f.write(SVG.format(w=4 + 2 * c, h=4 + 3 * v))
    meta.append({"name": "smile", "aliases": [], "tags": ["Emoji"], "styles": [], "deprecated": False})
    meta.append({"name": "old", "aliases": [], "tags": [], "styles": [], "deprecated": True})
    with open(os.path.join(pkg, "meta.json"), "w") as f:
        json.dump(meta, f)
    return pkg


@needs_renderer
@pytest.mark.parametrize("name,fake", [("tabler", _fake_tabler), ("mdi", _fake_mdi)])
def test_builder_writes_a_set_that_check_passes(tmp_path, capsys, name, fake):
    pkg = fake(str(tmp_path / "pkg"))
    out = str(tmp_path / "set")
    rc = data_main(["build-icons", name, "--out", out, "--package", pkg, "--val", "4", "--test", "6", "--size", "32"])
    printed = capsys.readouterr()
    assert rc == 0, printed.err
    data = json.load(open(os.path.join(out, f"dataset_{name}.json")))
    names = {im["filename"][:-4] for im in data["images"]}
    assert "smile" not in names and "old" not in names  # emoji-tagged and deprecated icons are left out
    splits = defaultdict(set)
    for im in data["images"]:
        splits[im["split"]].add(im["concept"])
        caps = [s["raw"] for s in im["sentences"]]
        assert len(caps) == 5 and len(set(caps)) == 5
        assert im["filename"][:-4].split("-")[0] in caps[0]  # the first caption names the icon
    assert set(splits) == {"train", "val", "test"}
    assert not splits["train"] & splits["val"] and not splits["train"] & splits["test"] \
        and not splits["val"] & splits["test"]
    assert data_main(["check", "--config", "configs/custom.yaml", f"data.json={out}/dataset_{name}.json",
                      f"data.image_root={out}"]) == 0, capsys.readouterr().out


@needs_renderer
def test_unrenderable_files_are_named_and_skipped(tmp_path, capsys):
    pkg = _fake_tabler(str(tmp_path / "pkg"), broken="book-check")
    out = str(tmp_path / "set")
    assert data_main(["build-icons", "tabler", "--out", out, "--package", pkg, "--val", "4", "--test", "6",
                      "--size", "32"]) == 0
    printed = capsys.readouterr()
    assert "book-check.svg" in printed.err and "ghost.svg" in printed.err
    assert "2 skipped" in printed.out
    names = {im["filename"] for im in json.load(open(os.path.join(out, "dataset_tabler.json")))["images"]}
    assert "book-check.png" not in names and "ghost.png" not in names and "book-off.png" in names


@needs_renderer
def test_builder_is_reproducible(tmp_path):
    pkg = _fake_tabler(str(tmp_path / "pkg"))
    args = ["--package", pkg, "--val", "4", "--test", "6", "--size", "32", "--seed", "3"]
    data_main(["build-icons", "tabler", "--out", str(tmp_path / "a"), *args])
    data_main(["build-icons", "tabler", "--out", str(tmp_path / "b"), *args])
    a = json.load(open(tmp_path / "a" / "dataset_tabler.json"))
    b = json.load(open(tmp_path / "b" / "dataset_tabler.json"))
    assert a == b


def test_split_concepts_fills_val_and_test_with_whole_concepts():
    icons = [Icon(f"{c}-{v}", "", c, [], "") for c in CONCEPTS for v in range(3)] + \
            [Icon(f"brand-{v}", "", "brand", [], "") for v in range(50)]
    assign = split_concepts(icons, seed=0, n_val=6, n_test=6, max_group=40)
    assert assign["brand"] == "train"  # too large a family for a held-out split
    per = defaultdict(int)
    for icon in icons:
        per[assign[icon.concept]] += 1
    assert 6 <= per["val"] <= 8 and 6 <= per["test"] <= 8


def test_captions_use_synonyms_and_category():
    import random

    icon = Icon("lock-check", "", "lock check", ["verify", "secure", "approve"], "system")
    caps = captions_for(icon, random.Random(0))
    assert caps[0] == "lock check icon" and len(set(caps)) == 5
    assert any("verify" in c or "secure" in c or "approve" in c for c in caps)
    assert any("system" in c for c in caps)


@needs_renderer
def test_rebuild_reuses_pngs_of_the_same_size_only(tmp_path):
    from PIL import Image

    pkg = _fake_tabler(str(tmp_path / "pkg"))
    out = tmp_path / "set"
    args = ["--package", pkg, "--val", "4", "--test", "6", "--seed", "3"]
    data_main(["build-icons", "tabler", "--out", str(out), "--size", "32", *args])
    png = out / "images" / "lock.png"
    stamp = png.stat().st_mtime_ns
    data_main(["build-icons", "tabler", "--out", str(out), "--size", "32", *args])
    assert png.stat().st_mtime_ns == stamp  # same size: reused
    data_main(["build-icons", "tabler", "--out", str(out), "--size", "40", *args])
    assert Image.open(png).size == (40, 40)  # another size: rendered again
