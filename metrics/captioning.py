"""Captioning metrics from pycocoevalcap's scorers, called one by one (docs/DESIGN.md section 5).

``COCOEvalCap.evaluate()`` would also build SPICE, which downloads models and fails offline, so
the scorers are called directly. METEOR and the PTB tokenizer run on Java; without Java the
captions are tokenised with our own tokenizer, METEOR is skipped, and the result says so.
Values are pycocoevalcap's own scale (fractions; papers print them x100).
"""
from __future__ import annotations

import atexit
import contextlib
import io
import shutil
from typing import Any, Hashable, Mapping, Optional, Sequence

from data.vocab import tokenize

METRIC_NAMES = ("BLEU-1", "BLEU-2", "BLEU-3", "BLEU-4", "METEOR", "ROUGE_L", "CIDEr")


def java_available() -> bool:
    return shutil.which("java") is not None


# One METEOR scorer (a Java process that takes about 5 s to start, most of a 1,000-caption score, and
# holds about 1 GB) serves every caption_metrics call until close_meteor(): a report scores the
# decoder's and the nearest-neighbour baseline's captions with one start instead of two.
_meteor: Optional[Any] = None


def _meteor_scorer():
    global _meteor
    if _meteor is None:
        from pycocoevalcap.meteor.meteor import Meteor

        _meteor = Meteor()
    return _meteor


def close_meteor() -> None:
    """End the shared METEOR process (the report and evaluate.py call it when they are done)."""
    global _meteor
    _meteor = None  # pycocoevalcap's Meteor ends its process when collected


atexit.register(close_meteor)


def _tokenized(gts: Mapping[Hashable, Sequence[str]], res: Mapping[Hashable, str], use_java: bool):
    if use_java:
        from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

        tok = PTBTokenizer()
        with contextlib.redirect_stdout(io.StringIO()):  # it prints a line per call
            return (tok.tokenize({k: [{"caption": c} for c in v] for k, v in gts.items()}),
                    tok.tokenize({k: [{"caption": c}] for k, c in res.items()}))
    return ({k: [" ".join(tokenize(c)) for c in v] for k, v in gts.items()},
            {k: [" ".join(tokenize(c))] for k, c in res.items()})


def caption_metrics(gts: Mapping[Hashable, Sequence[str]], res: Mapping[Hashable, str], meteor: bool = True) -> dict:
    """BLEU-1..4, METEOR, ROUGE_L and CIDEr of one caption per image against its references.

    Returns the scores plus ``SPICE: None`` and a ``notes`` list saying what was not computed;
    ``meteor=False`` skips METEOR (the slowest scorer) for quick comparisons.
    """
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.rouge.rouge import Rouge

    if set(gts) != set(res):
        raise ValueError("references and generated captions must cover the same images")
    use_java = java_available()
    refs, hyps = _tokenized(gts, res, use_java)
    out: dict = {}
    bleu, _ = Bleu(4).compute_score(refs, hyps, verbose=0)
    out.update({f"BLEU-{n + 1}": float(b) for n, b in enumerate(bleu)})
    notes = ["SPICE: not available offline (it downloads Stanford CoreNLP models)"]
    out["METEOR"] = None
    if not use_java:
        notes.append("METEOR and the PTB tokenizer need Java, which was not found; captions were "
                     "tokenised with the project's regex tokenizer instead")
    elif meteor:
        out["METEOR"] = float(_meteor_scorer().compute_score(refs, hyps)[0])
    out["ROUGE_L"] = float(Rouge().compute_score(refs, hyps)[0])
    out["CIDEr"] = float(Cider().compute_score(refs, hyps)[0])
    out["SPICE"] = None
    out["notes"] = notes
    return out
