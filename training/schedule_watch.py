"""Name the likely cause when val rsum collapses after a change of the training schedule.

A schedule change (hardest negatives switching or ramping in, the decoder moving from XE to SCST,
an lr decay, generated negatives or robust weighting starting) can wreck a matcher that was doing
well: VSE++'s abrupt hardest-negative switch took one real-image run from rsum 96.9 to 73. After
each validation, :func:`collapse_warning` compares the val curve with the changes
:func:`schedule_changes` reads off the config, and names the ones since the best epoch.
"""
from __future__ import annotations

import math
from typing import Optional, Sequence

from config import Config

from .steps import look_phase

# Val rsum below this share of its best counts as a collapse (a drop of more than a third).
COLLAPSE_RATIO = 2 / 3


def schedule_changes(cfg: Config) -> list[tuple[int, str]]:
    """Every planned schedule change as ``(epoch, text)``: the 0-based epoch whose training it first
    affects, and what changed with the config key to try. A change spread over several epochs (the
    hardest-negative ramp) is listed at each of them with the same text."""
    epochs, loss = cfg.train.epochs, cfg.loss
    changes = []
    if loss.max_violation and loss.warmup_epochs > 0:
        start = loss.warmup_epochs
        if loss.hard_ramp_epochs == 0:
            changes.append((start, f"hardest negatives started at epoch {start + 1} (loss.warmup_epochs={start}): "
                                   f"try loss.hard_ramp_epochs={max(2, start)} or loss.max_violation=false"))
        else:
            ramp = loss.hard_ramp_epochs
            text = (f"hardest negatives ramped in over epochs {start + 1}-{start + ramp} (loss.warmup_epochs={start}, "
                    f"loss.hard_ramp_epochs={ramp}): try loss.hard_ramp_epochs={2 * ramp} or loss.max_violation=false")
            changes += [(e, text) for e in range(start, start + ramp)]
    scst = [e for e in range(1, epochs) if look_phase(cfg, e - 1) == "xe" and look_phase(cfg, e) == "scst"]
    changes += [(e, f"the caption decoder moved from XE to SCST at epoch {e + 1} (look.scst_epochs="
                    f"{cfg.look.scst_epochs}): try a lower look.scst_lr (now {cfg.look.scst_lr:g}) or "
                    "look.scst_epochs=0") for e in scst]
    if cfg.train.lr_schedule == "step" and cfg.train.lr_decay_epochs > 0:  # cosine has no abrupt change
        every = cfg.train.lr_decay_epochs
        changes += [(e, f"the learning rate was multiplied by {cfg.train.lr_decay:g} at epoch {e + 1} "
                        f"(train.lr_decay_epochs={every}): try a later train.lr_decay_epochs")
                    for e in range(every, epochs, every)]
    if (loss.contrast_weight > 0 or loss.imagined_weight > 0) and loss.contrast_start_epoch > 0:
        start = loss.contrast_start_epoch
        changes.append((start, f"generated hard negatives started at epoch {start + 1} (loss.contrast_start_epoch="
                               f"{start}): try smaller loss.contrast_weight/loss.imagined_weight (now "
                               f"{loss.contrast_weight:g}/{loss.imagined_weight:g}) or a later start"))
    if cfg.robust.enabled and cfg.robust.warmup_epochs > 0:
        start = cfg.robust.warmup_epochs
        changes.append((start, f"robust pair weighting started at epoch {start + 1} (robust.warmup_epochs={start}): "
                               "try a later robust.warmup_epochs or robust.enabled=false"))
    return sorted(changes, key=lambda c: c[0])


def collapse_warning(val_history: Sequence[float], changes: Sequence[tuple[int, str]],
                     ratio: float = COLLAPSE_RATIO) -> Optional[str]:
    """A warning when the latest val rsum is below ``ratio`` of the best so far and the schedule
    changed after the best epoch; ``None`` otherwise.

    Args:
        val_history: val rsum after each epoch, index = 0-based epoch, the last entry the latest
            (NaN for epochs not known, e.g. before a resume from an old checkpoint).
        changes: ``(epoch, text)`` from :func:`schedule_changes`; those in epochs after the best
            one, up to the latest, are named (each text once).
    """
    if not val_history or not math.isfinite(val_history[-1]):
        return None
    now, current = len(val_history) - 1, val_history[-1]
    seen = [(rsum, -epoch) for epoch, rsum in enumerate(val_history) if math.isfinite(rsum)]
    best, best_epoch = max(seen)  # the first epoch at the best value
    best_epoch = -best_epoch
    if best <= 0 or current >= ratio * best:
        return None
    causes = list(dict.fromkeys(text for epoch, text in changes if best_epoch < epoch <= now))
    if not causes:
        return None
    return (f"WARNING: val rsum {current:.1f} at epoch {now + 1} is below {ratio:.2g} of its best ({best:.1f} at "
            f"epoch {best_epoch + 1}); changed since then: " + "; ".join(causes))
