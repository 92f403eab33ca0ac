"""model.image_init: the image encoder starts from another run's, frozen or fine-tuned."""
import pytest
import torch

import train
from config import load_config
from models.lim import LIM
from runfolder.checkpoint import CheckpointError
from runfolder.folder import load_trained
from tests.test_train import tiny
from training.image_init import init_image_encoder


@pytest.fixture(scope="module")
def donor(tmp_path_factory):
    """A matcher trained on every pair (the role of a pretrained image tower)."""
    tmp = tmp_path_factory.mktemp("donor")
    train.main(tiny(tmp, out="donor", **{"imagine.lambda_t2i": 0, "look.lambda_i2t": 0, "train.epochs": 1}))
    return tmp / "donor"


def _encoder(run):
    return load_trained(str(run), "best")[2].matcher.image_encoder.state_dict()


def _same(a, b, prefix):
    return all(torch.equal(a[k], b[k]) for k in a if k.startswith(prefix))


def test_the_copy_is_the_donor_encoder_and_nothing_else(tmp_path, donor):
    cfg = load_config(None, tiny(tmp_path, **{"model.image_init": str(donor), "imagine.lambda_t2i": 0}))
    model = LIM(cfg.model, cfg.look, cfg.imagine, 30)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    assert not _same(model.matcher.image_encoder.state_dict(), _encoder(donor), "")
    lines = []
    init_image_encoder(model, cfg, str(tmp_path / "run"), None, lines.append)
    assert _same(model.matcher.image_encoder.state_dict(), _encoder(donor), "")
    assert "best.pt" in lines[0] and "fine-tuned" in lines[0]
    after = model.state_dict()
    untouched = [k for k in after if not k.startswith("matcher.image_encoder.")]
    assert untouched and all(torch.equal(before[k], after[k]) for k in untouched)


def test_a_frozen_backbone_stays_the_donors_while_the_heads_learn(tmp_path, donor):
    train.main(tiny(tmp_path, **{"model.image_init": str(donor), "model.finetune": False, "imagine.lambda_t2i": 0,
                                 "train.epochs": 1, "look.scst_epochs": 0}))
    mine, theirs = _encoder(tmp_path / "run"), _encoder(donor)
    assert _same(mine, theirs, "backbone.")  # weights and BatchNorm statistics
    assert not torch.equal(mine["grounded.weight"], theirs["grounded.weight"])
    train.main(tiny(tmp_path, out="tuned", **{"model.image_init": str(donor), "imagine.lambda_t2i": 0,
                                              "train.epochs": 1, "look.scst_epochs": 0}))
    assert not _same(_encoder(tmp_path / "tuned"), theirs, "backbone.")


@pytest.mark.parametrize("override, key", [("model.embed_dim=24", "model.embed_dim"),
                                           ("data.image_size=48", "data.image_size"),
                                           ("model.measure=cosine", "model.measure")])
def test_a_donor_that_reads_other_input_is_refused_naming_the_key(tmp_path, donor, override, key):
    cfg = load_config(None, tiny(tmp_path, **{"model.image_init": str(donor)}) + [override])
    model = LIM(cfg.model, cfg.look, cfg.imagine, 30)
    with pytest.raises(CheckpointError, match=key):
        init_image_encoder(model, cfg, str(tmp_path / "run"), None)


def test_a_missing_or_own_folder_is_refused(tmp_path, donor):
    cfg = load_config(None, tiny(tmp_path, **{"model.image_init": str(tmp_path / "nowhere")}))
    model = LIM(cfg.model, cfg.look, cfg.imagine, 30)
    with pytest.raises(CheckpointError, match="model.image_init: run folder not found"):
        init_image_encoder(model, cfg, str(tmp_path / "run"), None)
    cfg = load_config(None, tiny(tmp_path, **{"model.image_init": str(donor)}))
    with pytest.raises(CheckpointError, match="is this run"):
        init_image_encoder(model, cfg, str(donor), None)
