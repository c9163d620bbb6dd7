"""One registry mechanism for problems, solvers and models.

A :class:`Registry` maps a name to a class and records a one-line description, its typed constructor
arguments and what sorts the class, a field of the registry's own entry type: a problem's or solver's
:attr:`RecordEntry.record`, a model's ``board`` (:class:`pdebench.models.registry.BoardEntry`). ``build`` validates the arguments before constructing, and every error names
the bad value and lists what is valid. Entries are LightningCLI-compatible: ``spec(name, **kwargs)``
returns ``{"class_path": ..., "init_args": ...}`` and ``build`` accepts such a dict, so a YAML config
and a Python call construct the same object.

Examples
--------
>>> from pdebench.problems import PROBLEMS
>>> problem = PROBLEMS.build("burgers1d", nu=0.01)
>>> PROBLEMS.spec("burgers1d", nu=0.01)["class_path"]
'pdebench.problems.burgers.Burgers1D'
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import pkgutil
import types
import typing
from pathlib import Path
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, Literal, TypeVar

import yaml

T = TypeVar("T")


def import_submodules(package: str, path: Sequence[str]) -> None:
    """Import every module of a package folder, so that the ``@register`` decorators in them run.

    A registry's package (``pdebench.problems``, ``pdebench.models``) calls this from its
    ``__init__`` with its ``__name__`` and ``__path__``: adding a registered class is then one new
    file, with no list of imports to edit. Modules are imported in name order.
    """
    for module in sorted(pkgutil.iter_modules(path), key=lambda m: m.name):
        importlib.import_module(f"{package}.{module.name}")


class RegistryError(ValueError):
    """An unknown name or an invalid constructor argument given to a :class:`Registry`."""


@dataclass(frozen=True)
class Entry:
    """One registered class: its name, the class and a one-line description. A registry's entry type
    adds the field that sorts its classes (:class:`RecordEntry`, :class:`~pdebench.models.registry.BoardEntry`)."""

    name: str
    cls: type
    description: str

    @property
    def class_path(self) -> str:
        """Import path of the class (``module.QualName``), as LightningCLI's ``class_path``."""
        return f"{self.cls.__module__}.{self.cls.__qualname__}"

    def arguments(self) -> dict[str, inspect.Parameter]:
        """Constructor arguments by name (``self``, ``*args`` and ``**kwargs`` excluded)."""
        params = inspect.signature(self.cls).parameters
        return {
            name: p
            for name, p in params.items()
            if p.kind not in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
        }

    def argument_types(self) -> dict[str, Any]:
        """Resolved type annotations of the constructor arguments."""
        target = self.cls if dataclasses.is_dataclass(self.cls) else self.cls.__init__
        hints = typing.get_type_hints(target)
        return {name: hints.get(name, Any) for name in self.arguments()}


RecordName = Literal["time-dependent", "steady", "mesh", "particles"]


@dataclass(frozen=True)
class RecordEntry(Entry):
    """A problem or a solver, with the record it makes: ``time-dependent`` (trajectories on a grid),
    ``steady`` (input fields and their solutions on a grid), ``mesh`` (samples on a mesh) or
    ``particles`` (particle trajectories)."""

    record: RecordName = "time-dependent"

    def __post_init__(self) -> None:
        if self.record not in typing.get_args(RecordName):
            raise RegistryError(f"{self.name!r}: record must be one of {typing.get_args(RecordName)}, got {self.record!r}")


class Registry(Generic[T]):
    """Name -> class registry with validated construction.

    Parameters
    ----------
    what
        What the registry holds, used in messages (``"problem"``, ``"solver"``, ``"model"``).
    entry
        Its entry type: :class:`Entry` with the field that sorts its classes (``RecordEntry.record``).
    """

    def __init__(self, what: str, entry: type[Entry]) -> None:
        self.what, self.entry = what, entry
        self._entries: dict[str, Entry] = {}

    def register(self, name: str, *, description: str | None = None, **fields: str) -> Callable[[type[T]], type[T]]:
        """Class decorator recording ``cls`` under ``name`` with the entry type's ``fields``
        (``record=`` or ``board=``); the description defaults to the first line of the class docstring."""
        self._check_fields(fields)

        def decorate(cls: type[T]) -> type[T]:
            if name in self._entries:
                raise RegistryError(f"{self.what} {name!r} is already registered")
            doc = description or (inspect.getdoc(cls) or "").strip().splitlines()[0:1]
            text = doc if isinstance(doc, str) else (doc[0] if doc else "")
            self._entries[name] = self.entry(name=name, cls=cls, description=text, **fields)
            cls.registry_name = name  # type: ignore[attr-defined]
            return cls

        return decorate

    def available(self, **fields: str) -> list[str]:
        """Sorted registered names, only those whose entry has the given ``fields`` (``record="mesh"``)."""
        self._check_fields(fields)
        return sorted(n for n, e in self._entries.items() if all(getattr(e, k) == v for k, v in fields.items()))

    def _check_fields(self, fields: Mapping[str, str]) -> None:
        known = {f.name for f in dataclasses.fields(self.entry)} - {"name", "cls", "description"}
        if not set(fields) <= known:
            raise RegistryError(f"{self.what} entries have {', '.join(sorted(known))}; got {', '.join(sorted(fields))}")

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def entries(self) -> list[Entry]:
        """All entries, sorted by name."""
        return [self._entries[n] for n in self.available()]

    def get(self, name: str) -> Entry:
        """The entry for ``name``; an unknown name raises :class:`RegistryError` listing the valid ones."""
        try:
            return self._entries[name]
        except KeyError:
            valid = ", ".join(self.available())
            raise RegistryError(f"unknown {self.what} {name!r}; valid {self.what}s: {valid}") from None

    def spec(self, name: str, **kwargs: Any) -> dict[str, Any]:
        """LightningCLI-style ``{"class_path", "init_args"}`` for ``name`` built with ``kwargs``."""
        entry = self.get(name)
        self.validate(name, kwargs)
        return {"class_path": entry.class_path, "init_args": dict(kwargs)}

    def validate(self, name: str, kwargs: Mapping[str, Any]) -> None:
        """Check that ``kwargs`` are constructor arguments of ``name`` with values of the right type."""
        entry = self.get(name)
        args = entry.arguments()
        unknown = sorted(set(kwargs) - set(args))
        if unknown:
            raise RegistryError(
                f"{self.what} {name!r} has no argument {', '.join(map(repr, unknown))}; "
                f"valid arguments: {', '.join(args) or '(none)'}"
            )
        types_ = entry.argument_types()
        for key, value in kwargs.items():
            if not _matches(value, types_[key]):
                raise RegistryError(
                    f"{self.what} {name!r}: argument {key}={value!r} is not of type {_type_name(types_[key])}"
                )

    def build(self, name_or_spec: str | Mapping[str, Any], **kwargs: Any) -> T:
        """Construct a registered class from a name and keyword arguments, or from a
        ``{"class_path", "init_args"}`` mapping (``class_path`` may be the registered name)."""
        if isinstance(name_or_spec, Mapping):
            target = str(name_or_spec["class_path"])
            kwargs = {**dict(name_or_spec.get("init_args", {})), **kwargs}
            by_path = {e.class_path: e.name for e in self._entries.values()}
            name = by_path.get(target, target)
        else:
            name = name_or_spec
        self.validate(name, kwargs)
        return self.get(name).cls(**kwargs)

    def coerce(self, name: str, key: str, text: str) -> Any:
        """Parse the command-line string ``text`` for argument ``key`` of ``name`` by its type."""
        entry = self.get(name)
        args = entry.arguments()
        if key not in args:
            raise RegistryError(
                f"{self.what} {name!r} has no argument {key!r}; valid arguments: {', '.join(args)}"
            )
        return _parse(text, entry.argument_types()[key], f"{key}={text}")


def _type_name(tp: Any) -> str:
    """How an error names annotation ``tp``: ``float``, ``int | None``, ``one of 'auto', 'direct'``."""
    if typing.get_origin(tp) is typing.Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _matches(value: Any, tp: Any) -> bool:
    """Whether ``value`` is acceptable for annotation ``tp`` (ints count as floats, bools do not)."""
    if tp is Any or tp is inspect.Parameter.empty:
        return True
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        return any(_matches(value, t) for t in typing.get_args(tp))
    if origin is typing.Literal:
        return value in typing.get_args(tp)
    if tp is type(None):
        return value is None
    if tp is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if origin in (tuple, list):
        return isinstance(value, (tuple, list))
    if isinstance(tp, type):
        return isinstance(value, tp)
    return True


def _parse(text: str, tp: Any, where: str) -> Any:
    """Parse ``text`` as a value of annotation ``tp`` (YAML scalars: numbers, bools, null, strings)."""
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise RegistryError(f"cannot parse {where}: {exc}") from None
    if isinstance(value, str):  # YAML 1.1 reads "1e-3" as a string
        for number in (int, float):
            try:
                value = number(text)
                break
            except ValueError:
                pass
    if tp is str or (typing.get_origin(tp) is typing.Literal and all(isinstance(a, str) for a in typing.get_args(tp))):
        value = text
    if isinstance(value, list) and typing.get_origin(tp) is tuple:
        value = tuple(value)
    if not _matches(value, tp):
        raise RegistryError(f"cannot use {where}: expected {_type_name(tp)}")
    return value


def check_at_least_one(**values: int) -> None:
    """Refuse (``ValueError`` naming it) the first of ``values`` (name -> count) below 1."""
    for name, value in values.items():
        if value < 1:
            raise ValueError(f"{name} must be >= 1, got {value}")


def require_int(label: str, value: Any, least: int, prefix: str = "") -> None:
    """Refuse a ``value`` that is not an integer (a bool is not) of at least ``least``: ``ValueError``
    ``"{prefix}{label} must be an integer >= {least}, got {value!r}"``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < least:
        raise ValueError(f"{prefix}{label} must be an integer >= {least}, got {value!r}")


def require_choice(label: str, value: Any, choices: Sequence[Any], prefix: str = "") -> None:
    """Refuse a ``value`` not in ``choices``: ``ValueError`` ``"{prefix}{label} must be one of
    {tuple(choices)}, got {value!r}"``."""
    if value not in choices:
        raise ValueError(f"{prefix}{label} must be one of {tuple(choices)}, got {value!r}")


def read_yaml(path: str | Path, what: str) -> Any:
    """The contents of the YAML file ``path`` (a ``what``: "suite file", "DCDM config", ...), read
    with the safe loader: tags such as ``!!python/object`` construct nothing and are refused.

    Raises
    ------
    FileNotFoundError
        No file at ``path``.
    ValueError
        One line naming the file: not UTF-8 text, or not plain YAML (the parser's problem and line).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no {what} at {path}")
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise ValueError(f"{path}: a {what} must be UTF-8 YAML text; this file is binary") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ValueError(f"{path}: not a plain YAML {what}{where}: {' '.join(str(problem).split())}") from None


def dataclass_from_mapping(kind: type[T], raw: Any, origin: str) -> T:
    """``kind(**raw)`` for a dataclass ``kind`` from a YAML mapping, lists made tuples.

    Raises
    ------
    ValueError
        Prefixed with ``origin`` (a file, ``"suite.yaml: task 2"``): ``raw`` is not a mapping, has
        keys that are not fields of ``kind`` (named, with the expected ones), or the constructor
        refuses the values.
    """
    if not isinstance(raw, dict):
        raise ValueError(f"{origin}: expected a mapping, got {raw!r}")
    known = {f.name for f in dataclasses.fields(kind)}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise ValueError(f"{origin}: unknown key(s) {', '.join(unknown)}; expected {', '.join(sorted(known))}")
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in raw.items()}
    try:
        return kind(**values)
    except (TypeError, ValueError) as error:
        message = str(error)
        raise ValueError(message if message.startswith(origin) else f"{origin}: {message}") from None


def read_config(path: str | Path, kind: type[T], what: str) -> T:
    """The run configuration ``kind`` (a dataclass) of the YAML file ``path`` (a ``what``, for
    messages): :func:`read_yaml`, then :func:`dataclass_from_mapping` -- one loader for every run
    kind (DCDM, physics, suites' entries)."""
    return dataclass_from_mapping(kind, read_yaml(path, what), str(path))

