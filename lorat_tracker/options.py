"""Command-line options as dataclass fields: each option declared once, where its value lives.

``TrackerSpec`` (spec.py) does this for the options that define a tracker. Every other options
class of the project (``TrainConfig``, ``SelftestOptions``, the benchmarks') declares its fields with
``cli_option``; ``add_arguments`` turns them into argparse arguments and ``from_args`` back into the
dataclass, so a flag's default, help and type are written once::

    @dataclasses.dataclass
    class Options:
        epochs: int = cli_option(170, group="recipe", metavar="E", help="default 170")
        device: Optional[str] = cli_option(None, group="runtime", like="device")  # TrackerSpec's --device

    add_arguments(parser, Options, titles={"recipe": "recipe", "runtime": "runtime"})
    options = from_args(Options, parser.parse_args(), epochs=...)   # keyword overrides win

``like="name"`` takes the flag, metavar and (unless given) help of that ``TrackerSpec`` option, so a
runtime flag reads the same in every command. A field without a default is a required flag. A bool
field is a switch: ``--name`` for a False default, ``flag="--no-name"`` for a True one, and ``None``
makes it ``--name / --no-name``. Fields without ``cli_option`` are not options (computed state).
Imports nothing heavy: ``lorat train --help`` stays instant.
"""
from __future__ import annotations

import argparse
import dataclasses
from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional, Tuple

_KEY = "lorat_cli"


def cli_option(default: Any = dataclasses.MISSING, *, help: Optional[str] = None, group: str,
               metavar: Optional[str] = None, type: Optional[Callable[[str], Any]] = None,
               choices: Optional[Tuple] = None, flag: Optional[str] = None, repeat: bool = False,
               like: Optional[str] = None, default_factory: Any = dataclasses.MISSING, **field_kwargs):
    """A dataclass field that is also a command-line option (see the module docstring).

    ``repeat``: the flag may be given several times, collecting a list (argparse's ``append``);
    ``default_factory``: as for ``dataclasses.field`` (the command line shows the value it makes)."""
    meta = dict(help=help, group=group, metavar=metavar, type=type, choices=choices, flag=flag, repeat=repeat,
                like=like)
    return dataclasses.field(default=default, default_factory=default_factory,
                             metadata={**field_kwargs.pop("metadata", {}), _KEY: meta}, **field_kwargs)


@dataclasses.dataclass(frozen=True)
class CliOption:
    """One ``cli_option`` field, resolved (``like`` applied)."""
    name: str
    flag: str
    group: str
    help: str
    metavar: Optional[str]
    type: Optional[Callable[[str], Any]]
    choices: Optional[Tuple]
    repeat: bool
    required: bool
    field: dataclasses.Field

    def default(self) -> Any:
        f = self.field
        if f.default is not dataclasses.MISSING:
            return f.default
        if f.default_factory is not dataclasses.MISSING:
            return f.default_factory()
        return None


def cli_options(cls: type) -> List[CliOption]:
    """The ``cli_option`` fields of the dataclass ``cls``, in field order."""
    out = []
    for f in dataclasses.fields(cls):
        meta = f.metadata.get(_KEY)
        if meta is None:
            continue
        flag, metavar, help, kind, choices = meta["flag"], meta["metavar"], meta["help"], meta["type"], meta["choices"]
        if meta["like"] is not None:
            from .spec import option_named

            shared = option_named(meta["like"])
            flag, metavar, help = flag or shared.flag, metavar or shared.metavar, help or shared.help
            kind = shared.parse if kind is None else kind
            choices = shared.choices if choices is None else choices  # () : none, where the spec has some
        if help is None:
            raise TypeError(f"{cls.__name__}.{f.name}: a cli_option needs help (or like=)")
        required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        out.append(CliOption(f.name, flag or "--" + f.name.replace("_", "-"), meta["group"], help, metavar, kind,
                             choices, meta["repeat"], required, f))
    return out


def _scalar_type(f: dataclasses.Field):
    """int / float for fields annotated so (``from __future__`` annotations are strings)."""
    text = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type))
    for name, kind in (("int", int), ("float", float)):
        if text in (name, f"Optional[{name}]"):
            return kind
    return None


def _is_bool(f: dataclasses.Field) -> bool:
    text = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type))
    return text in ("bool", "Optional[bool]")


def add_arguments(parser: argparse.ArgumentParser, cls: type, titles: Optional[Mapping[str, str]] = None,
                  names: Optional[Iterable[str]] = None) -> None:
    """Add the ``cli_option`` fields of ``cls`` to ``parser``: ``titles`` gives an argument group per
    field group (in the order given); ``names``: only these fields (a script taking some of a shared
    options class)."""
    titles = dict(titles or {})
    wanted = None if names is None else set(names)
    known = {o.name for o in cli_options(cls)}
    if wanted is not None and wanted - known:
        raise TypeError(f"{cls.__name__} has no options {sorted(wanted - known)}")
    containers: Dict[str, Any] = {name: parser.add_argument_group(title) for name, title in titles.items()}
    for o in cli_options(cls):
        if wanted is not None and o.name not in wanted:
            continue
        target = containers.get(o.group, parser)
        kwargs: Dict[str, Any] = dict(dest=o.name, help=o.help)
        default = o.default()
        if _is_bool(o.field) and not o.repeat:
            if default is None:
                kwargs.update(action=argparse.BooleanOptionalAction, default=None)
            else:
                kwargs.update(action="store_false" if default else "store_true", default=default)
            target.add_argument(o.flag, **kwargs)
            continue
        kwargs["metavar"] = o.metavar
        if o.choices:
            kwargs["choices"] = o.choices
        kind = o.type or _scalar_type(o.field)
        if kind is not None:
            kwargs["type"] = kind
        if o.repeat:
            kwargs["action"] = "append"
        if o.required:
            kwargs["required"] = True
        else:
            kwargs["default"] = default
        target.add_argument(o.flag, **kwargs)


def from_args(cls: type, args, **overrides):
    """``cls`` from the parsed ``args`` (each ``cli_option`` field read from its attribute) and
    ``overrides`` (values the command computed from them: absolute paths, parsed sources)."""
    values = {o.name: getattr(args, o.name) for o in cli_options(cls) if hasattr(args, o.name)}
    values.update(overrides)
    return cls(**values)
