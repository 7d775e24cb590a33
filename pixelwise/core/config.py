"""`JsonConfig`: how a family's dataclass config lives on disk as `config.json`.

Families subclass it next to `@dataclass` and keep their own fields and `validate(source)`; loading checks the JSON
shape, refuses unknown keys (a typo must not silently fall back to a default) and validates with the file's name in
every message. Saving is atomic.
"""

from __future__ import annotations

import copy
import json
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any, Self, TypeVar

from pixelwise.core.errors import CheckpointError, ConfigError
from pixelwise.core.io import atomic_write_text, read_json

C = TypeVar("C", bound="JsonConfig")


class JsonConfig:
    def to_dict(self) -> dict[str, Any]:
        return copy.deepcopy(asdict(self))  # type: ignore[call-overload]

    def finish_loading(self, source: str) -> None:
        """After `from_dict` built the object: normalise what JSON cannot express and validate."""
        validate = getattr(self, "validate", None)
        if validate is not None:
            validate(source)

    @classmethod
    def from_dict(cls, data: Any, source: str = "config") -> Self:
        if not isinstance(data, dict):
            raise ConfigError(f"{source}: must be a JSON object")
        unknown = sorted(set(data) - {f.name for f in fields(cls)})  # type: ignore[arg-type]
        if unknown:
            raise ConfigError(f"{source}: unknown field(s) {', '.join(unknown)}")
        try:
            cfg = cls(**copy.deepcopy(data))
            cfg.finish_loading(source)
        except ConfigError:
            raise
        except (TypeError, KeyError, ValueError, ArithmeticError, AttributeError, IndexError) as e:
            # a value of the wrong type or range that validation meets in arithmetic (zero heads, a list for a dict)
            raise ConfigError(f"{source}: {type(e).__name__}: {e}") from None
        return cfg

    @classmethod
    def from_pretrained(cls, path: str | Path) -> Self:
        file = Path(path) / "config.json"
        if not file.exists():
            raise CheckpointError(f"{path}: no config.json")
        return cls.from_dict(read_json(file, ConfigError), source=str(file))

    def save_pretrained(self, path: str | Path) -> Path:
        Path(path).mkdir(parents=True, exist_ok=True)
        return atomic_write_text(Path(path) / "config.json", json.dumps(self.to_dict(), indent=2) + "\n")
