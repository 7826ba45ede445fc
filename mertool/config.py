"""Typed stage configs: YAML loading, CLI overrides and a stable hash.

Every stage has a dataclass config. The resolved config (defaults <- YAML <- CLI flags)
is what a stage records in its output file, and its hash decides whether an existing
output may be reused.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import types
import typing
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import yaml

from .errors import MertoolError, UsageError

C = TypeVar("C", bound="StageConfig")


def _canonical(value: Any) -> Any:
    """Turn a config value into JSON-stable form (sorted keys, canonical floats)."""
    if isinstance(value, dict):
        return {str(k): _canonical(v) for k, v in sorted(value.items(), key=lambda kv: str(kv[0]))}
    if isinstance(value, (list, tuple)):
        return [_canonical(v) for v in value]
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        if math.isfinite(value) and value == int(value) and abs(value) < 2**53:
            return int(value)  # 1.0 and 1 hash alike
        return repr(float(value))
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "item"):  # numpy scalar
        return _canonical(value.item())
    return str(value)


def config_hash(params: dict) -> str:
    """Stable 16-hex-digit hash of a parameter dict.

    Independent of key order; ``1`` and ``1.0`` hash alike; floats use ``repr``.

    Parameters
    ----------
    params : dict
        Resolved parameters (nested dicts/lists allowed).

    Returns
    -------
    str
        First 16 hex digits of the SHA-256 of the canonical JSON.
    """
    text = json.dumps(_canonical(params), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def load_yaml(path: str | Path) -> dict:
    """Read a YAML mapping; errors name the file."""
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"{path}: config file not found")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise UsageError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise UsageError(f"{path}: expected a mapping of option: value at the top level")
    return data


_SIMPLE = (bool, int, float, str, type(None))
_TRUE, _FALSE = {"true", "yes", "on", "1"}, {"false", "no", "off", "0"}


def _simple_types(hint: Any) -> tuple[type, ...] | None:
    """``int`` -> ``(int,)``, ``int | None`` -> ``(int, NoneType)``; None for other types."""
    args = typing.get_args(hint) if typing.get_origin(hint) in (typing.Union, types.UnionType) else (hint,)
    return args if args and all(a in _SIMPLE for a in args) else None


def _convert(value: Any, kind: type) -> Any:
    """``value`` as ``kind`` where no information is lost, else raise ValueError."""
    if isinstance(value, kind) and not (kind is int and isinstance(value, bool)):
        return value
    if kind is bool and isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
        return value.strip().lower() in _TRUE
    if isinstance(value, bool) or kind in (bool, type(None)):
        raise ValueError(value)
    if kind is str and isinstance(value, (int, float)):
        return str(value)
    if kind is str and isinstance(value, (list, tuple)) and all(isinstance(v, (str, int, float)) for v in value):
        return ",".join(map(str, value))  # the comma-separated form of list options (phases, ranges)
    if kind is float and isinstance(value, (int, str)):
        return float(value)
    if kind is int and isinstance(value, (float, str)):
        number = float(value)
        if number.is_integer():
            return int(number)
    raise ValueError(value)


def coerce_options(cls: type, values: dict[str, Any], source: str = "") -> dict[str, Any]:
    """Option values as their fields' types where that is safe (``"224"``, ``224.0`` -> 224).

    Fields of simple types (bool, int, float, str, optionally None) are converted;
    others pass unchanged. ``source`` (a config file) prefixes the message.

    Raises
    ------
    UsageError
        A value that cannot be its field's type, naming the file, the option and the type.
    """
    try:
        hints = typing.get_type_hints(cls)
    except (NameError, TypeError):
        return dict(values)
    out: dict[str, Any] = {}
    for key, value in values.items():
        kinds = _simple_types(hints.get(key))
        out[key] = value
        if kinds is None or (value is None and type(None) in kinds):
            continue
        for kind in (k for k in kinds if k is not type(None)):
            try:
                out[key] = _convert(value, kind)
                break
            except ValueError:
                continue
        else:
            expected = " or ".join(k.__name__ for k in kinds if k is not type(None))
            raise UsageError(f"{source}option {key} must be {expected}, got {value!r}")
    return out


def _dashes(values: dict) -> dict:
    return {str(k).replace("-", "_"): v for k, v in values.items()}


@dataclasses.dataclass
class StageConfig:
    """Base class of every stage config (a plain dataclass with defaults).

    A config with a ``preset`` field lists its presets in ``PRESETS``: a preset only sets
    defaults (defaults <- preset <- YAML <- flags), so every value stays overridable and
    is recorded. ``ALIASES`` maps other spellings of keys (YAML or keyword) to fields.
    """

    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {}
    ALIASES: ClassVar[dict[str, str]] = {}

    @classmethod
    def resolve(cls: type[C], yaml_path: str | Path | None = None, **overrides: Any) -> C:
        """Build a config: defaults, then the preset, then the YAML file, then non-None overrides.

        Unknown keys, and values that cannot be their field's type (:func:`coerce_options`),
        raise :class:`~mertool.errors.UsageError` naming the key (and the file); so do
        the checks of ``validate``. YAML keys may use dashes or underscores.
        """
        source = f"{yaml_path}: " if yaml_path else ""
        values: dict[str, Any] = {}
        if yaml_path is not None:
            loaded = {cls.ALIASES.get(k, k): v for k, v in _dashes(load_yaml(yaml_path)).items()}
            values.update(coerce_options(cls, loaded, source))
        flags = {cls.ALIASES.get(k, k): v for k, v in overrides.items() if v is not None}
        values.update(coerce_options(cls, flags))
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - names)
        if unknown:
            raise UsageError(
                f"{source}unknown option(s) {', '.join(unknown)} for {cls.__name__}; "
                f"valid: {', '.join(sorted(names))}"
            )
        if cls.PRESETS:
            preset = values.get("preset", getattr(cls, "preset"))
            if preset not in cls.PRESETS:
                raise UsageError(f"unknown preset {preset!r}; choose from {', '.join(cls.PRESETS)}")
            values = {**cls.PRESETS[preset], **values, "preset": preset}
        cfg = cls(**values)
        try:
            cfg.validate()
        except UsageError:
            raise
        except MertoolError as exc:
            raise UsageError(str(exc)) from None
        return cfg

    def validate(self) -> None:
        """Check values; subclasses raise :class:`MertoolError` naming the field."""

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def hash(self) -> str:
        return config_hash(self.to_dict())
