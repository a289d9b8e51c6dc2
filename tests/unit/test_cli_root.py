"""The CLI's entry point: version, usage errors and the error-to-exit-code mapping."""
from automation import __version__
from automation.cli import main


def test_version(capsys):
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"fleet {__version__}"


def test_unknown_command_is_usage_error(capsys):
    assert main(["no-such-command"]) == 2
    assert "no-such-command" in capsys.readouterr().err
