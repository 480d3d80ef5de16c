"""The `minprune` command (also `python -m minprune`).

    minprune demo          the main job: the five strategies swept on LeNet-5, in minutes
    minprune train         train one baseline, print its per-epoch table, save it in --out
    minprune sweep         ShrinkBench-style: strategies × sparsities × seeds, pruned + fine-tuned
    minprune schedules     one-shot vs iterative vs gradual at the same sparsities
    minprune at-init       pruning before training (SNIP, GraSP, SynFlow, random) vs after
    minprune distribution  the note's section 4: weight histograms, fine-tuned vs from scratch
    minprune lottery       winning tickets vs random re-initialisation across sparsities
    minprune sensitivity   per-layer sensitivity scan
    minprune ssl           learned structured sparsity (group Lasso, slimming) vs pruning after
    minprune course        the classroom kit: student edition and autograder

Every experiment takes --model, --dataset, --seeds, --epochs, --out, --jobs N (processes on this
machine), --cluster ADDRESS (a Dask scheduler; `pip install 'minprune[cluster]'`), --quiet and
--config FILE (a TOML or JSON table whose keys are the command's option names, e.g.
`sparsities = [0.5, 0.9]`; flags on the command line win). Every option is checked before any
work starts (--dry-run: only that, and the jobs it would run are listed). Each writes
`<out>/results.csv` (one row per job, with the run's configuration: an interrupted run resumes
where it stopped, a run of another configuration is refused), PNG figures, and prints a table.
"""
from __future__ import annotations

import argparse
import inspect
import json
import sys
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path

from . import checks, models, nn, performance, runner, train
from . import experiments as E
from .course import cli as course_cli
from .progress import watched


def _list(convert, what):
    """An argparse type for comma-separated values: "0.5,0.9" -> [0.5, 0.9]."""
    def parse(text):
        items = [t.strip() for t in str(text).split(",") if t.strip()]
        try:
            return [convert(t) for t in items]
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected comma-separated {what}, got {text!r}") from None
    parse.__name__ = what
    return parse


FLOATS, INTS, NAMES = _list(float, "numbers"), _list(int, "integers"), _list(str, "names")


@dataclass(frozen=True)
class Command:
    run: callable       # the experiment function; its keyword defaults are the options' defaults
    help: str
    options: dict       # option name -> (argparse type, help)
    columns: tuple      # printed after the run
    defaults: dict = None  # defaults that differ from the function's (demo)


COMMON = {
    "model": (str, f"one of {', '.join(models.MODELS)}"),
    "dataset": (str, "mnist5k (embedded), mnist or fashion (downloaded and cached)"),
    "seeds": (INTS, "comma-separated seeds, e.g. 0,1,2"),
    "epochs": (int, "baseline training epochs"),
    "out": (str, "output folder for results.csv and figures"),
    "jobs": (int, "jobs at once, each in its own process with one BLAS thread (same results)"),
    "cluster": (str, "address of a Dask scheduler (tcp://host:8786) whose workers run the jobs; "
                "this machine alone writes results.csv"),
}
SWEEP_COLUMNS = ("strategy", "sparsity", "seed", "accuracy_pruned", "accuracy", "compression",
                 "speedup")
COMMANDS = {
    "demo": Command(E.sweep, "the main job: the note's five strategies swept on LeNet-5, "
                    "fine-tuned, two seeds (a few minutes)", {}, SWEEP_COLUMNS,
                    defaults=dict(model="lenet5", seeds=(0, 1), out="results/demo")),
    "sweep": Command(E.sweep, "strategies × sparsities × seeds, pruned and fine-tuned "
                     "(ShrinkBench-style)", {
                         "strategies": (NAMES, f"comma-separated: {', '.join(E.STRATEGIES)} or "
                                        "criterion/scope[/granularity]"),
                         "sparsities": (FLOATS, "fractions of prunable weights removed, in [0, 1)"),
                         "compressions": (FLOATS, "compression ratios ≥ 1 instead of sparsities "
                                          "(sparsity = 1 - 1/ratio over prunable weights)"),
                         "finetune_epochs": (int, "fine-tuning epochs after pruning (0 = none)"),
                         "exclude": (NAMES, "layer names to leave dense")}, SWEEP_COLUMNS),
    "schedules": Command(E.compare_schedules, "one-shot vs iterative vs gradual", {
        "sparsities": (FLOATS, "target sparsities"),
        "rounds": (int, "iterative rounds"),
        "finetune_epochs": (int, "fine-tuning epochs per round")},
        ("schedule", "sparsity", "seed", "accuracy", "measured_sparsity", "compression")),
    "at-init": Command(E.compare_at_init, "pruning at initialisation vs after training", {
        "sparsities": (FLOATS, "target sparsities"),
        "criteria": (NAMES, "criteria used at initialisation"),
        "finetune_epochs": (int, "fine-tuning epochs for the after-training row")},
        ("method", "sparsity", "seed", "accuracy", "compression")),
    "distribution": Command(E.distribution, "weight histograms: fine-tuned vs trained from scratch", {
        "unstructured_sparsity": (float, "global magnitude sparsity"),
        "filter_sparsity": (float, "layerwise filter sparsity"),
        "finetune_epochs": (int, "fine-tuning epochs"),
        "threshold": (float, "|w| below this counts as near zero")},
        ("case", "seed", "accuracy", "measured_sparsity", "near_zero")),
    "lottery": Command(E.lottery_experiment, "winning tickets vs random re-initialisation", {
        "sparsities": (FLOATS, "ticket sparsities"),
        "keep_per_round": (float, "fraction of survivors kept per pruning round"),
        "rewind_to": (int, "rewind to this training step (0 = initialisation)")},
        ("kind", "sparsity", "seed", "rounds", "accuracy")),
    "sensitivity": Command(E.sensitivity, "per-layer sensitivity scan", {
        "sparsities": (FLOATS, "sparsities per layer"),
        "criterion": (str, "criterion"),
        "granularity": (str, "granularity")},
        ("layer", "sparsity", "seed", "accuracy", "baseline")),
    "ssl": Command(E.ssl, "learned structured sparsity (group Lasso / slimming) vs pruning after "
                   "training at the same groups", {
                       "granularity": (str, f"groups penalised: {', '.join(E.SSL_PENALTIES)}"),
                       "strengths": (FLOATS, "penalty strengths λ ≥ 0 (0 = the baseline)"),
                       "finetune_epochs": (int, "fine-tuning epochs after pruning (0 = none)"),
                       "tol": (float, "a group whose L2 norm is ≤ this counts as zero")},
                   ("method", "strength", "seed", "share_zeroed", "accuracy_pruned", "accuracy",
                    "compression", "speedup")),
}
TRAIN = {"model": COMMON["model"], "dataset": COMMON["dataset"],
         "seeds": (INTS, "the seed (one)"), "epochs": COMMON["epochs"],
         "lr": (float, "learning rate"), "out": (str, "folder the trained model is saved in")}
TRAIN_DEFAULTS = dict(model="lenet5", dataset="mnist5k", seeds=(0,), epochs=20,
                      lr=E.BASELINE_TRAINING["lr"], out="results/train")


def _defaults(command: str) -> dict:
    if command == "train":
        return TRAIN_DEFAULTS
    c = COMMANDS[command]
    params = inspect.signature(c.run).parameters
    return {**{k: p.default for k, p in params.items()}, **(c.defaults or {})}


def _options(command: str) -> dict:
    return TRAIN if command == "train" else {**COMMON, **COMMANDS[command].options}


def _shown(value) -> str:
    return ",".join(map(str, value)) if isinstance(value, (list, tuple)) else str(value)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="minprune", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in ("demo", "train", *[c for c in COMMANDS if c != "demo"]):
        help_ = (COMMANDS[command].help if command in COMMANDS else
                 "train one dense baseline, print its per-epoch table and save it in --out")
        # SUPPRESS: only the options given appear in the result, so a config file can fill in
        # the rest and the experiment function's own defaults apply last
        p = sub.add_parser(command, help=help_, description=help_,
                           argument_default=argparse.SUPPRESS)
        p.add_argument("--config", help="TOML or JSON table of options (keys = option names)")
        defaults = _defaults(command)
        for name, (type_, ohelp) in _options(command).items():
            default = defaults.get(name)
            shown = "" if default in (None, ()) else f" (default: {_shown(default)})"
            p.add_argument("--" + name.replace("_", "-"), dest=name, type=type_, help=ohelp + shown)
        p.add_argument("--quiet", action="store_true", help="no progress bars or progress lines")
        p.add_argument("--dry-run", action="store_true",
                       help="check every option, the output folder and its results.csv, list "
                       "what would run, and stop")
    course_cli.add_parser(sub)
    return parser


def read_config(path, command: str) -> dict:
    """The options in a TOML or JSON config file, checked: a table whose keys are this command's
    option names (with - or _), each given once; list options take a list or a comma string."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"--config: no such file {str(path)!r}")
    if path.suffix not in (".toml", ".json"):
        raise ValueError(f"--config: expected a .toml or .json file, got {str(path)!r}")
    try:
        text = path.read_text(encoding="utf-8")
        config = tomllib.loads(text) if path.suffix == ".toml" else json.loads(text)
    except (UnicodeDecodeError, tomllib.TOMLDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"--config: cannot parse {str(path)!r}: {e}") from None
    if not isinstance(config, dict):
        raise ValueError(f"--config: {str(path)!r} must hold a table of options "
                         f"(option = value), not a {type(config).__name__}")
    options = _options(command)
    valid = sorted([*options, "quiet"])
    out = {}
    for key, value in config.items():
        name = key.replace("-", "_")
        if name not in valid:
            raise ValueError(f"--config: {key!r} is not an option of `minprune {command}` "
                             f"(valid keys: {', '.join(valid)})")
        if name in out:
            raise ValueError(f"--config: {key!r} is given twice (as {name!r} and "
                             f"{name.replace('_', '-')!r})")
        type_ = options.get(name, (None,))[0]
        if type_ in (FLOATS, INTS, NAMES) and isinstance(value, str):
            try:
                value = type_(value)
            except argparse.ArgumentTypeError as e:
                raise ValueError(f"--config: {key}: {e}") from None
        out[name] = value
    if "sparsities" in out and "compressions" in out:
        raise ValueError("--config: 'sparsities' and 'compressions' both choose the sparsities; "
                         "give one")
    return out


def _sparsities_from(compressions) -> list[float]:
    ratios = checks.each(compressions, "compressions", checks.number, lo=1)
    return [round(1 - 1 / c, 6) for c in ratios]


def options_for(command: str, given: dict, config_path=None) -> dict:
    """The keyword arguments of this run: the config file's values, then the command line's
    (which win), then the command's defaults for the rest (demo's own)."""
    config = read_config(config_path, command) if config_path else {}
    if {"sparsities", "compressions"} & set(given):  # the command line chose: drop the config's
        config.pop("sparsities", None), config.pop("compressions", None)
    if "sparsities" in given and "compressions" in given:
        raise ValueError("--compressions: give either --sparsities or --compressions, not both")
    options = {**config, **given}
    if "compressions" in options:
        options["sparsities"] = _sparsities_from(options.pop("compressions"))
    options["progress"] = not checks.boolean(options.pop("quiet", False), "quiet")
    if command in COMMANDS and COMMANDS[command].defaults:
        options = {**COMMANDS[command].defaults, **options}
    return options


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    performance.tune()  # this command owns its process: reuse freed memory (performance.py)
    if args.command == "course":
        try:
            return course_cli.run(args)
        except ValueError as err:
            parser.error(str(err))
    given = {k: v for k, v in vars(args).items() if k not in ("command", "config", "dry_run")}
    try:
        options = options_for(args.command, given, getattr(args, "config", None))
        run = _train if args.command == "train" else COMMANDS[args.command].run
        todo = run(**options, dry_run=True)  # every argument checked before any work
    except (ValueError, TypeError, ImportError) as err:
        parser.exit(2, f"minprune {args.command}: error: {err}\n")
    if getattr(args, "dry_run", False):
        if args.command != "train":
            print(f"{len(todo)} jobs to run:")
            for point in todo:
                print("  " + ", ".join(f"{k}={v}" for k, v in point.items()))
        print("every option checked; nothing run (--dry-run)")
        return 0
    if args.command == "train":
        return run(**options)
    start = time.perf_counter()
    try:
        rows = run(**options)
    except runner.Refused as err:
        parser.exit(2, f"minprune {args.command}: error: {err}\n")
    _report(args.command, rows, Path(options.get("out", _defaults(args.command)["out"])),
            time.perf_counter() - start)
    return 0


def _report(command, rows, out: Path, seconds: float):
    E.print_table(rows, COMMANDS[command].columns)
    if command in ("sweep", "demo"):
        print("\nmean accuracy over seeds (min–max):")
        for s in E.summarize(rows):
            print(f"  {s['strategy']:>22}  sparsity {s['sparsity']:<5}  {s['mean']:.4f} "
                  f"({s['min']:.4f}–{s['max']:.4f}, {s['n']} seeds)")
    if command == "sensitivity":
        print("\nsuggested per-layer sparsities (≤1 point drop):",
              E.prune.sparsities_from_scan(E.scan_of(rows)))
    print(f"\n{len(rows)} rows in {out / 'results.csv'}; figures in {out}/ ({seconds:.0f} s)")


def _train(model="lenet5", dataset="mnist5k", seeds=(0,), epochs=20, lr=E.BASELINE_TRAINING["lr"],
           out="results/train", progress=True, dry_run=False) -> int:
    """`minprune train`: one dense model, its per-epoch table, saved as <out>/<model>-s<seed>.npz."""
    checks.one_of(model, "model", tuple(models.MODELS))
    seeds = checks.each(seeds, "seeds", checks.integer, minimum=0)
    if len(seeds) != 1:
        raise ValueError(f"seeds: `minprune train` trains one model, so give one seed, got {seeds}")
    epochs = checks.integer(epochs, "epochs", minimum=1)
    lr = checks.number(lr, "lr", lo=0, lo_open=True)
    out, _, _ = runner.check_execution(out, 1, None)
    checks.one_of(dataset, "dataset", E.DATASETS)
    if dry_run:
        return 0
    train_data, test = E.load_data(dataset)
    net = models.get_model(model, seed=seeds[0])
    start = time.perf_counter()
    history = train.fit(net, train_data, epochs, seed=seeds[0], val=test,
                        progress=progress and watched(),
                        **{**E.BASELINE_TRAINING, "lr": lr})
    train.print_history(history)
    acc, loss = train.evaluate(net, test)
    path = nn.save(net, out / f"{model}-s{seeds[0]}.npz")
    print(f"\n{model}: test accuracy {acc:.2%} (loss {loss:.3f}) on {len(test[1])} held-out "
          f"digits, trained in {time.perf_counter() - start:.1f} s; saved as {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
