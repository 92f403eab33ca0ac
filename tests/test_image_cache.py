"""data.cache_mb: training images decoded and resized once; crops and flips cut from memory."""
import numpy as np
import torch

from config import DataConfig
from data import build_vocab, load_split
from data.datasets import PairDataset, ResizedImages, cache_resized, collate_pairs, image_transform
from tests.conftest import write_karpathy


def _config(json_path, root, **extra) -> DataConfig:
    args = dict(name="karpathy", json=json_path, image_root=root, image_size=12, resize=16, augment=True, flip=True)
    args.update(extra)
    return DataConfig(**args)


def _batches(split, cfg, vocab, seed: int) -> tuple:
    torch.manual_seed(seed)
    dataset = PairDataset(split, vocab, image_transform(cfg, train=True), cfg.max_caption_len)
    return collate_pairs([dataset[i] for i in range(len(dataset))])


def test_cached_crops_and_flips_equal_the_file_path_exactly(tmp_path):
    cfg = _config(write_karpathy(str(tmp_path), n_per_split=(6, 2, 2)), str(tmp_path))
    split = load_split(cfg, "train")
    cached = cache_resized(split, cfg, log=lambda _: None)
    assert isinstance(cached.images, ResizedImages) and len(cached.images) == split.num_images
    assert cached.captions == split.captions and cached.images.describe(2) == split.images.describe(2)
    vocab = build_vocab(split.flat_captions(), 1)
    for seed in (0, 1, 2):  # the same random crops and flips, drawn from the same generator
        files, memory = _batches(split, cfg, vocab, seed), _batches(cached, cfg, vocab, seed)
        torch.testing.assert_close(memory[0], files[0], rtol=0, atol=1e-6)
        assert memory[0].shape == (30, 3, 12, 12)
        for a, b in zip(memory[1:], files[1:]):
            assert torch.equal(a, b)
    # the draws differ between seeds, so the check above compared real augmentations
    assert not torch.equal(_batches(cached, cfg, vocab, 0)[0], _batches(cached, cfg, vocab, 1)[0])
    # val/test transforms (centre crop) read the cache's PIL images the same way too
    val_like = image_transform(cfg, train=False)
    torch.testing.assert_close(val_like(cached.images.load(3)), val_like(split.images.load(3)), rtol=0, atol=0)


def test_no_cache_when_over_the_budget_or_switched_off(tmp_path):
    logged = []
    cfg = _config(write_karpathy(str(tmp_path)), str(tmp_path), resize=640, image_size=32)  # 640x768x3 each: 1.4 MB
    split = load_split(cfg, "train")
    assert cache_resized(split, _config(cfg.json, cfg.image_root, resize=640, image_size=32, cache_mb=4),
                         log=logged.append) is split
    assert "data.cache_mb=4" in logged[0] and "6 MB" in logged[0]
    assert cache_resized(split, _config(cfg.json, cfg.image_root, cache_mb=0), log=logged.append) is split
    assert isinstance(cache_resized(split, _config(cfg.json, cfg.image_root, resize=640, image_size=32, cache_mb=8),
                                    log=logged.append).images, ResizedImages)
    assert len(logged) == 1
    arrays = np.stack(cache_resized(split, _config(cfg.json, cfg.image_root), log=logged.append).images.arrays)
    assert arrays.dtype == np.uint8 and arrays.shape == (4, 16, 19, 3)  # shorter side 20 -> 16, aspect kept
