"""The parts the training loop calls, each alone: the layering rule (training/ imports no harness), the
default warm-up, the checkpoint saver with every RNG, the metrics file, and the Trainer's hooks and
passed-in evaluator in a real (tiny) run."""
from __future__ import annotations

import ast
import os
import random

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from lorat_tracker import demo as sd
from run_cli import REPO

TRAINING = REPO / "lorat_tracker" / "training"


# ------------------------------------------------------------------------------------ layering

def harness_imports(source: str, module: str):
    """The imports of ``lorat_tracker.integrations`` (absolute, relative or by name string) in
    ``source``, the text of the module named ``module`` (e.g. ``lorat_tracker.training.trainer``)."""
    package = module.rsplit(".", 1)[0].split(".")
    found = []
    for node in ast.walk(ast.parse(source)):
        targets = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = package[:len(package) - node.level + 1] if node.level else []
            stem = ".".join(base + ([node.module] if node.module else []))
            targets = [stem] + [f"{stem}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            targets = [node.value]  # importlib.import_module("lorat_tracker.integrations...")
        for t in targets:
            if t == "lorat_tracker.integrations" or t.startswith("lorat_tracker.integrations."):
                found.append((getattr(node, "lineno", 0), t))
    return found


def test_the_checker_sees_every_form_of_import():
    module = "lorat_tracker.training.trainer"
    for source in ("from ..integrations.got10k.training import evaluate_sequences",
                   "def f():\n    from .. import integrations",
                   "from ..integrations import got10k",
                   "import lorat_tracker.integrations.got10k",
                   "from lorat_tracker.integrations.got10k import training",
                   "from lorat_tracker import integrations",
                   "import importlib\nimportlib.import_module('lorat_tracker.integrations.got10k.training')"):
        assert harness_imports(source, module), source
    for source in ("from .. import distributed", "from ..datasets import read_source", "from .model import x",
                   "import integrations_helper", "from . import validation"):
        assert not harness_imports(source, module), source


def test_training_imports_no_harness():
    """The training core is a layer below the harnesses: the CLI passes the evaluator in."""
    modules = sorted(TRAINING.rglob("*.py"))
    assert len(modules) >= 10
    offenders = {}
    for path in modules:
        parts = path.relative_to(REPO).with_suffix("").parts
        name = ".".join(parts if parts[-1] != "__init__" else parts[:-1] + ("__init__",))
        found = harness_imports(path.read_text(), name)
        if found:
            offenders[str(path.relative_to(REPO))] = found
    assert not offenders, f"lorat_tracker/training/ imports a harness: {offenders}"


# ------------------------------------------------------------------------------------ warm-up

def test_the_default_warmup_fits_short_runs_and_an_explicit_one_is_checked():
    from lorat_tracker.training.config import TrainConfig, TrainingConfigError

    def cfg(**kw):
        return TrainConfig(variant="tiny-mlp-224", out="o", data=[], pairs_per_epoch=8, batch_size=8, **kw)

    assert cfg().warmup_epochs == 2 and cfg().warmup_note() is None  # the official 170-epoch recipe
    assert cfg(epochs=3).warmup_epochs == 2 and not cfg(epochs=3).warmup_shortened
    assert cfg(epochs=2).warmup_epochs == 1 and cfg(epochs=1).warmup_epochs == 0.5
    note = cfg(epochs=1).warmup_note()
    assert note == ("note: warm-up shortened to 0.5 epochs (the default 2 does not fit --epochs 1); "
                    "pass --warmup-epochs to choose")
    cfg(epochs=1).check()
    assert cfg(epochs=1).identity()["warmup_epochs"] == 0.5  # run.json holds what is trained with
    explicit = cfg(epochs=1, warmup_epochs=2)
    assert explicit.warmup_epochs == 2 and explicit.warmup_note() is None
    with pytest.raises(TrainingConfigError, match=r"--warmup-epochs must be in \[0, --epochs\), got 2"):
        explicit.check()


# ------------------------------------------------------------------------------------ checkpoints

def _draws():
    return random.random(), float(np.random.rand()), float(np.random.randn()), torch.rand(3).tolist()


def test_rng_state_survives_a_weights_only_round_trip(tmp_path):
    from lorat_tracker.training.checkpoint import rng_state, set_rng_state

    random.seed(1)
    np.random.seed(2)
    torch.manual_seed(3)
    np.random.randn()  # a cached Gaussian in numpy's state
    torch.save(rng_state(), tmp_path / "rng.pth")
    expected = _draws()
    _draws()
    set_rng_state(torch.load(tmp_path / "rng.pth", weights_only=True))
    assert _draws() == expected


class _Counter:
    def __init__(self):
        self.n = 0

    def state_dict(self):
        return {"n": self.n}

    def load_state_dict(self, state):
        self.n = state["n"]


def _toy():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.Linear(3, 2))
    model[0].weight.requires_grad_(False)  # frozen tensors are not the checkpoint's business
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=0.1)
    return model, opt


def _step(model, opt):
    opt.zero_grad()
    model(torch.randn(5, 4)).square().sum().backward()
    opt.step()


def test_checkpoint_saver_resumes_exactly(tmp_path):
    from lorat_tracker.training.checkpoint import CheckpointSaver, read_checkpoint
    from lorat_tracker.training.run_folder import RunFolderError

    model, opt = _toy()
    counter = _Counter()
    saver = CheckpointSaver(str(tmp_path), model, {"optimizer": opt, "counter": counter}, identity={"lr": 0.1},
                            minutes=0)
    _step(model, opt)
    counter.n = 7
    saver.save(1, 3, {"rows": [{"epoch": 1}]})
    _step(model, opt)  # what the saved run does next: the resumed one must do the same
    after = [p.clone() for p in model.parameters()], torch.rand(2)
    ckpt = read_checkpoint(str(tmp_path / "checkpoint.pth"))
    assert list(ckpt)[:5] == ["format", "identity", "epoch", "step", "model"]
    assert (ckpt["epoch"], ckpt["step"], ckpt["rows"], ckpt["counter"]) == (1, 3, [{"epoch": 1}], {"n": 7})
    assert set(ckpt["model"]) == {"0.bias", "1.weight", "1.bias"}
    assert not saver.due()  # minutes=0: only at epoch ends and on Ctrl-C

    # A fresh model, optimiser and part restored from the file continue exactly as the saved ones did.
    model2, opt2 = _toy()
    counter2 = _Counter()
    saver2 = CheckpointSaver(str(tmp_path), model2, {"optimizer": opt2, "counter": counter2}, identity={})
    with torch.no_grad():
        model2[1].weight.add_(1.0)
    saver2.restore(ckpt)
    assert counter2.n == 7
    _step(model2, opt2)
    for a, b in zip(model2.parameters(), after[0]):
        assert torch.equal(a, b)
    assert torch.equal(torch.rand(2), after[1])  # the RNG too
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint.pth"]  # no temporary file left

    (tmp_path / "checkpoint.pth").write_bytes((tmp_path / "checkpoint.pth").read_bytes()[:500])
    with pytest.raises(RunFolderError, match="checkpoint.pth cannot be read"):
        read_checkpoint(str(tmp_path / "checkpoint.pth"))
    torch.save({"format": 99}, tmp_path / "other.pth")
    with pytest.raises(RunFolderError, match="another version of lorat train"):
        read_checkpoint(str(tmp_path / "other.pth"))
    with pytest.raises(RunFolderError, match="does not hold this model's trainable tensors"):
        CheckpointSaver(str(tmp_path), torch.nn.Linear(2, 2), {}, identity={}).restore(ckpt)


def test_snapshots_keep_the_last_ones_in_the_released_format(tmp_path, tiny_model):
    from lorat_tracker.training.checkpoint import CheckpointSaver
    from lorat_tracker.training.model import build_training_model

    model = build_training_model(tiny_model.variant, backbone=tiny_model.backbone, weights=tiny_model.weights)
    saver = CheckpointSaver(str(tmp_path), model, {}, identity={}, keep=2)
    for number in (1, 2, 3):
        saver.save_snapshot(number)
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["epoch-0002.bin", "epoch-0003.bin"]
    released = load_file(str(tiny_model.weights))
    snapshot = load_file(str(tmp_path / "checkpoints" / "epoch-0003.bin"))
    assert set(snapshot) == set(released)
    for k in released:  # not trained: the weights it started from
        assert torch.equal(snapshot[k], released[k]), k
    CheckpointSaver(str(tmp_path), model, {}, identity={}, main=False).save_snapshot(4)  # rank > 0 writes nothing
    assert not (tmp_path / "checkpoints" / "epoch-0004.bin").exists()


# ------------------------------------------------------------------------------------ outputs

def test_metrics_csv_format(tmp_path):
    from lorat_tracker.training.callbacks import write_metrics_csv

    rows = [{"epoch": 0, "step": 0, "val_loss": 11.123456789},
            {"epoch": 1, "step": 5, "lr": 0.000123456789, "loss": 1.5, "loss_bce": float("nan"), "loss_iou": 0.25,
             "grad_norm": 3.0, "pairs_per_s": 1234567.0, "seconds": 2.0, "val_loss": 0.5, "val_AO": 0.3333333}]
    write_metrics_csv(rows, str(tmp_path / "metrics.csv"))
    assert (tmp_path / "metrics.csv").read_bytes() == (
        b"epoch,step,lr,loss,loss_bce,loss_iou,grad_norm,pairs_per_s,seconds,val_loss,val_AO,val_SR50,val_SR75\r\n"
        b"0,0,,,,,,,,11.1235,,,\r\n"
        b"1,5,0.000123457,1.5,nan,0.25,3,1.23457e+06,2,0.5,0.333333,,\r\n")


class Recorder:
    """A callback that notes each hook with what it saw."""

    def __init__(self):
        self.calls = []

    def __getattr__(self, hook):
        if not hook.startswith("on_"):
            raise AttributeError(hook)

        def record(trainer, *args):
            if hook == "on_step_end":
                args = (args[0].epoch, args[0].step, args[0].global_step)
            elif hook in ("on_evaluate", "on_epoch_end"):
                args = (args[0]["epoch"], os.path.isfile(os.path.join(trainer.cfg.out, "metrics.csv")),
                        os.path.isfile(os.path.join(trainer.cfg.out, "checkpoint.pth")))
            self.calls.append((hook, *args))
        return record


class FixedEvaluator:
    """An evaluator with a hand-made table; notes what it was given."""

    def __init__(self):
        self.seen = []

    def __call__(self, sequences, weights, device):
        self.seen.append(([s.name for s in sequences], sorted(load_file(weights)), str(device)))
        return {"AO": 0.625, "SR0.50": 0.75, "SR0.75": 0.125, "sequences": len(sequences), "frames": 99}


def test_trainer_calls_the_hooks_and_the_evaluator_it_is_given(tiny_model, tmp_path):
    from lorat_tracker.training.config import TrainConfig
    from lorat_tracker.training.trainer import Trainer
    from lorat_tracker.training.validation import EvaluatorUnavailable

    sd.write_folder(tmp_path / "videos", count=3, frames=12, seed=400)
    sd.write_folder(tmp_path / "val", count=2, frames=8, seed=401)

    def config(out, **kw):
        return TrainConfig(variant=tiny_model.variant, out=str(tmp_path / out), data=[f"folder={tmp_path / 'videos'}"],
                           val=[f"folder={tmp_path / 'val'}"], backbone=str(tiny_model.backbone),
                           weights=str(tiny_model.weights), epochs=2, pairs_per_epoch=16, batch_size=8,
                           val_pairs=8, eval_every=2, workers=0, device="cpu", progress=False, **kw)

    recorder, evaluator, lines = Recorder(), FixedEvaluator(), []
    assert Trainer(config("run"), evaluator=evaluator, callbacks=[recorder], log=lines.append).run() == 0
    assert recorder.calls == [
        ("on_train_begin",), ("on_evaluate", 0, True, False),  # after metrics.csv (the default callbacks)
        ("on_epoch_begin", 0, 0), ("on_step_end", 0, 0, 0), ("on_step_end", 0, 1, 1), ("on_epoch_steps_end", 0),
        ("on_epoch_end", 1, True, True),
        ("on_epoch_begin", 1, 0), ("on_step_end", 1, 0, 2), ("on_step_end", 1, 1, 3), ("on_epoch_steps_end", 1),
        ("on_epoch_end", 2, True, True), ("on_train_end",)]
    # Evaluated at the start and at epoch 2 (--eval-every 2), on the weights of the moment in the released format.
    released = sorted(load_file(str(tiny_model.weights)))
    assert evaluator.seen == [(["video_0", "video_1"], released, "cpu")] * 2
    assert "tracking evaluation of the starting weights (2 sequences, 99 frames)" in lines
    assert lines[lines.index("tracking evaluation after epoch 2 (2 sequences, 99 frames)") + 2] == \
        "  0.625    0.750    0.125"
    csv_rows = (tmp_path / "run" / "metrics.csv").read_text().splitlines()
    assert [r.split(",")[-3:] for r in csv_rows[1:]] == [["0.625", "0.75", "0.125"], ["", "", ""],
                                                         ["0.625", "0.75", "0.125"]]

    # Without the toolkit, the CLI passes EvaluatorUnavailable: the note at each evaluation, training goes on.
    lines = []
    note = "note: tracking evaluation skipped (got10k is not installed): pip install ..."
    assert Trainer(config("run2"), evaluator=EvaluatorUnavailable(note), log=lines.append).run() == 0
    assert lines.count(note) == 2 and not any(line.startswith("tracking evaluation") for line in lines)
    assert (tmp_path / "run2" / "metrics.csv").read_text().splitlines()[1].endswith(",,,")


def test_the_cli_passes_the_got10k_evaluator_or_a_note(monkeypatch):
    import sys

    from lorat_tracker.cli.train import tracking_evaluator
    from lorat_tracker.training.config import TrainConfig
    from lorat_tracker.training.validation import EvaluatorUnavailable

    pytest.importorskip("got10k")
    cfg = TrainConfig(variant="tiny-mlp-224", out="o", data=[], val=["folder=/v"], backbone="/b.pth")
    assert tracking_evaluator(TrainConfig(variant="tiny-mlp-224", out="o", data=[])) is None  # no --val
    evaluator = tracking_evaluator(cfg)
    assert type(evaluator).__module__ == "lorat_tracker.integrations.got10k.training"
    assert (evaluator.variant, evaluator.backbone) == ("tiny-mlp-224", "/b.pth")
    # Without the toolkit: a note instead, so training goes on.
    monkeypatch.setitem(sys.modules, "got10k", None)
    for name in [n for n in sys.modules if n.startswith("lorat_tracker.integrations.got10k")]:
        monkeypatch.delitem(sys.modules, name)
    assert tracking_evaluator(cfg) == EvaluatorUnavailable(
        'note: tracking evaluation skipped (got10k is not installed): pip install "lorat-tracker[got10k]"')


def test_the_trainer_takes_its_parts_and_builds_the_missing_ones_alike(tiny_model, tmp_path):
    """Parts built outside by the public builders train exactly as the default assembly (same process,
    same kernels: bit-identical), the config's data and weights are then not read, and a part of
    another kind (optimizer, loss) is the one used."""
    from lorat_tracker.config import load_config
    from lorat_tracker.datasets import parse_source, read_source
    from lorat_tracker.training import LoRATCriterion, build_optimizer, build_scheduler, build_training_model
    from lorat_tracker.training.config import TrainConfig, TrainingConfigError
    from lorat_tracker.training.data import PairDataset
    from lorat_tracker.training.trainer import Trainer

    sd.write_folder(tmp_path / "videos", count=3, frames=12, seed=402)
    source = f"folder={tmp_path / 'videos'}"

    def config(out, **kw):
        kw = {"data": [source], "backbone": str(tiny_model.backbone), "weights": str(tiny_model.weights), **kw}
        return TrainConfig(variant=tiny_model.variant, out=str(tmp_path / out), epochs=1, pairs_per_epoch=16,
                           batch_size=8, workers=0, device="cpu", progress=False, **kw)

    def parts(cfg, pairs=16):
        variant = load_config(cfg.variant)
        model = build_training_model(variant, backbone=str(tiny_model.backbone), weights=str(tiny_model.weights),
                                     rank=cfg.lora_rank, alpha=cfg.lora_alpha, rslora=cfg.rslora, seed=cfg.seed)
        spec = parse_source(source)
        data = PairDataset([read_source(spec)], [spec.weight], variant, pairs_per_epoch=pairs, seed=cfg.seed,
                           max_gap=cfg.max_gap)
        return model, data

    torch.manual_seed(0)
    assert Trainer(config("default"), log=lambda _: None).run() == 0
    default = load_file(str(tmp_path / "default" / "lorat.bin"))

    # Every part given (none of --data, --backbone, --weights is read: they are absent).
    cfg = config("given", data=[], backbone=None, weights=None)
    model, data = parts(cfg)
    optimizer = build_optimizer(model, lr=cfg.lr, weight_decay=cfg.weight_decay)
    scheduler = build_scheduler(optimizer, epochs=cfg.epochs, iters_per_epoch=cfg.steps_per_epoch,
                                warmup_epochs=cfg.warmup_epochs, lr=cfg.lr, min_lr=cfg.min_lr, warmup_lr=cfg.warmup_lr)
    lines = []
    trainer = Trainer(cfg, log=lines.append, model=model, train_data=data, criterion=LoRATCriterion(),
                      optimizer=optimizer, scheduler=scheduler)
    assert trainer.run() == 0
    assert trainer.model is model and trainer.optimizer is optimizer and trainer.train_data is data
    given = load_file(str(tmp_path / "given" / "lorat.bin"))
    assert sorted(given) == sorted(default)
    assert all(torch.equal(given[k], default[k]) for k in default)
    assert any("3 training sequences" in line for line in lines)  # a PairDataset's sequences are known

    # Another optimizer (driven by the default schedule) and loss: those are the ones used.
    class CountingLoss(LoRATCriterion):
        calls = 0

        def forward(self, *args, **kwargs):
            CountingLoss.calls += 1
            return super().forward(*args, **kwargs)

    cfg = config("sgd")
    model, _ = parts(cfg)
    sgd = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=cfg.lr)
    assert Trainer(cfg, log=lambda _: None, model=model, optimizer=sgd, criterion=CountingLoss()).run() == 0
    assert CountingLoss.calls == cfg.steps_per_epoch
    state = torch.load(tmp_path / "sgd" / "checkpoint.pth", weights_only=False)["optimizer"]
    assert "nesterov" in state["param_groups"][0]  # SGD's, not AdamW's
    sgd_weights = load_file(str(tmp_path / "sgd" / "lorat.bin"))
    assert not all(torch.equal(sgd_weights[k], default[k]) for k in default)

    # Parts that cannot work are refused before anything is written.
    with pytest.raises(TrainingConfigError, match="pass optimizer= too"):
        Trainer(config("bad1"), scheduler=scheduler)
    with pytest.raises(TrainingConfigError, match=r"model given is variant \(unknown\).*tiny-mlp-224"):
        Trainer(config("bad2"), model=torch.nn.Linear(2, 2)).run()
    with pytest.raises(TrainingConfigError, match="given has 8 pairs, an epoch takes 16"):
        Trainer(config("bad3"), train_data=parts(cfg, pairs=8)[1]).run()
    assert not any((tmp_path / f"bad{i}").exists() for i in (1, 2, 3))
