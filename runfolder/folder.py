"""The run folder: resolved config, vocabulary, checkpoints, TensorBoard events, reports."""
from __future__ import annotations

import os
from dataclasses import dataclass, replace

from config import Config, from_dict, to_yaml
from data.atomic import write_text_atomic
from data.records import DataError
from data.vocab import Vocabulary
from models.lim import LIM

from .checkpoint import CheckpointError, load_checkpoint

# Every file a training run writes, by role. Older run folders use the same names.
ARTIFACTS = {
    "config": "config.yaml",  # the resolved config
    "vocab": "vocab.json",  # the training vocabulary
    "tensorboard": "tb",  # TensorBoard events (a folder)
    "best": "best.pt",  # the best epoch on val rsum
    "last": "last.pt",  # the end of the last finished epoch (written last: the commit point)
    "xe": "xe.pt",  # the decoder as cross-entropy left it, before SCST
    "stage2": "stage2.pt",  # semi-supervised stage 2
    "wrong_pairs": "wrong_pairs.json",  # injected wrong pairs (data.wrong_fraction)
    "labelled_images": "labelled_images.json",  # the labelled images (data.labelled_fraction)
    "report_json": "report.json",  # the end-of-training test report
    "report_md": "report.md",
    "report_html": "report.html",
    "captions_test": "captions_test.json",  # the best checkpoint's test captions, COCO results format
    "imagined_test": "imagined_test.png",  # the grid imagined from test captions
}


@dataclass(frozen=True)
class RunFolder:
    """The paths of a run's files: ``RunFolder(root).path("report_json")``, or the properties."""

    root: str

    def path(self, role: str) -> str:
        return os.path.join(self.root, ARTIFACTS[role])

    @property
    def config(self) -> str:
        return self.path("config")

    @property
    def vocab(self) -> str:
        return self.path("vocab")

    @property
    def tensorboard(self) -> str:
        return self.path("tensorboard")

    def checkpoint(self, which: str) -> str:
        """``best``, ``last``, ``xe`` or ``stage2`` inside the folder, or any other path as given."""
        if which in ("best", "last", "xe", "stage2"):
            return self.path(which)
        return which

    def has_run(self) -> bool:
        return any(os.path.exists(self.checkpoint(w)) for w in ("best", "last"))

    def write_config(self, cfg: Config) -> None:
        write_text_atomic(self.config, to_yaml(cfg))


def require_decoder(model, what: str, run: str = "this run") -> None:
    """The one error for a feature that needs the caption decoder of a run trained without it."""
    if model.decoder is None:
        raise CheckpointError(f"{run} has no caption decoder (it was trained with look.lambda_i2t=0), which {what} "
                              "needs; train with look.lambda_i2t=1 (the default)")


def fresh_folder(out_dir: str) -> str:
    """``out_dir`` itself, or ``out_dir-2``, ``-3``, ... when it already holds a run.

    Starting a new run never overwrites an old one; ``train.resume=true`` continues one.
    """
    candidate, n = out_dir, 1
    while RunFolder(candidate).has_run():
        n += 1
        candidate = f"{out_dir}-{n}"
    return candidate


def load_trained(run_dir: str, which: str = "best") -> tuple[Config, Vocabulary, LIM, dict]:
    """Config, vocabulary and model (strictly loaded, on CPU) from a run folder's checkpoint."""
    if not os.path.isdir(run_dir):
        raise CheckpointError(f"run folder not found: {run_dir}")
    folder = RunFolder(run_dir)
    path = folder.checkpoint(which)
    ckpt = load_checkpoint(path)
    cfg = from_dict(ckpt["config"])
    vocab = Vocabulary(ckpt["vocab"])
    if os.path.exists(folder.vocab):
        try:
            on_disk = Vocabulary.load(folder.vocab)
        except DataError as err:
            raise CheckpointError(str(err)) from None
        if on_disk != vocab:
            raise CheckpointError(
                f"{folder.vocab} ({len(on_disk)} words) does not match the vocabulary in {path} "
                f"({len(vocab)} words): the folder mixes two runs"
            )
    # The checkpoint holds every weight: do not reread a CNN weights file that may not exist here.
    model_cfg = replace(cfg.model, cnn_weights=None)
    model = LIM(model_cfg, cfg.look, cfg.imagine, len(vocab), ckpt.get("image_feature_dim"))
    try:
        model.load_state_dict(ckpt["model"], strict=True)
    except RuntimeError as err:
        raise CheckpointError(f"{path}: weights do not fit the model its config describes ({str(err)[:300]})") from None
    return cfg, vocab, model.eval(), ckpt


def load_other_run(run_dir: str, own_run: str, key: str, which: str = "best") -> tuple[Config, Vocabulary, LIM, dict]:
    """:func:`load_trained` for a run another run reads (a judge, a grader, an image encoder to start
    from), named by config ``key`` in errors; refused when missing or when it is ``own_run`` itself."""
    if not os.path.isdir(run_dir):
        raise CheckpointError(f"{key}: run folder not found: {run_dir}")
    if os.path.realpath(run_dir) == os.path.realpath(own_run):
        raise CheckpointError(f"{key}={run_dir} is this run: name another run (trained separately)")
    return load_trained(run_dir, which)
