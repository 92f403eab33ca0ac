"""Data commands.

    python -m data check [--config FILE] [--no-images] [key=value ...]
    python -m data extract --config FILE --out FEATURES.h5 [key=value ...]
    python -m data build-icons {tabler,mdi} --out DIR [--package FILE.tgz] [--max-train 2500]
"""
from __future__ import annotations

import argparse
import sys
from typing import Optional, Sequence

from builders.features import extract_features
from builders.icon_sets import SOURCES, build_icon_set
from config import ConfigError, load_config

from .check import check_dataset, format_report
from .records import DataError


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m data", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    check = sub.add_parser("check", help="validate a dataset: counts, vocabulary, OOV, every bad entry")
    check.add_argument("--config", help="YAML preset (default: the built-in Shapes set)")
    check.add_argument("--no-images", action="store_true", help="skip opening every image")
    check.add_argument("overrides", nargs="*", help="key=value overrides, e.g. data.json=FILE")
    extract = sub.add_parser("extract", help="write CNN features of every split to an HDF5 file")
    extract.add_argument("--config", help="YAML preset naming the images and model.image_encoder")
    extract.add_argument("--out", required=True, help="HDF5 file to write (then train with data.name=h5 data.h5=FILE)")
    extract.add_argument("--device", default="auto")
    extract.add_argument("--batch-size", type=int, default=64)
    extract.add_argument("overrides", nargs="*", help="key=value overrides, e.g. model.cnn_weights=PATH")
    icons = sub.add_parser("build-icons", help="build a real-image caption set (Karpathy JSON + PNGs) from an icon "
                           "collection in the npm registry")
    icons.add_argument("name", choices=sorted(SOURCES), help="which collection")
    icons.add_argument("--out", required=True, help="folder for dataset_<name>.json and images/")
    icons.add_argument("--package", help="the collection's npm .tgz or unpacked folder (default: npm pack the pinned "
                       "version)")
    icons.add_argument("--max-train", type=int, default=2500, help="training images kept (0: all)")
    icons.add_argument("--val", type=int, default=250, help="about this many val images (whole concepts)")
    icons.add_argument("--test", type=int, default=500, help="about this many test images (whole concepts)")
    icons.add_argument("--size", type=int, default=72, help="side of the rendered PNGs")
    icons.add_argument("--seed", type=int, default=0)
    icons.add_argument("--limit", type=int, default=0, help="keep only this many icons (a quick subset)")
    args = parser.parse_args(argv)
    if args.command == "build-icons":
        try:
            done = build_icon_set(args.name, args.out, args.package, args.max_train, args.val, args.test, args.size,
                                  args.seed, args.limit)
        except DataError as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
        skipped = f", {done['skipped']} skipped (named above)" if done["skipped"] else ""
        print(f"wrote {done['json']}: train {done['train']}, val {done['val']}, test {done['test']} images{skipped}\n"
              f"train with: python train.py --config configs/custom.yaml data.json={done['json']} "
              f"data.image_root={done['image_root']}")
        return 0 if done["train"] and done["val"] and done["test"] else 1
    from models.image_encoder import ModelError

    try:
        cfg = load_config(args.config, args.overrides)
        if args.command == "extract":
            counts = extract_features(cfg, args.out, args.device, args.batch_size)
            print(f"wrote {args.out}: " + ", ".join(f"{k} {v} images" for k, v in counts.items()))
            return 0
        report = check_dataset(cfg.data, open_images=not args.no_images)
    except (ConfigError, DataError, ModelError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(format_report(cfg.data, report))
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
