import json
import os

import h5py
import numpy as np
import pytest
import torch
from PIL import Image

from config import DataConfig
from data import DataError, build_vocab, load_split
from data.datasets import CaptionDataset, ImageDataset, PairDataset, collate_captions, collate_pairs, image_transform
from data.features import write_h5_split
from data.images import open_rgb
from data.records import fix_captions_per_image


def test_karpathy_splits_and_modes(karpathy_dir):
    json_path, root = karpathy_dir
    cfg = DataConfig(name="karpathy", json=json_path, image_root=root, image_size=16, resize=18)
    train = load_split(cfg, "train")
    assert train.num_images == 4 and train.num_captions == 20
    assert [os.path.basename(p) for p in train.images.paths] == [f"train_{i}.png" for i in range(4)]
    modes = {Image.open(p).mode for p in train.images.paths}
    assert modes == {"RGB", "RGBA", "L", "P"}
    for i in range(4):
        assert train.images.load(i).mode == "RGB"
    x = image_transform(cfg, train=False)(train.images.load(1))
    assert x.shape == (3, 16, 16) and x.dtype == torch.float32
    assert load_split(cfg, "val").num_images == 2 and load_split(cfg, "test").num_images == 2


def test_karpathy_restval(tmp_path, karpathy_dir):
    json_path, root = karpathy_dir
    data = json.load(open(json_path))
    data["images"][0]["split"] = "restval"
    json.dump(data, open(json_path, "w"))
    cfg = DataConfig(name="karpathy", json=json_path, image_root=root)
    assert load_split(cfg, "train").num_images == 3
    cfg.use_restval = True
    assert load_split(cfg, "train").num_images == 4


def test_karpathy_bad_json_names_line(tmp_path):
    path = tmp_path / "d.json"
    path.write_text('{"images": [\n {"filename": "a.png",\n}')
    cfg = DataConfig(name="karpathy", json=str(path), image_root=str(tmp_path))
    with pytest.raises(DataError, match=r"d.json: line 3"):
        load_split(cfg, "train")


def test_missing_required_keys():
    with pytest.raises(DataError, match="data.json"):
        load_split(DataConfig(name="karpathy"), "train")
    with pytest.raises(DataError, match="not one of"):
        load_split(DataConfig(name="coco"), "train")


def test_open_rgb_errors_name_the_file(tmp_path):
    with pytest.raises(DataError, match="missing"):
        open_rgb(str(tmp_path / "nope.png"))
    (tmp_path / "junk.png").write_bytes(b"not an image")
    with pytest.raises(DataError, match="junk.png"):
        open_rgb(str(tmp_path / "junk.png"))
    Image.new("RGB", (64, 64), (1, 2, 3)).save(tmp_path / "full.jpg", quality=95)
    data = (tmp_path / "full.jpg").read_bytes()
    (tmp_path / "cut.jpg").write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match="cut.jpg"):
        open_rgb(str(tmp_path / "cut.jpg"))


def test_rgba_composited_on_white(tmp_path):
    img = Image.new("RGBA", (4, 4), (255, 0, 0, 0))
    img.save(tmp_path / "clear.png")
    assert open_rgb(str(tmp_path / "clear.png")).getpixel((0, 0)) == (255, 255, 255)


def test_fix_captions_per_image():
    fixed, truncated, padded = fix_captions_per_image([["a"] * 7, ["x", "y"], list("abcde")], 5)
    assert [len(c) for c in fixed] == [5, 5, 5] and (truncated, padded) == (1, 1)
    assert fixed[1] == ["x", "y", "x", "y", "x"]


def _write_precomp(folder, split, n_images, dim=6, per_caption=False, regions=0):
    rng = np.random.default_rng(0)
    rows = n_images * 5 if per_caption else n_images
    shape = (rows, regions, dim) if regions else (rows, dim)
    feats = rng.standard_normal(shape).astype(np.float32)
    if per_caption:
        feats = np.repeat(feats[::5], 5, axis=0)
    np.save(os.path.join(folder, f"{split}_ims.npy"), feats)
    with open(os.path.join(folder, f"{split}_caps.txt"), "w") as f:
        f.write("\n".join(f"caption {j} of image {j // 5}" for j in range(n_images * 5)) + "\n")
    return feats


def test_precomp_rows_per_image_and_per_caption(tmp_path):
    feats = _write_precomp(str(tmp_path), "train", 3)
    _write_precomp(str(tmp_path), "dev", 2, per_caption=True)
    region = _write_precomp(str(tmp_path), "test", 2, regions=4)
    cfg = DataConfig(name="precomp", precomp_dir=str(tmp_path))
    train = load_split(cfg, "train")
    assert train.num_images == 3 and train.captions[2][0] == "caption 10 of image 2"
    np.testing.assert_allclose(train.images.load(2), feats[2])
    val = load_split(cfg, "val")  # VSE++ calls it dev
    assert val.num_images == 2 and val.captions[1][4] == "caption 9 of image 1"
    assert train.images.feature_dim == 6
    np.testing.assert_allclose(load_split(cfg, "test").images.load(1), region[1].mean(0), rtol=1e-6)


def test_precomp_errors(tmp_path):
    _write_precomp(str(tmp_path), "train", 3)
    np.save(tmp_path / "train_ims.npy", np.zeros((4, 6), np.float32))
    cfg = DataConfig(name="precomp", precomp_dir=str(tmp_path))
    with pytest.raises(DataError, match="do not fit"):
        load_split(cfg, "train")
    with pytest.raises(DataError, match="test_ims.npy not found"):
        load_split(cfg, "test")
    np.save(tmp_path / "train_ims.npy", np.zeros((3, 6), np.float32))
    lines = (tmp_path / "train_caps.txt").read_text().splitlines()
    lines[6] = "  "
    (tmp_path / "train_caps.txt").write_text("\n".join(lines))
    with pytest.raises(DataError, match="train_caps.txt: line 7: empty caption"):
        load_split(cfg, "train")


def test_h5_split_streams_rows(tmp_path):
    path = str(tmp_path / "f.h5")
    feats = np.arange(12, dtype=np.float32).reshape(3, 4)
    write_h5_split(path, "train", feats, [f"c{j}" for j in range(15)])
    split = load_split(DataConfig(name="h5", h5=path), "train")
    assert split.num_images == 3 and split.captions[1] == [f"c{j}" for j in range(5, 10)]
    np.testing.assert_array_equal(split.images.load(2), feats[2])
    split.images.close()
    with pytest.raises(DataError, match="no group '/val'"):
        load_split(DataConfig(name="h5", h5=path), "val")
    with h5py.File(path, "a") as f:
        del f["train/captions"]
        f["train"].create_dataset("captions", data=["x"] * 14, dtype=h5py.string_dtype())
    with pytest.raises(DataError, match="need 15 captions"):
        load_split(DataConfig(name="h5", h5=path), "train")


def test_torch_datasets_and_collate(karpathy_dir):
    json_path, root = karpathy_dir
    cfg = DataConfig(name="karpathy", json=json_path, image_root=root, image_size=16)
    split = load_split(cfg, "train")
    vocab = build_vocab(split.flat_captions())
    pairs = PairDataset(split, vocab, image_transform(cfg, train=True))
    assert len(pairs) == 20
    images, caps, lengths, image_ids, caption_ids = collate_pairs([pairs[j] for j in (0, 7, 19)])
    assert images.shape == (3, 3, 16, 16)
    assert image_ids.tolist() == [0, 1, 3] and caption_ids.tolist() == [0, 7, 19]
    assert caps.shape[0] == 3 and caps.shape[1] == int(lengths.max())
    assert (caps[:, 0] == vocab.start_id).all()
    assert all(caps[r, lengths[r] - 1] == vocab.end_id for r in range(3))
    assert len(ImageDataset(split)) == 4
    caps, lengths, ids = collate_captions([CaptionDataset(split, vocab)[j] for j in range(5)])
    assert ids.tolist() == list(range(5)) and caps.shape[0] == 5


def test_extract_writes_streamable_h5(tmp_path, karpathy_dir):
    import torchvision

    from data.__main__ import main as data_main

    json_path, root = karpathy_dir
    weights = tmp_path / "r18.pth"
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), weights)
    out = tmp_path / "feats.h5"
    args = ["extract", "--out", str(out), "--device", "cpu", "data.name=karpathy", f"data.json={json_path}",
            f"data.image_root={root}", "data.image_size=32", "model.image_encoder=resnet18",
            f"model.cnn_weights={weights}"]
    assert data_main(args) == 0
    split = load_split(DataConfig(name="h5", h5=str(out)), "test")
    assert split.num_images == 2 and split.images.feature_dim == 512
    assert split.captions == load_split(DataConfig(name="karpathy", json=json_path, image_root=root), "test").captions
    assert split.images.load(0).shape == (512,)
    split.images.close()
    assert not [p for p in os.listdir(tmp_path) if ".tmp" in p]
    assert data_main(["extract", "--out", str(tmp_path / "x.h5"), f"data.json={json_path}"]) == 2  # small_cnn: refused
