"""Data commands: ``python -m data check [--config FILE] [key=value ...]``."""
from __future__ import annotations

import argparse
import sys
from typing import Optional, Sequence

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
    args = parser.parse_args(argv)
    try:
        cfg = load_config(args.config, args.overrides)
        report = check_dataset(cfg.data, open_images=not args.no_images)
    except (ConfigError, DataError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(format_report(cfg.data, report))
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
