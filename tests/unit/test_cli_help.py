"""`unlearn --help` and every subcommand's --help say what it does and every default."""

from __future__ import annotations

import argparse

from jobs.cli import HelpFormatter, build_parser


def _parsers(p: argparse.ArgumentParser, path: str = "unlearn"):
    yield path, p
    for a in p._actions:
        if isinstance(a, argparse._SubParsersAction):
            for name, sp in a.choices.items():
                yield from _parsers(sp, f"{path} {name}")


def test_every_command_says_what_it_does_and_its_defaults():
    missing = []
    for path, p in _parsers(build_parser()):
        if not p.description:
            missing.append(f"{path}: no description")
        text = p.format_help()
        assert "(default: None)" not in text and "(default: False)" not in text, path
        for a in p._actions:
            if not a.option_strings or a.required or isinstance(a, (argparse._HelpAction, argparse._VersionAction)):
                continue
            if isinstance(a, (argparse._StoreTrueAction, argparse._StoreFalseAction)):
                continue  # a flag's default is "off"
            if any(a in g._group_actions and g.required for g in p._mutually_exclusive_groups):
                continue  # one of a required group: no default to state
            if "default" not in HelpFormatter(path)._get_help_string(a):
                missing.append(f"{path} {a.option_strings[0]}: no default in its help")
    assert not missing, "\n".join(missing)


def test_the_top_level_help_lists_every_command_and_the_environment():
    text = build_parser().format_help()
    for cmd in ("demo", "init", "request", "nightly", "serve", "submit", "audit", "rollback", "versions", "bench"):
        assert f"    {cmd}" in text
    for env in ("UNLEARN_HOME", "MLFLOW_TRACKING_URI", "UNLEARN_LEDGER_URL", "RAY_ADDRESS", "UNLEARN_TOKEN"):
        assert env in text
