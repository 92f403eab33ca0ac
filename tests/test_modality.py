"""Modality-invariant embedding: gradient reversal, the ramp, the classifier's accuracy in the report."""
import pytest
import torch

import train
from models.modality import ModalityClassifier, balanced_accuracy, modality_logits_loss, ramp, reverse_gradient
from tests.test_train import tiny


def modality_loss(classifier: ModalityClassifier, img: torch.Tensor, cap: torch.Tensor,
                  scale: float) -> tuple[torch.Tensor, torch.Tensor]:
    """BCE of the classifier on image (label 1) and caption (label 0) vectors, seen through gradient
    reversal with ``scale``; and its balanced accuracy (detached)."""
    return modality_logits_loss(classifier(reverse_gradient(torch.cat([img, cap]), scale)), len(img))


def test_gradient_reversal_flips_and_scales_the_gradient_reaching_the_encoder():
    x = torch.randn(4, 3, requires_grad=True)
    w = torch.randn(4, 3)
    (w * reverse_gradient(x, 0.5)).sum().backward()
    torch.testing.assert_close(x.grad, -0.5 * w)
    y = torch.randn(4, 3, requires_grad=True)
    torch.testing.assert_close(reverse_gradient(y, 2.0), y)  # identity forward


def test_encoder_and_classifier_get_opposite_pulls():
    torch.manual_seed(0)
    clf = ModalityClassifier(3, 8)
    img = torch.randn(16, 3, requires_grad=True)
    cap = torch.randn(16, 3) + 2.0
    loss, acc = modality_loss(clf, img, cap, scale=1.0)
    loss.backward()
    reversed_grad = img.grad.clone()
    img.grad = None
    plain = torch.nn.functional.binary_cross_entropy_with_logits(
        clf(torch.cat([img, cap])), torch.cat([torch.ones(16), torch.zeros(16)]))
    plain.backward()
    torch.testing.assert_close(reversed_grad, -img.grad)  # the encoder climbs what the classifier descends
    assert 0 <= float(acc) <= 1


def test_ramp_and_balanced_accuracy():
    assert ramp(0) == 0 and ramp(1) == pytest.approx(1, abs=1e-4) and 0 < ramp(0.1) < ramp(0.5) < 1
    logits, labels = torch.tensor([2.0, 1.0, -1.0, 3.0]), torch.tensor([1.0, 1.0, 0.0, 0.0])
    assert float(balanced_accuracy(logits, labels)) == pytest.approx(0.75)


def test_invariant_training_reports_the_classifiers_accuracy(tmp_path):
    report = train.main(tiny(tmp_path, **{"train.epochs": 1, "look.lambda_i2t": 0, "imagine.lambda_t2i": 0,
                                          "model.invariant_weight": 0.5}))
    assert 0 <= report["modality"]["classifier_accuracy"] <= 100 and 0 <= report["modality"]["probe_accuracy"] <= 100
    assert "gradient reversal" in (tmp_path / "run" / "report.md").read_text()


def test_the_probe_tells_apart_separable_modalities_and_not_identical_ones():
    from models.modality import probe_accuracy

    gen = torch.Generator().manual_seed(0)
    img = {"a": torch.randn(200, 8, generator=gen)}
    shifted = {"a": torch.randn(1000, 8, generator=gen) + 3.0}  # 5 captions per image, far away
    same = {"a": torch.randn(1000, 8, generator=gen)}  # drawn like the images
    assert probe_accuracy(img, shifted) > 0.98
    assert abs(probe_accuracy(img, same) - 0.5) < 0.1
    with pytest.raises(ValueError, match="two images"):
        probe_accuracy({"a": img["a"][:1]}, {"a": same["a"][:5]})
