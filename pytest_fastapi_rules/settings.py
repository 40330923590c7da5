"""How a setting is declared once, and what is made of the declarations.

A setting is one field of :class:`~pytest_fastapi_rules.options.RulesOptions`, declared with
:func:`setting`: its key (the ini key; the command-line flag is the same name with dashes), whether it
has a flag and an ini key, its default as a user would write it, one help text, the rules it affects
and the reader that turns a given value into the field's value. From these declarations come
pytest's ``addoption``/``addini`` calls (:func:`register`), a run's values (:func:`read_all`: the
command line over the ini over the default) and the README's settings table
(:func:`markdown_table`), so that adding a setting touches one declaration, as adding a
rule does (``registry.py``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import pytest

#: How pytest parses an ini value (``parser.addini``'s ``type``): a string, a list of
#: whitespace-separated words, a list of lines, or a boolean.
IniType = Literal["string", "args", "linelist", "bool"]
Source = Literal["command line", "ini", "default"]
_METADATA_KEY = "pytest_fastapi_rules.setting"


class OptionsError(ValueError):
    """A setting that cannot be understood; turned into a pytest usage error."""


@dataclass(frozen=True)
class Given:
    """A setting's value as pytest parsed it, and what its reader needs to read it and to name it."""

    #: A string, a list of strings (``args``, ``linelist``), a boolean (switches, ``bool``) or None.
    value: Any
    source: Source
    #: What the user wrote, for messages: the flag when the value came from the command line, else
    #: the ini key (the flag for a setting that has no ini key).
    name: str
    #: What a relative path in the value is relative to: where pytest was started for the command
    #: line, the rootdir for the ini and the default.
    base: Path
    #: The registered rule codes, asked for only when a value names some (this imports every rule,
    #: so the caller passes the catalog in rather than this package importing it).
    rule_codes: Callable[[], Sequence[str]]


def _no_rule_codes() -> Sequence[str]:
    return ()


@dataclass(frozen=True)
class Setting:
    """One setting's declaration; see :func:`setting`."""

    key: str
    help: str
    read: Callable[[Given], Any]
    default: object
    ini: IniType | None
    flag: str | bool
    rules: tuple[str, ...]
    default_text: str | None

    def __post_init__(self) -> None:
        if not self.ini and not self.flag:
            raise TypeError(f"setting {self.key}: neither an ini key nor a command-line flag")

    @property
    def option(self) -> str | None:
        """The command-line flag (``--fastapi-rules-json``), or None for an ini-only setting."""
        return "--" + self.key.replace("_", "-") if self.flag else None

    @property
    def takes_value(self) -> bool:
        """Whether the flag takes a value (``=PATH``) rather than being a switch."""
        return isinstance(self.flag, str)

    def default_words(self) -> str:
        """The default as the help and the README state it (empty when there is none)."""
        if self.default_text is not None:
            return self.default_text
        if self.default is False:
            return ""  # a switch, or a boolean key, is off unless set: saying so is noise
        if isinstance(self.default, list):
            return ", ".join(self.default)
        return str(self.default or "")

    def described(self) -> str:
        """The help text of both the flag and the ini key, with the rules it affects and the default."""
        text = self.help
        if self.rules:
            text += f" Rules: {', '.join(self.rules)}."
        default = self.default_words()
        return f"{text} Default: {default}." if default else text

    def read_default(self) -> Any:
        """The field's value when nothing is given and no run is at hand (a ``RulesOptions`` built
        directly, by tests and benchmarks)."""
        return self.read(Given(self.default, "default", self.key, Path(), _no_rule_codes))


#: ``direct_default=REQUIRED``: a ``RulesOptions`` built directly must be given this field.
REQUIRED: Any = object()
_FROM_DEFAULT: Any = object()


def setting(
    key: str,
    *,
    help: str,
    read: Callable[[Given], Any],
    default: object = None,
    ini: IniType | None = "string",
    flag: str | bool = False,
    rules: tuple[str, ...] = (),
    default_text: str | None = None,
    direct_default: Any = _FROM_DEFAULT,
) -> Any:
    """Declare a setting as a field of a dataclass (``strict: bool = setting(...)``).

    ``key`` is the ini key; ``ini=None`` makes the setting command-line only. ``flag`` is False (no
    command-line flag), True (a switch such as ``--fastapi-rules-strict``) or the name of the
    flag's value (``"PATH"``). ``default`` is written as in the ini (a string, a list of strings, a
    boolean); ``default_text`` says it in words when the value alone would not (a default that
    depends on the run). ``help`` is one text for the flag, the ini key and the README, without
    the default, which is appended. ``read`` turns the given value into the field's value and
    raises :class:`OptionsError` naming ``given.name`` when it makes no sense. ``rules`` are the
    codes whose verdicts the setting changes (none for one that concerns every rule or the run).
    The field's default is ``read(default)``, unless ``direct_default`` gives it (or ``REQUIRED``)
    because reading the default needs the run.
    """
    declared = Setting(key, help, read, default, ini, flag, rules, default_text)
    metadata = {_METADATA_KEY: declared}
    if direct_default is REQUIRED:
        return dataclasses.field(metadata=metadata)
    if direct_default is not _FROM_DEFAULT:
        return dataclasses.field(default=direct_default, metadata=metadata)
    return dataclasses.field(default_factory=declared.read_default, metadata=metadata)


def declared_settings(options_class: type) -> list[tuple[str, Setting]]:
    """``(field name, declaration)`` of each setting of ``options_class``, in declaration order."""
    return [
        (item.name, item.metadata[_METADATA_KEY])
        for item in dataclasses.fields(options_class)
        if _METADATA_KEY in item.metadata
    ]


def register(parser: pytest.Parser, options_class: type, group: pytest.OptionGroup) -> None:
    """pytest's ``addoption`` and ``addini`` for each setting, with the same help for both."""
    for _name, declared in declared_settings(options_class):
        if declared.option is not None:
            if declared.takes_value:
                group.addoption(
                    declared.option, dest=declared.key, metavar=declared.flag, help=declared.described()
                )
            else:
                group.addoption(
                    declared.option,
                    dest=declared.key,
                    action="store_true",
                    default=None,
                    help=declared.described(),
                )
        if declared.ini is not None:
            default = list(declared.default) if isinstance(declared.default, list) else declared.default
            ini_type = None if declared.ini == "string" else declared.ini
            parser.addini(declared.key, declared.described(), type=ini_type, default=default)


def read_all(
    options_class: type, config: pytest.Config, rule_codes: Callable[[], Sequence[str]]
) -> tuple[dict[str, Any], dict[str, str]]:
    """Every setting's value (by field name), and where each one given came from (by key)."""
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for name, declared in declared_settings(options_class):
        given = _given(declared, config, rule_codes)
        values[name] = declared.read(given)
        if given.source != "default":
            sources[declared.key] = given.source
    return values, sources


def _given(declared: Setting, config: pytest.Config, rule_codes: Callable[[], Sequence[str]]) -> Given:
    """The command line's value, else the ini's, else the default. A blank command-line value
    (``--fastapi-rules-json=$UNSET``) counts as not given."""
    if declared.option is not None:
        value = config.getoption(declared.key)
        if value is not None and value != "":
            return Given(value, "command line", declared.option, config.invocation_params.dir, rule_codes)
    if declared.ini is None:
        return Given(declared.default, "default", str(declared.option), config.rootpath, rule_codes)
    try:
        value = config.getini(declared.key)
    except (ValueError, pytest.UsageError) as exc:
        # Only a ``bool`` key fails here, and pytest's message does not say which key it is about.
        raise OptionsError(f"{declared.key}: {exc}; use true or false.") from None
    given = value not in (None, "", []) and value != declared.default
    return Given(value, "ini" if given else "default", declared.key, config.rootpath, rule_codes)


def markdown_table(options_class: type) -> str:
    """The README's settings table, made from the declarations (a test keeps the README in sync)."""
    lines = ["| ini key | command line | default | rules | what it sets |", "|---|---|---|---|---|"]
    for _name, declared in declared_settings(options_class):
        key = f"`{declared.key}`" if declared.ini else ""
        option = declared.option
        flag = f"`{option}={declared.flag}`" if declared.takes_value else f"`{option}`" if option else ""
        cells = (key, flag, _markdown_default(declared), ", ".join(declared.rules), declared.help)
        lines.append("| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |")
    return "\n".join(lines)


def _markdown_default(declared: Setting) -> str:
    """The default for the README: words as written, values as code (each item of a list)."""
    if declared.default_text is not None:
        return declared.default_text
    if isinstance(declared.default, list):
        return ", ".join(f"`{item}`" for item in declared.default)
    words = declared.default_words()
    return f"`{words}`" if words else ""
