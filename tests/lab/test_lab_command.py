"""``attnkit lab``: the action registry dispatches to each action's own module."""

from __future__ import annotations

import importlib

from attnkit import cli
from attnkit.lab import command


def test_every_registered_action_module_declares_add_arguments_and_run():
    for name, (module_name, help_line) in command.ACTION_MODULES.items():
        module = importlib.import_module(module_name)
        assert callable(module.add_arguments) and callable(module.run), name
        assert command.ACTIONS[name] == help_line


def test_lab_without_an_action_lists_the_actions_and_exits_2(capsys):
    code = cli.main(["lab"])
    err = capsys.readouterr().err
    assert code == 2 and all(f"lab {name}" in err for name in command.ACTIONS)


def test_lab_unknown_action_suggests_the_closest(capsys):
    code = cli.main(["lab", "haeds"])
    assert code == 2 and "did you mean 'heads'" in capsys.readouterr().err
