"""Reading one table of the TOML config: typed values, and one clear error per
bad key that names the file and the key."""

from __future__ import annotations

import os
from contextvars import ContextVar
from enum import StrEnum
from pathlib import Path
from typing import Any, TypeVar

from tikos_outbox.core.addresses import is_valid_address


class ConfigError(Exception):
    """A config file that cannot be used; the message names the file and the key."""

    def __init__(self, file: Path | str, key: str | None, problem: str) -> None:
        where = f"{file}: " + (f"key '{key}': " if key else "")
        super().__init__(where + problem)
        self.file = str(file)
        self.key = key
        self.problem = problem


class ConfigErrors(ConfigError):
    """Several problems in one config file, found in one reading: each names its key."""

    def __init__(self, errors: list[ConfigError]) -> None:
        first = errors[0]
        lines = [f"{first.file}: {len(errors)} problems:"]
        lines += [f"  {e}".replace(f"{e.file}: ", "", 1) for e in errors]
        Exception.__init__(self, "\n".join(lines))
        self.file, self.key, self.problem = first.file, first.key, first.problem
        self.errors = errors


REQUIRED: Any = object()
C = TypeVar("C", bound=StrEnum)


class Section:
    """Reads the keys of one TOML table; unknown keys are errors."""

    def __init__(self, file: Path, name: str, data: Any) -> None:
        if not isinstance(data, dict):
            raise ConfigError(file, name, "must be a table, like [" + name + "]")
        self.file = file
        self.name = name
        self.data: dict[str, Any] = data
        self.used: set[str] = set()

    def key(self, key: str) -> str:
        return f"{self.name}.{key}" if self.name else key

    def fail(self, key: str, problem: str) -> ConfigError:
        return ConfigError(self.file, self.key(key), problem)

    def _get(self, key: str, default: Any) -> Any:
        self.used.add(key)
        if key in self.data:
            return self.data[key]
        if default is REQUIRED:
            raise self.fail(key, "is missing")
        return default

    def str_(self, key: str, default: Any = REQUIRED, *, empty: bool = False) -> Any:
        value = self._get(key, default)
        if value is default and default is not REQUIRED:
            return value
        if not isinstance(value, str):
            raise self.fail(key, f"must be text in quotes, not {value!r}")
        if not empty and not value.strip():
            raise self.fail(key, "must not be empty")
        return value

    def int_(self, key: str, default: Any = REQUIRED, lo: int = 0, hi: int = 10**9) -> int:
        value = self._get(key, default)
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.fail(key, f"must be a whole number, not {value!r}")
        if not lo <= value <= hi:
            raise self.fail(key, f"must be between {lo} and {hi}, not {value}")
        return value

    def num(self, key: str, default: Any = REQUIRED, lo: float = 0, hi: float = 1e9) -> float:
        value = self._get(key, default)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.fail(key, f"must be a number, not {value!r}")
        if not lo <= value <= hi:
            raise self.fail(key, f"must be between {lo:g} and {hi:g}, not {value}")
        return float(value)

    def bool_(self, key: str, default: Any = REQUIRED) -> bool:
        value = self._get(key, default)
        if not isinstance(value, bool):
            raise self.fail(key, f"must be true or false, not {value!r}")
        return value

    def choice(self, key: str, options: type[C], default: C) -> C:
        value = self.str_(key, default.value)
        try:
            return options(value)
        except ValueError:
            raise self.fail(key, f"must be one of {', '.join(o.value for o in options)},"
                                 f" not {value!r}") from None

    def str_list(self, key: str, default: Any = REQUIRED) -> list[str]:
        value = self._get(key, default)
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise self.fail(key, f"must be a list of texts like [\"a\", \"b\"], not {value!r}")
        return list(value)

    def path(self, key: str, base: Path, default: Any = REQUIRED) -> Path | None:
        value = self.str_(key, default)
        if value is None:
            return None
        return resolve_path(str(value), base)

    def address(self, key: str, default: Any = REQUIRED) -> Any:
        value = self.str_(key, default)
        if value is not None and not is_valid_address(value.strip()):
            raise self.fail(key, f"is not a valid e-mail address: {value!r}")
        return value.strip() if isinstance(value, str) else value

    def finish(self) -> None:
        unknown = sorted(set(self.data) - self.used)
        if unknown:
            raise self.fail(unknown[0], "is not a known key (check the spelling)")


def resolve_path(value: str, base: Path) -> Path:
    """A path from the config file: relative paths are relative to the file."""
    expanded = os.path.expandvars(os.path.expanduser(value))
    p = Path(expanded)
    return p if p.is_absolute() or expanded.startswith("\\\\") else (base / p)


#: while `check` reads the config: secrets not stored yet are noted here instead of
#: stopping the reading, so that check lists them among everything else it finds
NOT_STORED: ContextVar[list[ConfigError] | None] = ContextVar("not_stored", default=None)


def missing_secret(s: Section, key: str, problem: str) -> None:
    noted = NOT_STORED.get()
    if noted is None:
        raise s.fail(key, problem)
    noted.append(s.fail(key, problem))
