"""Client API keys, and which Claude authentication the server would use.

Rules kept here:
- A presented key is compared with every configured key by ``hmac.compare_digest``, all
  of them every time, so neither the match nor its position leaks through timing.
- ``Authorization: Bearer <key>`` and ``x-api-key: <key>`` are both accepted.
- Nothing here returns, logs or puts in an error the value of a key, token or secret:
  the status report names the variables it found, never what they hold.
- A run's CLI never sees the server's login file: each run has a CLAUDE_CONFIG_DIR of its
  own (wrapper.places). When the environment carries no credentials, the login's access
  token is read for each run (so a refresh by ``claude`` on this account is picked up) and
  passed as ``CLAUDE_CODE_OAUTH_TOKEN`` (``cli_credentials``). A login's token expires;
  ``claude setup-token`` makes a long-lived one for ``CLAUDE_CODE_OAUTH_TOKEN``.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from wrapper.errors import InvalidApiKey


def presented_key(authorization: str | None, x_api_key: str | None) -> str | None:
    if authorization is not None:
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            return token.strip()
    return x_api_key.strip() if x_api_key else None


def check_key(keys: tuple[str, ...], authorization: str | None, x_api_key: str | None) -> str:
    """Return the matching configured key; raise ``InvalidApiKey`` otherwise."""
    given = presented_key(authorization, x_api_key)
    if given is None:
        raise InvalidApiKey(
            "Missing API key: send 'Authorization: Bearer <key>' or 'x-api-key: <key>'."
        )
    given_bytes = given.encode()
    match = None
    for key in keys:
        if hmac.compare_digest(key.encode(), given_bytes):
            match = key
    if match is None:
        raise InvalidApiKey("Incorrect API key provided.")
    return match


def _truthy(value: str | None) -> bool:
    return (value or "").lower() in ("1", "true", "yes", "on")


def claude_auth_status(env: Mapping[str, str], config_dir: Path) -> dict[str, Any]:
    """Which Claude authentication the CLI would use with ``env``, and whether it is set up.

    The CLI's own order: Bedrock, then Vertex, when switched on; then an API key or an
    OAuth token from the environment; then the ``claude`` login stored in ``config_dir``.
    """

    def present(*names: str) -> list[str]:
        return [n for n in names if env.get(n)]

    if _truthy(env.get("CLAUDE_CODE_USE_BEDROCK")):
        credentials = present(
            "AWS_ACCESS_KEY_ID",
            "AWS_SECRET_ACCESS_KEY",
            "AWS_SESSION_TOKEN",
            "AWS_PROFILE",
            "AWS_BEARER_TOKEN_BEDROCK",
        )
        region = present("AWS_REGION", "AWS_DEFAULT_REGION")
        missing = [] if region else ["AWS_REGION"]
        has_keys = {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"} <= set(credentials)
        if not (has_keys or {"AWS_PROFILE", "AWS_BEARER_TOKEN_BEDROCK"} & set(credentials)):
            missing.append(
                "AWS credentials (AWS_ACCESS_KEY_ID + AWS_SECRET_ACCESS_KEY or AWS_PROFILE)"
            )
        return _status("bedrock", missing, ["CLAUDE_CODE_USE_BEDROCK", *region, *credentials])
    if _truthy(env.get("CLAUDE_CODE_USE_VERTEX")):
        found = present(
            "CLOUD_ML_REGION", "ANTHROPIC_VERTEX_PROJECT_ID", "GOOGLE_APPLICATION_CREDENTIALS"
        )
        missing = [n for n in ("CLOUD_ML_REGION", "ANTHROPIC_VERTEX_PROJECT_ID") if n not in found]
        return _status("vertex", missing, ["CLAUDE_CODE_USE_VERTEX", *found])
    if env.get("ANTHROPIC_API_KEY"):
        return _status("anthropic_api_key", [], present("ANTHROPIC_API_KEY", "ANTHROPIC_BASE_URL"))
    if env.get("CLAUDE_CODE_OAUTH_TOKEN"):
        return _status("claude_code_oauth_token", [], ["CLAUDE_CODE_OAUTH_TOKEN"])
    login = (config_dir / ".credentials.json").is_file()
    return _status(
        "claude_cli_login",
        [] if login else [f"a 'claude' login ({config_dir}/.credentials.json)"],
        [],
    )


# Any of these in the CLI's environment is a complete way to authenticate.
ENV_CREDENTIALS = (
    "ANTHROPIC_API_KEY",
    "ANTHROPIC_AUTH_TOKEN",
    "CLAUDE_CODE_OAUTH_TOKEN",
    "CLAUDE_CODE_USE_BEDROCK",
    "CLAUDE_CODE_USE_VERTEX",
)


def cli_credentials(env: Mapping[str, str], config_dir: Path) -> dict[str, str]:
    """What a run's environment must add to authenticate: nothing when ``env`` has
    credentials, else the login's access token. Blocking (reads a file)."""
    if any(env.get(name) for name in ENV_CREDENTIALS):
        return {}
    try:
        login = json.loads((config_dir / ".credentials.json").read_text())
        token = login["claudeAiOauth"]["accessToken"]
    except (OSError, ValueError, KeyError, TypeError):
        return {}  # the CLI reports "not logged in", mapped to claude_not_authenticated
    return {"CLAUDE_CODE_OAUTH_TOKEN": token} if isinstance(token, str) and token else {}


def _status(method: str, missing: list[str], found: list[str]) -> dict[str, Any]:
    return {"method": method, "ready": not missing, "missing": missing, "env_vars_found": found}
