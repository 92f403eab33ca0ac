"""``report.json`` and ``report.md`` (schema in docs/DESIGN.md section 6), written atomically."""
from __future__ import annotations

import json

from data.atomic import write_text_atomic

RECALL_KEYS = ("r1", "r5", "r10", "medr", "meanr")
COLLAPSE_SHARE = 20.0  # % of the images one generated caption may cover before report.md warns of a collapse


def _round(metrics: dict) -> dict:
    """The schema's shape: ``{i2t: {...}, t2i: {...}, rsum, ties}``, numbers rounded for reading."""
    out = {d: {k: round(float(metrics[d][k]), 2) for k in RECALL_KEYS} for d in ("i2t", "t2i")}
    out["rsum"] = round(float(metrics["rsum"]), 2)
    if "ties" in metrics:
        out["ties"] = {k: float(v) for k, v in metrics["ties"].items()}
    return out


def retrieval_section(result: dict) -> dict:
    """``retrieval`` block: the primary protocol's numbers as ``embedding``, all protocols listed."""
    protocols = {name: _round(m) for name, m in result["protocols"].items()}
    return {"protocol": result["primary"], "embedding": protocols[result["primary"]], "protocols": protocols}


def markdown_table(report: dict) -> str:
    """The report as Markdown: the retrieval table, then one block per section the report holds."""
    lines = []
    for render in (_retrieval_lines, _polish_lines, _captioning_lines, _semi_lines, _synthesis_lines, _modality_lines,
                   _swap_lines, _binding_lines, _wrong_pair_lines, _tie_lines):
        lines += render(report)
    return "\n".join(lines) + "\n"


def fused_label(fused: dict, with_protocol: bool = True) -> str:
    """A fused row's name: protocol, K, the val-picked weight, and whether captions' priors were taken out."""
    prior = ", caption prior out" if fused.get("caption_prior") else ""
    head = f"{fused['protocol']} fused" if with_protocol else "full + fused"
    return f"{head} (top {fused['k']}, w={fused['weight']:.1f}{prior})"


def _retrieval_lines(report: dict) -> list[str]:
    lines = [f"dataset: {report.get('dataset', '?')}, split: {report.get('split', '?')}, "
             f"checkpoint: {report.get('checkpoint', '?')}", "",
             "| protocol | i2t R@1 | R@5 | R@10 | medr | meanr | t2i R@1 | R@5 | R@10 | medr | meanr | rsum |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    rows = list(report["retrieval"]["protocols"].items())
    fused = report["retrieval"].get("fused")
    if fused:
        rows.append((fused_label(fused), fused))
    for name, m in rows:
        cells = [f"{m[d][k]:.1f}" if k.startswith("r") else f"{m[d][k]:g}" for d in ("i2t", "t2i") for k in RECALL_KEYS]
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {m['rsum']:.1f} |")
    return lines


def _captioning_lines(report: dict) -> list[str]:
    cap = report.get("captioning")
    if not cap:
        return []
    decode = f", {cap['decode']}" if "decode" in cap else ""
    lines = ["", f"captioning (beam {cap.get('beam_size', '?')}{decode}, pycocoevalcap scale):", ""]
    lines += captioning_table(cap)
    if "distinctiveness" in cap:
        d, f = cap["distinctiveness"], cap["fluency"]
        lines.append(f"\ndistinctiveness (each caption retrieves its image among the split's, own matcher): "
                     f"R@1 {d['r1']:.1f}, R@5 {d['r5']:.1f}; fluency: {f['mean_words']:.1f} words, "
                     f"{f['stutter_pct']:.1f}% with a word repeated, {f['seen_in_references_pct']:.1f}% verbatim "
                     "among the references")
    lines += captioning_verdicts(cap, report.get("split", "test"))
    for phase, m in report.get("captioning_by_phase", {}).items():
        lines.append(f"\nafter {phase.upper()}: CIDEr {m['CIDEr']:.3f}, BLEU-4 {m['BLEU-4']:.3f}")
    return lines + [f"\nnote: {n}" for n in cap.get("notes", [])]


def _semi_lines(report: dict) -> list[str]:
    semi = report.get("semi")
    if not semi:
        return []
    graders = [("own", "own matcher")] + [(k, f"{label} {semi[run]}") for k, label, run in (
        ("reward_run", "reward run", "reward_run"), ("evaluator", "evaluator", "evaluator_run"))
        if any(k in semi.get(stage, {}) for stage in ("stage1", "stage2"))]
    head = "| stage | checkpoint | CIDEr | BLEU-4 | words | repeated pair % | verbatim refs % |"
    for key, _ in graders:
        head += f" R@1 ({key}) | CLIP-S ({key}) |"
    lines = ["", f"semi-supervised captioning ({semi['labelled_images']} labelled training images, "
                 f"{semi['stage2_epochs']} stage-2 epochs, reward {semi['reward']} from "
                 f"{semi.get('reward_run', 'own')}):", "", head, "|---" * head.count(" | ") + "|---|"]
    for stage in ("stage1", "stage2"):
        if stage not in semi:
            continue
        m, flu = semi[stage], semi[stage]["fluency"]
        row = (f"| {stage} | {m['checkpoint']} | {m['CIDEr']:.3f} | {m['BLEU-4']:.3f} | {flu['mean_words']:.1f} | "
               f"{flu.get('repeated_pair_pct', float('nan')):.1f} | {flu['seen_in_references_pct']:.1f} |")
        for key, _ in graders:
            g = m["distinctiveness"] if key == "own" else m.get(key, {})
            clip = m.get("clip_s") if key == "own" else g.get("clip_s")
            row += f" {g.get('r1', float('nan')):.1f} | " + ("n/a" if clip is None else f"{clip:.3f}") + " |"
        lines.append(row)
    lines += [f"- {key}: {label}" for key, label in graders]
    return lines


def _polish_lines(report: dict) -> list[str]:
    p = report.get("polish")
    if not p:
        return []
    return ["", f"- then {p['steps']} matcher steps with the generator frozen (loss.polish_steps; imagined negatives "
                f"weighted {p['imagined_weight']:g}, {p['seconds']:.0f} s): val rsum {p['val_rsum_before']:.1f} -> "
                f"{p['val_rsum_after']:.1f}"]


def _synthesis_lines(report: dict) -> list[str]:
    syn = report.get("synthesis")
    if not syn:
        return []
    lines = ["", "synthesis (text -> image):", ""]
    if "r_precision" in syn:
        lines += [f"- R-precision (1 true vs {syn['mismatched_captions']} captions, evaluator {syn['evaluator']}): "
                  f"{syn['r_precision']:.1f}% (real images: {syn['r_precision_real']:.1f}%)",
                  f"- Frechet distance in the evaluator's embedding: {syn['frechet_distance_evaluator']:.4f} "
                  f"(real vs real halves: {syn['frechet_real_halves']:.4f}); not the published FID"]
    if syn.get("swaps"):
        parts = [f"{name} {e['imagined']:.1f}% (real {e['real']:.1f}%, {e['pairs']} pairs)"
                 for name, e in syn["swaps"].items()]
        lines.append("- the imagined image scores its caption above a one-word swap (50% = the word is not drawn): "
                     + ", ".join(parts))
    if "fid" in syn:
        lines.append(f"- published FID {syn['fid']:.2f}, Inception Score {syn['inception_score']:.2f} "
                     f"+- {syn['inception_score_std']:.2f}")
    if "probe" in syn:
        p = syn["probe"]
        lines.append(f"- asked for \"a large <colour> <shape>\" ({p['captions']} captions x {p['per_caption']} images): "
                     f"the named colour dominates in {p['colour_dominant']:.1f}%, exactly one object in "
                     f"{p['one_object']:.1f}% (mean {p['mean_objects']:.2f} objects)")
    if "gan_solo" in syn:
        solo = syn["gan_solo"]
        lines.append(f"- the GAN then trained alone on the frozen matcher for {solo['steps']} steps "
                     f"({solo['seconds']:.0f} s, imagine.solo_steps) from epoch {solo['from_epoch']}'s model")
    if "grid" in syn:
        lines.append(f"- imagined from test captions: ![grid]({syn['grid']}) "
                     f"(diversity {syn['diversity_ratio']:.2f} of real)")
    if "note" in syn:
        lines.append(f"- note: {syn['note']}")
    return lines


def _modality_lines(report: dict) -> list[str]:
    modality = report.get("modality")
    if not modality:
        return []
    adversary = "" if "classifier_accuracy" not in modality else \
        f"; the adversary trained behind gradient reversal: {modality['classifier_accuracy']:.1f}%"
    return ["", f"image vs caption vectors (balanced accuracy, 50% = indistinguishable): a fresh probe "
                f"{modality['probe_accuracy']:.1f}%{adversary}"]


def _swap_lines(report: dict) -> list[str]:
    swaps = report.get("swaps")
    if not swaps:
        return []
    lines = ["", "one-word swaps (% of tests the true caption wins):", "",
             "| class | image queries | caption queries | swaps | captions without the class |", "|---|---|---|---|---|"]
    for name, m in swaps.items():
        iq = f"{m['image_query']:.1f}" if "image_query" in m else "n/a"
        cq = f"{m['caption_query']:.1f} ({m['caption_pairs']})" if "caption_query" in m else "n/a"
        lines.append(f"| {name} | {iq} | {cq} | {m['swaps']} | {m['captions_without']} |")
    return lines


def _binding_lines(report: dict) -> list[str]:
    binding = report.get("binding")
    if not binding:
        return []
    return ["", f"attribute binding: for {binding['queries']} captions \"a large <colour> <shape>\", an image "
                f"with that colour and shape comes first in {binding['top1']:.1f}% of queries"] + \
        [f"- \"{text}\" -> top image: {objects}" for text, objects in binding["misses"][:8]]


def _wrong_pair_lines(report: dict) -> list[str]:
    wrong = report.get("wrong_pairs")
    if not wrong:
        return []
    if "fused" not in wrong:
        return ["", "injected wrong training pairs:", "", f"- note: {wrong['note']}"]
    return ["", "injected wrong training pairs:", "",
            f"- {wrong['wrong']} of {wrong['pairs']} training pairs wrong; flagged by the fused score "
            f"(w={wrong['weight']:.1f}): AUROC {wrong['fused']['auroc']:.3f}, "
            f"AP {wrong['fused']['average_precision']:.3f}",
            f"- embedding only: AUROC {wrong['embedding_only']['auroc']:.3f}; caption likelihood only: "
            f"AUROC {wrong['likelihood_only']['auroc']:.3f}",
            f"- at the val threshold: {100 * wrong['flagged_wrong']:.1f}% of wrong pairs flagged, "
            f"{100 * wrong['flagged_correct']:.1f}% of correct ones"]


def _tie_lines(report: dict) -> list[str]:
    ties = report["retrieval"]["embedding"].get("ties")
    if not ties:
        return []
    return ["", f"queries with tied scores (broken against the query): i2t {ties['i2t']:g}, t2i {ties['t2i']:g}"]


def captioning_table(cap: dict) -> list[str]:
    """The decoder's captioning metrics, diversity beside them, and the nearest-neighbour baseline's
    row when the report has one."""
    names = [k for k in ("BLEU-1", "BLEU-4", "METEOR", "ROUGE_L", "CIDEr") if k in cap]
    rows = [("decoder", cap)]
    nn = cap.get("nearest_neighbour")
    if nn and "CIDEr" in nn:
        rows.append((f"nearest neighbour (top {nn['k']} of {nn['train_images']} train images)", nn))
    lines = ["| captions | " + " | ".join(names) + " | distinct % | mean length |", "|---" * (len(names) + 3) + "|"]
    for label, m in rows:
        cells = ["n/a" if m.get(k) is None else f"{m[k]:.3f}" for k in names]
        div = m.get("diversity")
        cells += ["n/a", "n/a"] if not div else [f"{div['distinct']:.1f}", f"{div['mean_length']:.1f}"]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return lines


def captioning_verdicts(cap: dict, split: str) -> list[str]:
    """The decoder against the nearest-neighbour baseline, and a WARNING when one caption covers more
    than ``COLLAPSE_SHARE`` % of the images."""
    lines = []
    nn = cap.get("nearest_neighbour")
    if nn and "CIDEr" in nn:
        verdict = "the decoder beats it" if cap["CIDEr"] > nn["CIDEr"] else "the decoder does NOT beat it"
        lines.append(f"\nnearest-neighbour baseline: CIDEr {nn['CIDEr']:.3f} (decoder {cap['CIDEr']:.3f}): {verdict}")
    if nn:
        lines.append(f"\n{'baseline' if 'CIDEr' in nn else 'nearest-neighbour baseline'}: {nn['note']}")
    div = cap.get("diversity")
    if div and div["top_share"] > COLLAPSE_SHARE:
        lines.append(f"\nWARNING: one caption, \"{div['top_caption']}\", covers {div['top_share']:.1f}% of the "
                     f"{split} images: the decoder has likely collapsed")
    return lines


def write_report(report: dict, json_path: str, md_path: str | None = None) -> None:
    write_text_atomic(json_path, json.dumps(report, indent=2) + "\n")
    if md_path:
        write_text_atomic(md_path, "# Report\n\n" + markdown_table(report))
