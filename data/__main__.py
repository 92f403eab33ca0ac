"""Data commands.

    python -m data check [--config FILE] [--no-images] [key=value ...]
    python -m data extract --config FILE --out FEATURES.h5 [key=value ...]
"""
from __future__ import annotations

import argparse
import sys
from typing import Optional, Sequence

from config import ConfigError, load_config

from .check import check_dataset, format_report
from .extract import extract_features
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
    args = parser.parse_args(argv)
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
