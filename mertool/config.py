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
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import yaml

from .errors import MertoolError

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
        raise MertoolError(f"{path}: config file not found")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise MertoolError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise MertoolError(f"{path}: expected a mapping of option: value at the top level")
    return data


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

        Unknown keys raise :class:`MertoolError` naming the key and the valid ones.
        YAML keys may use dashes or underscores.
        """
        values: dict[str, Any] = {}
        if yaml_path is not None:
            values.update({k.replace("-", "_"): v for k, v in load_yaml(yaml_path).items()})
        values.update({k: v for k, v in overrides.items() if v is not None})
        values = {cls.ALIASES.get(k, k): v for k, v in values.items()}
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - names)
        if unknown:
            source = f"{yaml_path}: " if yaml_path else ""
            raise MertoolError(
                f"{source}unknown option(s) {', '.join(unknown)} for {cls.__name__}; "
                f"valid: {', '.join(sorted(names))}"
            )
        if cls.PRESETS:
            preset = values.get("preset", getattr(cls, "preset"))
            if preset not in cls.PRESETS:
                raise MertoolError(f"unknown preset {preset!r}; choose from {', '.join(cls.PRESETS)}")
            values = {**cls.PRESETS[preset], **values, "preset": preset}
        cfg = cls(**values)
        cfg.validate()
        return cfg

    def validate(self) -> None:
        """Check values; subclasses raise :class:`MertoolError` naming the field."""

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def hash(self) -> str:
        return config_hash(self.to_dict())
