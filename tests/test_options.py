"""Each option declared once: the dataclass field is the flag (lorat_tracker/options.py, spec.py)."""
from __future__ import annotations

import argparse
import ast
import collections
import dataclasses
import importlib.util
import sys

import pytest

from run_cli import REPO

from lorat_tracker.cli import build_parser
from lorat_tracker.options import add_arguments, cli_option, cli_options, from_args
from lorat_tracker.spec import TrackerSpec, options

BENCHMARKS = ("speed", "backends", "batched", "sam_speed", "train_speed")

# Flags written as literals in more than one file, each meaning something else in each command.
HOMONYMS = {
    "--name": "eval: the results folder; vot register: the trackers.ini identifier; the VOT server: its handshake name",
    "--multiobject": "vot register: auto/on/off for the workspace; the VOT server: what register wrote into trackers.ini",
    "--sequences": "eval: a subset of names; vot workspace: a folder of sequences; batched.py: how many to make",
    "--frames": "demo-data: frames per sequence; speed.py: timed rounds; batched.py: frames of the longest sequence",
}


def subparsers(parser):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield name, sub
                for sub_name, deeper in subparsers(sub):
                    yield f"{name} {sub_name}", deeper


def flags_of(parser):
    return {flag: action for action in parser._actions for flag in action.option_strings if flag.startswith("--")}


def literal_flags():
    """flag -> the files that write it as an ``add_argument("--flag", ...)`` literal."""
    found = collections.defaultdict(set)
    for folder in ("lorat_tracker", "integrations", "benchmarks"):
        for path in sorted((REPO / folder).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "add_argument":
                    for arg in node.args:
                        if isinstance(arg, ast.Constant) and str(arg.value).startswith("--"):
                            found[arg.value].add(str(path.relative_to(REPO)))
    return found


def benchmark_parser(name):
    """The parser benchmarks/NAME.py builds, caught as its main() parses (its heavy imports are real)."""
    sys.path.insert(0, str(REPO / "benchmarks"))
    try:
        spec = importlib.util.spec_from_file_location(f"bench_{name}", REPO / "benchmarks" / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(REPO / "benchmarks"))
    caught = {}

    class Caught(Exception):
        pass

    def parse_args(self, args=None, namespace=None):
        caught["parser"] = self
        raise Caught

    original = argparse.ArgumentParser.parse_args
    argparse.ArgumentParser.parse_args = parse_args
    try:
        with pytest.raises(Caught):
            module.main([])
    finally:
        argparse.ArgumentParser.parse_args = original
    return caught["parser"]


def test_each_flag_is_declared_in_one_place():
    """Every flag of every subcommand and benchmark: a tracker option comes from TrackerSpec (or a field
    `like=` it) and nowhere else; any other literal flag lives in one file, or is a listed homonym."""
    spec_flags = {o.flag for o in options(TrackerSpec)}
    literals = literal_flags()
    assert not spec_flags & set(literals), f"tracker options declared again: {sorted(spec_flags & set(literals))}"
    repeated = {flag: files for flag, files in literals.items() if len(files) > 1}
    assert set(repeated) <= set(HOMONYMS), {f: sorted(repeated[f]) for f in set(repeated) - set(HOMONYMS)}
    assert set(HOMONYMS) <= set(repeated), "homonyms no longer repeated: drop them from the list"
    commands = dict(subparsers(build_parser()))
    commands.update({f"benchmarks/{b}.py": benchmark_parser(b) for b in BENCHMARKS})
    declared = set(literals) | spec_flags
    from lorat_tracker.cli.bench import BenchCommandOptions

    for cls in (_train_config(), _selftest_options(), _bench_options(), BenchCommandOptions):
        declared |= {o.flag for o in cli_options(cls)}
    for command, parser in commands.items():
        for flag in set(flags_of(parser)) - {"--help", "--version"}:
            negated = "--" + flag[len("--no-"):] if flag.startswith("--no-") else None  # --rslora / --no-rslora
            assert flag in declared or negated in declared, f"{command} {flag}: not found in any declaration"
    assert {"--epochs", "--workers", "--device"} <= set(flags_of(commands["train"]))
    assert {"--warmup", "--json", "--device"} <= set(flags_of(commands["benchmarks/speed.py"]))


def _train_config():
    from lorat_tracker.training.config import TrainConfig

    return TrainConfig


def _selftest_options():
    from lorat_tracker.cli.selftest import SelftestOptions

    return SelftestOptions


def _bench_options():
    sys.path.insert(0, str(REPO / "benchmarks"))
    try:
        import common
    finally:
        sys.path.remove(str(REPO / "benchmarks"))
    return common.BenchOptions


@pytest.mark.parametrize("argv,cls", [
    (["train", "--variant", "B-224", "--data", "folder=x", "--out", "o"], _train_config),
    (["selftest"], _selftest_options)])
def test_every_command_line_default_is_the_dataclass_default(argv, cls):
    cls = cls()
    args = build_parser().parse_args(argv)
    checked = 0
    for f in dataclasses.fields(cls):
        if not f.init or f.name in ("variant", "data", "out"):  # computed state / given above
            continue
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        assert getattr(args, f.name) == default, f.name
        checked += 1
    assert checked == len(cli_options(cls)) - (3 if cls.__name__ == "TrainConfig" else 0)


def test_train_config_from_the_command_line_round_trips():
    from lorat_tracker.cli.train import TITLES
    from lorat_tracker.training.config import TrainConfig

    p = argparse.ArgumentParser()
    add_arguments(p, TrainConfig, titles=TITLES)
    args = p.parse_args(["--variant", "B-224", "--data", "folder=a", "--data", "lasot=b:2", "--out", "o",
                         "--epochs", "3", "--lr", "2e-5", "--no-rslora", "--no-progress", "--grad-checkpointing",
                         "--workers", "0", "--warmup-epochs", "1"])
    cfg = from_args(TrainConfig, args)
    assert (cfg.data, cfg.epochs, cfg.lr, cfg.rslora, cfg.progress, cfg.grad_checkpointing, cfg.workers) == \
        (["folder=a", "lasot=b:2"], 3, 2e-5, False, False, True, 0)
    assert cfg.warmup_epochs == 1.0 and not cfg.warmup_shortened
    with pytest.raises(SystemExit):  # --variant is required: a field without a default
        p.parse_args(["--data", "folder=a", "--out", "o"])


def test_a_field_like_a_tracker_option_takes_its_spelling():
    @dataclasses.dataclass
    class Opts:
        device: str = cli_option("cpu", group="runtime", like="device")
        threads: int = cli_option(None, group="runtime", like="threads", help="mine")
        precision: str = cli_option("fp32", group="runtime", like="precision", choices=())

    by_name = {o.name: o for o in cli_options(Opts)}
    shared = {o.name: o for o in options(TrackerSpec)}
    assert by_name["device"].help == shared["device"].help and by_name["device"].metavar == shared["device"].metavar
    assert by_name["threads"].help == "mine" and by_name["threads"].type is int
    assert by_name["precision"].choices == ()  # a comma list: the spec's choices switched off
    p = argparse.ArgumentParser()
    add_arguments(p, Opts)
    assert p.parse_args(["--threads", "2", "--precision", "fp32,bf16"]).threads == 2
    with pytest.raises(TypeError, match="no options"):
        add_arguments(argparse.ArgumentParser(), Opts, names=["nope"])
