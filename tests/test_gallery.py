"""Own-collection search: index a folder, re-index it, query it, export it (gallery/)."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch

import demo
from data.datasets import image_transform
from data.images import open_rgb
from data.sources import load_split
from gallery import GalleryError, export_gallery, index_folder, read_gallery, retrieve_gallery
from gallery.store import model_digest
from runfolder.folder import load_trained
from tests.conftest import ROOT

NAMES = ["a.png", "sub/b c.png", "sub/deep/ünïcode é.png", "d.jpg", "e.png", "f.png", "g.png", "h.png"]


@pytest.fixture
def folder(tmp_path, reported_run):
    """Eight test-split Shapes images under a tree of folders (a space and non-ASCII in names)."""
    cfg, _, _, _ = load_trained(str(reported_run))
    test = load_split(cfg.data, "test")
    root = tmp_path / "pics"
    for i, name in enumerate(NAMES):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        test.images.load(i).save(root / name)
    return root


def encode_files(run, paths) -> dict[str, np.ndarray]:
    cfg, _, model, _ = load_trained(str(run))
    x = torch.stack([image_transform(cfg.data, train=False)(open_rgb(str(p))) for p in paths])
    with torch.no_grad():
        return {b: v.numpy() for b, v in model.matcher.encode_images(x).items()}


def test_gallery_vectors_equal_direct_encoding(reported_run, folder, tmp_path):
    os.symlink("..", folder / "sub" / "loop")  # a link loop: scanned once, no hang
    (folder / "notes.txt").write_text("not an image")
    out = str(tmp_path / "g.h5")
    result = index_folder(str(reported_run), str(folder), out, batch_size=3, progress=False)
    g = read_gallery(out)
    assert g.items == sorted(NAMES) and result.encoded == len(NAMES) and not result.skipped
    direct = encode_files(reported_run, [folder / p for p in g.items])
    assert set(g.vectors) == set(direct) == {"abstract", "grounded"}
    for b in direct:
        np.testing.assert_allclose(g.vectors[b], direct[b], rtol=1e-5, atol=1e-6)
    _, _, model, _ = load_trained(str(reported_run))
    assert g.model_sha256 == model_digest(model.matcher) and g.root == str(folder) and g.kind == "images"


def test_reindex_after_add_change_delete_equals_scratch(reported_run, folder, tmp_path):
    out = str(tmp_path / "g.h5")
    index_folder(str(reported_run), str(folder), out, progress=False)
    cfg, _, _, _ = load_trained(str(reported_run))
    test = load_split(cfg.data, "test")
    os.remove(folder / "e.png")  # deleted
    test.images.load(10).save(folder / "new one.png")  # added
    test.images.load(11).save(folder / "a.png")  # changed (size or mtime differ)
    st = os.stat(folder / "a.png")
    os.utime(folder / "a.png", ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    again = index_folder(str(reported_run), str(folder), out, progress=False)
    assert (again.encoded, again.reused) == (2, len(NAMES) - 2)
    scratch = index_folder(str(reported_run), str(folder), str(tmp_path / "scratch.h5"), progress=False)
    assert scratch.reused == 0
    a, b = read_gallery(out), read_gallery(str(tmp_path / "scratch.h5"))
    assert a.items == b.items and "e.png" not in a.items and "new one.png" in a.items
    for branch in a.vectors:
        np.testing.assert_allclose(a.vectors[branch], b.vectors[branch], rtol=1e-5, atol=1e-6)
    assert a.size.tolist() == b.size.tolist() and a.mtime_ns.tolist() == b.mtime_ns.tolist()


def test_text_query_ranks_like_the_embedding_and_json_is_sorted(reported_run, folder, tmp_path, capsys):
    out = str(tmp_path / "g.h5")
    index_folder(str(reported_run), str(folder), out, progress=False)
    g = read_gallery(out)
    _, vocab, model, _ = load_trained(str(reported_run))
    from data.datasets import encode_texts

    ids, lengths = encode_texts(["a red circle"], vocab, 8)
    with torch.no_grad():
        cap = model.matcher.encode_captions(ids, lengths)
        sims = model.matcher.similarity({b: torch.from_numpy(v) for b, v in g.vectors.items()}, cap)[:, 0].numpy()
    expect = sorted(range(len(sims)), key=lambda j: (-sims[j], j))[:5]
    rows = retrieve_gallery(str(reported_run), out, text="a red circle", k=5)
    assert [r["path"] for r in rows] == [g.items[j] for j in expect]
    np.testing.assert_allclose([r["score"] for r in rows], sims[expect], rtol=1e-4, atol=1e-6)
    capsys.readouterr()
    args = ["retrieve", str(reported_run), "--gallery", out, "--text", "a red circle", "--json", "-k", "4"]
    assert demo.main(args) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["rank"] for r in lines] == [1, 2, 3, 4]
    assert [r["score"] for r in lines] == sorted((r["score"] for r in lines), reverse=True)
    assert all(os.path.exists(folder / r["path"]) for r in lines)


def test_rerank_reorders_the_head_by_the_fused_score(reported_run, folder, tmp_path):
    out = str(tmp_path / "g.h5")
    index_folder(str(reported_run), str(folder), out, progress=False)
    plain = retrieve_gallery(str(reported_run), out, text="a red circle", k=8)
    emb_only = retrieve_gallery(str(reported_run), out, text="a red circle", k=8, rerank=4, fused_weight=1.0)
    assert [r["path"] for r in emb_only] == [r["path"] for r in plain]  # weight 1: the embedding's order
    ll_only = retrieve_gallery(str(reported_run), out, text="a red circle", k=8, rerank=4, fused_weight=0.0)
    assert sorted(r["path"] for r in ll_only[:4]) == sorted(r["path"] for r in plain[:4])
    assert [r["path"] for r in ll_only[4:]] == [r["path"] for r in plain[4:]]
    fused = [r["fused"] for r in ll_only[:4]]
    assert fused == sorted(fused, reverse=True) and "fused" not in ll_only[4]
    picked = retrieve_gallery(str(reported_run), out, text="a red circle", k=3, rerank=4)  # weight from val
    assert os.path.exists(out + ".fused.json") and len(picked) == 3


def test_caption_gallery_answers_an_image_query(reported_run, folder, tmp_path):
    lines = tmp_path / "caps.txt"
    lines.write_text("a red circle\n\na blue square\na small green triangle\n", encoding="utf-8")
    out = str(tmp_path / "c.h5")
    index_folder(str(reported_run), None, out, captions=str(lines), progress=False)
    rows = retrieve_gallery(str(reported_run), out, image=str(folder / "a.png"), k=5)
    assert sorted(r["caption"] for r in rows) == ["a blue square", "a red circle", "a small green triangle"]
    with pytest.raises(GalleryError, match="holds captions"):
        retrieve_gallery(str(reported_run), out, text="a red circle")


def test_export_writes_plain_arrays(reported_run, folder, tmp_path, capsys):
    out = str(tmp_path / "g.h5")
    index_folder(str(reported_run), str(folder), out, dtype="float16", progress=False)
    assert demo.main(["export", out, "--format", "npy", "--out", str(tmp_path / "npy")]) == 0
    g = read_gallery(out)
    for b in ("abstract", "grounded"):
        arr = np.load(tmp_path / "npy" / f"{b}.npy")
        assert arr.dtype == np.float32 and arr.shape == g.vectors[b].shape
        np.testing.assert_array_equal(arr, g.vectors[b].astype(np.float32))
    assert (tmp_path / "npy" / "items.txt").read_text(encoding="utf-8").splitlines() == g.items
    assert json.loads((tmp_path / "npy" / "meta.json").read_text())["count"] == len(NAMES)
    assert export_gallery(out, str(tmp_path / "again"))[-1].endswith("meta.json")


def test_bad_input_is_named(reported_run, folder, tmp_path, capsys, karpathy_dir):
    empty = tmp_path / "empty"
    (empty / "sub").mkdir(parents=True)
    (empty / "readme.txt").write_text("no images here")
    assert demo.main(["index", str(reported_run), str(empty), "--out", str(tmp_path / "x.h5")]) == 2
    assert "no image files under" in capsys.readouterr().err and not (tmp_path / "x.h5").exists()
    (folder / "broken.png").write_bytes(b"\x89PNG not really")
    out = str(tmp_path / "g.h5")
    assert demo.main(["index", str(reported_run), str(folder), "--out", out]) == 0
    captured = capsys.readouterr()
    assert "broken.png" in captured.err and "skipped 1" in captured.out
    truncated = tmp_path / "t.h5"
    truncated.write_bytes(open(out, "rb").read()[:2000])
    assert demo.main(["retrieve", str(reported_run), "--gallery", str(truncated), "--text", "a red circle"]) == 2
    err = capsys.readouterr().err
    assert str(truncated) in err and "demo.py index" in err
    foreign = tmp_path / "foreign.h5"
    import h5py

    with h5py.File(foreign, "w") as f:
        f.create_dataset("x", data=np.zeros(3))
    assert demo.main(["retrieve", str(reported_run), "--gallery", str(foreign), "--text", "a red circle"]) == 2
    assert "not a LIM gallery" in capsys.readouterr().err
    other = tmp_path / "other"  # another run: the same config, another seed
    import train
    from tests.test_train import tiny

    train.main(tiny(tmp_path, out="other", **{"train.epochs": 1, "look.scst_epochs": 0, "train.seed": 1}))
    assert demo.main(["retrieve", str(other), "--gallery", out, "--text", "a red circle"]) == 2
    assert "indexed by another model" in capsys.readouterr().err


KILL = r"""
import os, signal, sys
import h5py
import gallery.indexer as ix
import demo
from data.atomic import TMP_MARK
real = ix.write_gallery
def write(path, g):
    if not path.endswith(".partial"):  # the final write: half a temp file, then a kill
        tmp = f"{path}{TMP_MARK}{os.getpid()}.h5"
        real(tmp, g)
        with open(tmp, "r+b") as f:
            f.truncate(os.path.getsize(tmp) // 2)
        os.kill(os.getpid(), signal.SIGKILL)
    real(path, g)
ix.write_gallery = write
demo.main(sys.argv[1:])
"""


def test_kill_mid_index_keeps_the_old_gallery_and_the_next_run_goes_on(reported_run, folder, tmp_path):
    out = str(tmp_path / "g.h5")
    index_folder(str(reported_run), str(folder), out, progress=False)
    before = open(out, "rb").read()
    cfg, _, _, _ = load_trained(str(reported_run))
    test = load_split(cfg.data, "test")
    for i in range(5):
        test.images.load(11 + i % 5).rotate(90 * (1 + i % 3)).save(folder / f"added{i}.png")
    args = ["index", str(reported_run), str(folder), "--out", out, "--batch-size", "2", "--save-every", "0"]
    proc = subprocess.run([sys.executable, "-c", KILL, *args], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == -9, proc.stderr[-2000:]
    assert open(out, "rb").read() == before  # the old gallery, byte for byte
    partial = read_gallery(out + ".partial")
    assert len(partial) == len(NAMES) + 5
    resumed = index_folder(str(reported_run), str(folder), out, progress=False)
    assert resumed.encoded == 0 and resumed.reused == len(NAMES) + 5
    assert not os.path.exists(out + ".partial")
    scratch = str(tmp_path / "s.h5")
    index_folder(str(reported_run), str(folder), scratch, progress=False)
    a, b = read_gallery(out), read_gallery(scratch)
    assert a.items == b.items
    np.testing.assert_allclose(a.vectors["abstract"], b.vectors["abstract"], rtol=1e-5, atol=1e-6)


def test_ann_shortlist_used_only_when_its_recall_passes(reported_run, folder, tmp_path, monkeypatch):
    pytest.importorskip("faiss")
    import gallery.query as q

    good = str(tmp_path / "good.h5")
    index_folder(str(reported_run), str(folder), good, ann="hnsw", progress=False)
    g = read_gallery(good)
    assert g.ann["used"] and g.ann["recall_at_10"] >= 0.99
    exact = retrieve_gallery(str(reported_run), good, text="a red circle", k=5, exact=True)
    monkeypatch.setattr(q, "exact_search", lambda *a, **k: pytest.fail("the exact scan ran"))
    assert retrieve_gallery(str(reported_run), good, text="a red circle", k=5) == exact
    monkeypatch.undo()
    bad = str(tmp_path / "bad.h5")
    index_folder(str(reported_run), str(folder), bad, ann="ivf", shortlist=1, progress=False)  # 1 of 10: recall <= 0.1
    g = read_gallery(bad)
    assert not g.ann["used"] and g.ann["recall_at_10"] < 0.99
    monkeypatch.setattr(q, "shortlist_search", lambda *a, **k: pytest.fail("a failed shortlist was used"))
    assert retrieve_gallery(str(reported_run), bad, text="a red circle", k=5) == exact


def test_gallery_survives_a_moved_run_folder(reported_run, folder, tmp_path):
    out = str(tmp_path / "g.h5")
    index_folder(str(reported_run), str(folder), out, progress=False)
    moved = tmp_path / "moved run"
    shutil.copytree(reported_run, moved)
    assert retrieve_gallery(str(moved), out, text="a red circle", k=3) == retrieve_gallery(
        str(reported_run), out, text="a red circle", k=3)
