"""The `minprune` command line: `minprune demo` (and, as they land, sweeps and reproductions)."""
from __future__ import annotations

import argparse
import sys
import time

from . import data, models, train


def demo(args) -> int:
    """Train LeNet-5 on the embedded digits and print a per-epoch table and the test accuracy."""
    (x, y), test = data.load_mnist5k()
    model = models.get_model(args.model, seed=args.seed)
    start = time.perf_counter()
    history = train.fit(model, (x, y), epochs=args.epochs, lr=args.lr, weight_decay=5e-4,
                        augment=2, val=test, seed=args.seed, progress=not args.quiet)
    train.print_history(history)
    acc, loss = train.evaluate(model, test)
    print(f"\n{args.model}: test accuracy {acc:.2%} (loss {loss:.3f}) on {len(test[1])} held-out "
          f"digits, trained in {time.perf_counter() - start:.1f} s")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="minprune", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("demo", help="train a baseline on the embedded MNIST digits")
    p.add_argument("--model", default="lenet5", choices=sorted(models.MODELS))
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--lr", type=float, default=0.05)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=demo)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
