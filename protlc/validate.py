"""Value rules shared by every place that checks user settings (config keys, loss parameters, sizes).

A rule is ``(predicate, what the value must be)``; :func:`check` turns a broken rule into one
:class:`~protlc.errors.ConfigError` line that names the setting, the rule and the value.
"""

from __future__ import annotations

import math
from typing import Any, Callable

from protlc.errors import ConfigError

Rule = tuple[Callable[[Any], bool], str]


def is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def whole(low: int) -> Rule:
    return (lambda v: is_int(v) and v >= low), f"an integer >= {low}"


def number(low: float, high: float = math.inf, *, low_open: bool = False, high_open: bool = False) -> Rule:
    high_open = high_open or math.isinf(high)

    def ok(v: Any) -> bool:
        if not isinstance(v, (int, float)) or isinstance(v, bool) or math.isnan(v):
            return False
        return (v > low if low_open else v >= low) and (v < high if high_open else v <= high)
    return ok, f"a number in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"


def optional(rule: Rule) -> Rule:
    return (lambda v: v is None or rule[0](v)), f"null or {rule[1]}"


FLAG: Rule = (lambda v: isinstance(v, bool), "true or false")


def check(value: Any, rule: Rule, name: str) -> Any:
    """``value`` when it keeps ``rule``.

    Raises:
        ConfigError: ``{name} must be {what}, got {value!r}``.
    """
    ok, what = rule
    if not ok(value):
        raise ConfigError(f"{name} must be {what}, got {value!r}")
    return value
