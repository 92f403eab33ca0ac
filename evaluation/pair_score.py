"""Score arbitrary (image, caption) pairs with the fused score, calibrated on the val split."""
from __future__ import annotations

import numpy as np
import torch

from data.datasets import ImageDataset, collate_images, image_transform, pad_captions
from data.records import Split
from data.vocab import Vocabulary
from metrics.pairs import auroc, best_threshold
from models.lim import LIM
from runfolder.checkpoint import CheckpointError


@torch.no_grad()
def raw_pair_scores(model: LIM, images: torch.Tensor, captions: list[str], vocab: Vocabulary, max_len: int,
                    device: torch.device, batch: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """Embedding similarity and caption log-likelihood ``(P,)`` each of pairs (``images[p]``, ``captions[p]``)."""
    model.eval()
    emb, ll = [], []
    for start in range(0, len(captions), batch):
        x = images[start:start + batch].to(device)
        ids, lengths = pad_captions([torch.tensor(vocab.encode(c, max_len)) for c in captions[start:start + batch]])
        img = model.matcher.encode_images(x)
        cap = model.matcher.encode_captions(ids.to(device), lengths)
        emb.append(model.matcher.paired_similarity(img, cap).float().cpu())
        ll.append(model.decoder.log_likelihood(img["grounded"], ids.to(device), lengths).float().cpu())
    return torch.cat(emb).numpy(), torch.cat(ll).numpy()


class PairScorer:
    """Fused pair score ``w * z(s_emb) + (1 - w) * z(l)`` with z-scores, weight and suspect
    threshold all fitted on val: each val image's first caption (correct) and the first caption of
    the next image (wrong). ``w`` maximises val AUROC; the threshold maximises balanced accuracy."""

    def __init__(self, model: LIM, val: Split, vocab: Vocabulary, data_cfg, device: torch.device):
        if model.decoder is None:
            raise CheckpointError("this run has no caption decoder (look.lambda_i2t=0): the fused pair score needs "
                                  "its caption likelihood; train with look.lambda_i2t=1")
        self.model, self.vocab, self.data_cfg, self.device = model, vocab, data_cfg, device
        dataset = ImageDataset(val, image_transform(data_cfg, train=False))
        images = collate_images([dataset[i] for i in range(val.num_images)])[0]
        n = val.num_images
        true = [val.captions[i][0] for i in range(n)]
        wrong = [val.captions[(i + 1) % n][0] for i in range(n)]
        emb, ll = raw_pair_scores(model, torch.cat([images, images]), true + wrong, vocab,
                                  data_cfg.max_caption_len, device)
        labels = np.r_[np.ones(n), np.zeros(n)]
        self.stats = (emb.mean(), emb.std() or 1.0, ll.mean(), ll.std() or 1.0)
        self.weight = max(np.linspace(0, 1, 11), key=lambda w: auroc(self._fuse(emb, ll, w), labels))
        fused = self._fuse(emb, ll, self.weight)
        self.val_auroc = auroc(fused, labels)
        self.threshold, self.val_balanced_accuracy = best_threshold(fused, labels)

    def _fuse(self, emb: np.ndarray, ll: np.ndarray, weight: float) -> np.ndarray:
        me, se, ml, sl = self.stats
        return weight * (emb - me) / se + (1 - weight) * (ll - ml) / sl

    def fuse(self, emb: np.ndarray, ll: np.ndarray) -> np.ndarray:
        """The fitted fused score of raw embedding similarities and caption log-likelihoods."""
        return self._fuse(emb, ll, self.weight)

    def score(self, images: torch.Tensor, captions: list[str]) -> np.ndarray:
        """Fused scores ``(P,)`` of normalised images ``(P, 3, S, S)`` with their captions."""
        emb, ll = raw_pair_scores(self.model, images, captions, self.vocab, self.data_cfg.max_caption_len, self.device)
        return self.fuse(emb, ll)
