"""Type checks of config dataclasses read from files users write (YAML presets, ``composer.json``).

A dataclass field annotated ``int``, ``float | None``, ``bool | dict``, ``list`` ... gets a one-line
`OptionError` naming the field when a file gives it a value of another type, instead of a traceback later.
"""

from __future__ import annotations

import math
import os
from dataclasses import fields

import numpy as np

from .errors import OptionError


def is_integer(value) -> bool:
    """Whether `value` is an integer (Python or numpy), not a bool."""
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


_CHECKS = {
    "int": is_integer,
    "float": lambda v: isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool)
    and math.isfinite(v),
    "str": lambda v: isinstance(v, (str, os.PathLike)),
    "bool": lambda v: isinstance(v, bool),
    "dict": lambda v: isinstance(v, dict),
    "list": lambda v: isinstance(v, (list, tuple)),
    "tuple[int, int]": lambda v: isinstance(v, (list, tuple)) and len(v) == 2 and all(is_integer(x) for x in v),
}


def check_field_types(config, what: str = "config") -> None:
    """Raise `OptionError` for the first field of the dataclass instance `config` whose value fits none of its
    annotated types (annotations this module does not know are the class's own to check)."""
    for item in fields(config):
        value = getattr(config, item.name)
        kinds = [kind.strip() for kind in str(item.type).split("|")]
        if "None" in kinds and value is None:
            continue
        checks = [_CHECKS[kind] for kind in kinds if kind in _CHECKS]
        if checks and not any(check(value) for check in checks):
            raise OptionError(f"{what} field {item.name}: {value!r} is not {' or '.join(kinds)}")
