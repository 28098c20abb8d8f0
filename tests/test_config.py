"""wrapper.config: one frozen Config from flags > environment > .env file > defaults.

Every test passes explicit argv and environ, and points --env-file into tmp_path (or at a
path that does not exist), so neither os.environ nor a stray ./.env can change a result.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import attrs
import pytest

from wrapper import config as config_module
from wrapper.config import DEFAULT_MODELS, Config, ConfigError, load


@pytest.fixture
def no_dotenv(tmp_path: Path) -> list[str]:
    return ["--env-file", str(tmp_path / "absent.env")]


@pytest.fixture
def dotenv(tmp_path: Path) -> Path:
    return tmp_path / "test.env"


def from_env(environ: dict[str, str], *argv: str, env_file: Path | None = None) -> Config:
    path = env_file if env_file is not None else Path("/nonexistent/dir/.env")
    return load([*argv, "--env-file", str(path)], environ)


# --- defaults -------------------------------------------------------------------------


def test_defaults(no_dotenv: list[str]) -> None:
    config = load(no_dotenv, {})
    assert (config.host, config.port, config.cli_path) == ("127.0.0.1", 8000, None)
    assert config.default_model == "claude-sonnet-4-5"
    assert config.models == DEFAULT_MODELS
    assert config.timeout == 600.0
    assert (config.max_turns, config.shutdown_grace, config.log_level) == (10, 10.0, "INFO")
    assert config.max_body_bytes == 10 * 1024 * 1024
    assert config.claude_env == {}
    assert config == Config(workdir=config.workdir)


def test_unrelated_environment_changes_nothing(no_dotenv: list[str]) -> None:
    assert load(no_dotenv, {"PATH": "/bin", "ANTHROPIC_API_KEY": "k"}) == load(no_dotenv, {})


# --- environment ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("environ", "field", "value"),
    [
        ({"PORT": "9001"}, "port", 9001),
        ({"HOST": "0.0.0.0"}, "host", "0.0.0.0"),
        ({"HOST": "::1"}, "host", "::1"),
        ({"CLAUDE_CLI_PATH": "/opt/claude/bin/claude"}, "cli_path", "/opt/claude/bin/claude"),
        # "claude" was the seed's default (look it up on PATH): keep the pinned bundle.
        ({"CLAUDE_CLI_PATH": "claude"}, "cli_path", None),
        ({"DEFAULT_MODEL": "claude-opus-4-5"}, "default_model", "claude-opus-4-5"),
        ({"MODELS": "a,b"}, "models", ("a", "b")),
        ({"MODELS": " a , b ,, c ,"}, "models", ("a", "b", "c")),
        ({"MODELS": "only-one"}, "models", ("only-one",)),
        ({"MAX_TIMEOUT": "120000"}, "timeout", 120.0),
        ({"CLAUDE_CWD": "/srv/scratch"}, "workdir", Path("/srv/scratch")),
        ({"MAX_REQUEST_BYTES": "1048576"}, "max_body_bytes", 1048576),
        ({"SHUTDOWN_GRACE": "2.5"}, "shutdown_grace", 2.5),
        ({"MAX_TURNS": "3"}, "max_turns", 3),
        ({"LOG_LEVEL": "debug"}, "log_level", "DEBUG"),
        ({"LOG_LEVEL": "WARNING"}, "log_level", "WARNING"),
        # Empty means unset, as in a shell's `PORT= python -m wrapper`.
        ({"PORT": ""}, "port", 8000),
        ({"HOST": ""}, "host", "127.0.0.1"),
        ({"CLAUDE_CLI_PATH": ""}, "cli_path", None),
    ],
)
def test_environment(environ: dict[str, str], field: str, value: Any) -> None:
    assert getattr(from_env(environ), field) == value


@pytest.mark.parametrize("name", ["MODELS", "MAX_REQUEST_BYTES", "SHUTDOWN_GRACE", "MAX_TURNS"])
def test_empty_value_means_unset_for_every_setting(name: str) -> None:
    # A .env template line such as `MAX_TURNS=` is common; PORT= and HOST= already work.
    assert from_env({name: ""}) == from_env({})


@pytest.mark.parametrize(
    ("raw", "seconds"),
    [
        # Bare numbers are milliseconds, as in the seed's .env; units make it explicit.
        ("600000", 600.0),
        ("90000", 90.0),
        ("1000", 1.0),
        ("600s", 600.0),
        ("1.5s", 1.5),
        ("10m", 600.0),
        ("2500ms", 2.5),
    ],
)
def test_max_timeout(raw: str, seconds: float) -> None:
    assert from_env({"MAX_TIMEOUT": raw}).timeout == seconds
    assert from_env({}, "--timeout", raw).timeout == seconds


@pytest.mark.parametrize(
    ("raw", "words"),
    [
        # The seed's Docker notes said seconds: refuse rather than run with 0.6 s.
        ("600", "write 600s for seconds or 600000 for milliseconds"),
        ("0s", "must be positive"),
        ("ten", "expected milliseconds"),
        ("-5s", "expected milliseconds"),
    ],
)
def test_max_timeout_refused(raw: str, words: str) -> None:
    with pytest.raises(ConfigError, match="MAX_TIMEOUT") as caught:
        from_env({"MAX_TIMEOUT": raw})
    assert words in str(caught.value)


@pytest.mark.parametrize(
    ("name", "raw"),
    [
        ("PORT", "abc"),
        ("PORT", "70000"),
        ("MAX_TURNS", "0"),
        ("MAX_TURNS", "x"),
        ("SHUTDOWN_GRACE", "-5"),
        ("MAX_REQUEST_BYTES", "12"),
    ],
)
def test_bad_environment_values_name_the_setting(name: str, raw: str) -> None:
    with pytest.raises(ConfigError, match=f"^{name}="):
        from_env({name: raw})


# --- flags ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "field", "value"),
    [
        (["--host", "0.0.0.0"], "host", "0.0.0.0"),
        (["--port", "9002"], "port", 9002),
        (["9003"], "port", 9003),
        (["--cli-path", "/usr/local/bin/claude"], "cli_path", "/usr/local/bin/claude"),
        (["--cli-path", "claude"], "cli_path", None),
        (["--model", "haiku"], "default_model", "haiku"),
        (["--timeout", "45s"], "timeout", 45.0),
        (["--workdir", "/var/tmp/w"], "workdir", Path("/var/tmp/w")),
        (["--log-level", "warning"], "log_level", "WARNING"),
    ],
)
def test_flags(argv: list[str], field: str, value: Any) -> None:
    assert getattr(from_env({}, *argv), field) == value


ENVIRON = {
    "HOST": "10.0.0.1",
    "PORT": "7000",
    "CLAUDE_CLI_PATH": "/env/claude",
    "DEFAULT_MODEL": "env-model",
    "MAX_TIMEOUT": "300000",
    "CLAUDE_CWD": "/env/work",
    "LOG_LEVEL": "ERROR",
}


@pytest.mark.parametrize(
    ("argv", "field", "value"),
    [
        (["--host", "0.0.0.0"], "host", "0.0.0.0"),
        (["--port", "9002"], "port", 9002),
        (["9003"], "port", 9003),
        (["--cli-path", "/flag/claude"], "cli_path", "/flag/claude"),
        (["--model", "flag-model"], "default_model", "flag-model"),
        (["--timeout", "45s"], "timeout", 45.0),
        (["--workdir", "/flag/work"], "workdir", Path("/flag/work")),
        (["--log-level", "debug"], "log_level", "DEBUG"),
        # Without the flag, the environment holds.
        ([], "host", "10.0.0.1"),
        ([], "port", 7000),
        ([], "timeout", 300.0),
    ],
)
def test_flags_override_the_environment(argv: list[str], field: str, value: Any) -> None:
    assert getattr(from_env(ENVIRON, *argv), field) == value


def test_positional_port_as_the_seed(no_dotenv: list[str]) -> None:
    # The seed ran as `python -m wrapper 9000`.
    assert load(["9000", *no_dotenv], {"PORT": "7000"}).port == 9000


def test_port_flag_beats_positional_port(no_dotenv: list[str]) -> None:
    assert load(["9000", "--port", "9100", *no_dotenv], {}).port == 9100


@pytest.mark.parametrize("argv", [["--port", "http"], ["not-a-port"], ["--bogus"]])
def test_bad_flags_exit_with_usage(
    argv: list[str], no_dotenv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as caught:
        load([*argv, *no_dotenv], {})
    assert caught.value.code == 2
    assert "usage: python -m wrapper" in capsys.readouterr().err


# --- the .env file --------------------------------------------------------------------

DOTENV = """\
# Settings for the wrapper

PORT=9100
export HOST=0.0.0.0
DEFAULT_MODEL="claude-haiku-4-5"
MODELS='x, y'
   MAX_TURNS = 4
LOG_LEVEL=debug
  # an indented comment
not a setting
ANTHROPIC_API_KEY=sk-ant-from-dotenv
URL=https://example.test/?a=1&b=2
EMPTY=
"""


def test_dotenv_is_read(dotenv: Path) -> None:
    dotenv.write_text(DOTENV)
    config = from_env({}, env_file=dotenv)
    assert (config.port, config.host) == (9100, "0.0.0.0")
    assert config.default_model == "claude-haiku-4-5"
    assert config.models == ("x", "y")
    assert (config.max_turns, config.log_level) == (4, "DEBUG")


def test_only_the_clis_own_dotenv_values_reach_it(dotenv: Path) -> None:
    # The server's settings and unrelated entries stay out of the CLI's environment.
    dotenv.write_text(DOTENV + "HOME=/srv/home\nCLAUDE_CODE_USE_BEDROCK=1\nAPI_KEYS=k1,k2\n")
    config = from_env({}, env_file=dotenv)
    assert config.claude_env == {
        "ANTHROPIC_API_KEY": "sk-ant-from-dotenv",
        "CLAUDE_CODE_USE_BEDROCK": "1",
        "HOME": "/srv/home",  # where the server's login lives; runs get their own HOME
    }
    assert config.home() == Path("/srv/home")


@pytest.mark.parametrize(
    ("name", "reaches"),
    [
        ("ANTHROPIC_BASE_URL", True),
        ("CLAUDE_CODE_OAUTH_TOKEN", True),
        ("AWS_REGION", True),
        ("HTTPS_PROXY", True),
        ("LC_ALL", True),
        ("PATH", True),
        ("API_KEYS", False),
        ("API_KEY", False),
        ("NOTIFY_SOCKET", False),
        ("CLAUDE_CWD", False),
        ("CLAUDE_CONFIG_DIR", False),  # each run has its own
        ("HOME", False),  # likewise
        ("WRAPPER_STATE_DIR", False),
        ("DATABASE_URL", False),
    ],
)
def test_the_cli_environment_is_an_allow_list(name: str, reaches: bool) -> None:
    assert config_module.cli_variable(name) is reaches
    env = Config(claude_env={name: "value"}).claude_environment()
    assert (env.get(name) == "value") is reaches


@pytest.mark.parametrize(
    ("line", "value"),
    [
        ("K=plain", "plain"),
        ("K='single quoted'", "single quoted"),
        ('K="double quoted"', "double quoted"),
        ('K="it\'s"', "it's"),
        ("K=  padded  ", "padded"),
        ('K="  kept inside quotes  "', "  kept inside quotes  "),
        ("K=a=b=c", "a=b=c"),
        ("export K=1", "1"),
        ("K=\"unbalanced'", "\"unbalanced'"),
        ('K="', '"'),
        ("K=", ""),
    ],
)
def test_dotenv_values(dotenv: Path, line: str, value: str) -> None:
    dotenv.write_text(f"# comment\n\n{line.replace('K=', 'ANTHROPIC_MODEL=')}\n")
    assert from_env({}, env_file=dotenv).claude_env == {"ANTHROPIC_MODEL": value}


def test_process_environment_wins_over_dotenv(dotenv: Path) -> None:
    dotenv.write_text("PORT=9100\nHOST=0.0.0.0\nANTHROPIC_API_KEY=from-file\nMAX_TURNS=4\n")
    config = from_env({"PORT": "9200", "ANTHROPIC_API_KEY": "from-process"}, env_file=dotenv)
    assert (config.port, config.host, config.max_turns) == (9200, "0.0.0.0", 4)
    # Overridden keys stay out of claude_env: the CLI inherits the process's own value.
    assert config.claude_env == {}


def test_flags_win_over_dotenv(dotenv: Path) -> None:
    dotenv.write_text("PORT=9100\n")
    assert from_env({}, "--port", "9300", env_file=dotenv).port == 9300
    assert from_env({}, "9400", env_file=dotenv).port == 9400


def test_missing_dotenv_is_not_an_error(tmp_path: Path) -> None:
    assert load(["--env-file", str(tmp_path / "nope")], {}).claude_env == {}


def test_dotenv_directory_is_ignored(tmp_path: Path) -> None:
    assert load(["--env-file", str(tmp_path)], {}).claude_env == {}


def test_dotenv_claude_cli_path_claude_means_bundled(dotenv: Path) -> None:
    dotenv.write_text("CLAUDE_CLI_PATH=claude\n")
    assert from_env({}, env_file=dotenv).cli_path is None


def test_config_is_frozen(no_dotenv: list[str]) -> None:
    config = load(no_dotenv, {})
    with pytest.raises(AttributeError):
        config.port = 1  # type: ignore[misc]


@pytest.mark.parametrize(
    ("environ", "field", "value"),
    [
        ({}, "tools_allowed", ("Read", "Glob", "Grep", "Write", "Edit", "NotebookEdit")),
        ({"CLAUDE_TOOLS_ALLOWED": "Read, Bash,Read"}, "tools_allowed", ("Read", "Bash")),
        ({"CLAUDE_TOOLS_ALLOWED": '["Read"]'}, "tools_allowed", ("Read",)),
        ({"CLAUDE_TOOLS_ALLOWED": "none"}, "tools_allowed", ()),
        ({}, "permission_mode", "default"),
        ({"CLAUDE_PERMISSION_MODE": "acceptEdits"}, "permission_mode", "acceptEdits"),
    ],
)
def test_claude_tools_policy(environ: dict[str, str], field: str, value: Any) -> None:
    assert getattr(from_env(environ), field) == value


@pytest.mark.parametrize(
    ("environ", "words"),
    [
        ({"CLAUDE_TOOLS_ALLOWED": "Read,Teleport"}, "unknown tool 'Teleport'"),
        # bypassPermissions would skip the gate that keeps file tools in the run's directory.
        ({"CLAUDE_PERMISSION_MODE": "bypassPermissions"}, "expected default or acceptEdits"),
    ],
)
def test_claude_tools_policy_refused(environ: dict[str, str], words: str) -> None:
    with pytest.raises(ConfigError, match=words):
        from_env(environ)


async def test_the_suite_s_servers_run_the_defaults(make_config: Any) -> None:
    # The fixtures change only what a test process needs (a free port, its own dirs, an
    # offline CLI, a quick stop), so the suite tests what production runs; a test about
    # another setting sets it itself (session_auto_continue=False, with its reason).
    defaults, suite = Config(), make_config()
    differ = {
        f.name for f in attrs.fields(Config) if getattr(defaults, f.name) != getattr(suite, f.name)
    }
    assert differ == {"port", "workdir", "state_dir", "claude_env", "shutdown_grace"}
