"""Rules for an LLM server's API key: where it may be sent, how it is named, how it is read.

The key lives only in the environment variable that `judge.api_key_env` names (or `synth.generator.api_key_env`,
`synth.auditor.api_key_env`: `section` names the params section in messages). It is sent only over https or
to a loopback server (127.0.0.0/8, ::1, localhost), unless `allow_insecure_http` opts in to plain http to
another host. A loopback server is reached directly, never through a proxy from HTTP_PROXY / HTTPS_PROXY /
ALL_PROXY (which would receive the key in clear, or forward it elsewhere); to a remote https server a proxy only
tunnels the encrypted connection (CONNECT). A base_url may hold neither credentials (`user:pw@`) nor a query
string or fragment (`?api_key=...`): both would land in params.yaml, dvc.lock and the judge's identity. No message
built here ever contains the key, or a value that looks like one.
"""

from __future__ import annotations

import ipaddress
import os
import re
import sys
import urllib.parse
import urllib.request

from instruct_tune.errors import UserError

DUMMY_API_KEY = "sk-no-key-required"  # local servers (llama.cpp, Ollama, vLLM) accept any key

_ENV_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_MAX_ENV_NAME = 64
# Prefixes of keys that are also valid variable names (`gsk_...`, `hf_...`): a pasted key, not a name.
_KEY_PREFIXES = ("sk_", "gsk_", "hf_", "ghp_", "gho_", "github_pat_", "glpat_", "xai_", "pk_", "rk_", "AIza")


def is_loopback(host: str) -> bool:
    """True for localhost, 127.0.0.0/8 and ::1 (also written as an IPv4-mapped IPv6 address)."""
    host = host.strip("[]").lower().rstrip(".")
    if host == "localhost":
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_loopback


def display_url(base_url: str) -> str:
    """The URL as it may appear in a message: without user:password@, query or fragment."""
    try:
        parts = urllib.parse.urlsplit(base_url)
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "(an unparsable URL)"
    if ":" in host:
        host = f"[{host}]"
    return f"{parts.scheme}://{host}{port}{parts.path}"


def check_endpoint(base_url: str, allow_insecure_http: bool, section: str = "judge") -> None:
    """Refuse a `<section>.base_url` that would expose the key: not http(s), credentials in it, or plain http to a
    host that is not loopback (unless `allow_insecure_http`). Called before any request is made."""
    try:
        parts = urllib.parse.urlsplit(base_url)
        host = parts.hostname
        parts.port  # noqa: B018 (raises ValueError on a bad port)
    except ValueError as exc:
        raise UserError(f"params.yaml: {section}.base_url: not a valid URL ({exc})") from None
    if parts.scheme not in ("http", "https") or not host:
        raise UserError(f"params.yaml: {section}.base_url: expected an http:// or https:// URL with a host, "
                        f"got {display_url(base_url)!r}")
    if parts.username is not None or parts.password is not None:
        # The URL lands in params.yaml and dvc.lock: credentials in it are already exposed. Not echoed here.
        raise UserError(f"params.yaml: {section}.base_url must not contain credentials (user:password@); put the "
                        f"key in the environment variable named by {section}.api_key_env, and revoke the one in the "
                        f"URL")
    if "?" in base_url or "#" in base_url:  # even an empty `?` or `#`: nothing belongs there
        # `?api_key=sk-...`: as exposed as user:password@, and sent to every proxy and log on the way. Not echoed.
        raise UserError(f"params.yaml: {section}.base_url must not contain a query string or fragment (?... or #...); "
                        f"put the key in the environment variable named by {section}.api_key_env, and revoke any "
                        f"key that was in the URL")
    if parts.scheme == "https" or is_loopback(host):
        return
    if not allow_insecure_http:
        raise UserError(
            f"params.yaml: {section}.base_url: {display_url(base_url)} is plain http to {host}, which is not a "
            f"loopback address: the API key would cross the network unencrypted. Use https, a server on localhost, "
            f"or set {section}.allow_insecure_http: true if the network between you and {host} is trusted"
        )
    proxies = urllib.request.getproxies()
    proxy = proxies.get("http") or proxies.get("all")
    via = ""
    if proxy and not urllib.request.proxy_bypass(host):
        via = f", through the proxy {display_url(proxy if '://' in proxy else 'http://' + proxy)}, which sees it too"
    print(f"{section}: warning: sending the API key over plain http to {host}{via} ({section}.allow_insecure_http "
          f"is true)", file=sys.stderr)


def uses_env_proxies(base_url: str) -> bool:
    """Whether the HTTP client may take proxies (and .netrc) from the environment for `base_url`: never for a
    loopback server, which is reached directly so that no proxy sees its requests and their key."""
    return not is_loopback(urllib.parse.urlsplit(base_url).hostname or "")


def looks_like_key(value: str) -> bool:
    """A value that is a secret rather than a variable name: a known key prefix, or a long random-looking part."""
    if value.startswith(_KEY_PREFIXES):
        return True
    # Variable names are words (OPENAI_API_KEY, JUDGE_KEY_2); keys are long runs of mixed letters and digits.
    return any(len(part) >= 16 and any(c.isdigit() for c in part) for part in value.split("_"))


def check_env_name(name: str, section: str = "judge") -> None:
    """`<section>.api_key_env` must be the NAME of an environment variable; the error never repeats the value."""
    if _ENV_NAME_RE.fullmatch(name) and len(name) <= _MAX_ENV_NAME and not looks_like_key(name):
        return
    if looks_like_key(name) or len(name) >= 20 and not _ENV_NAME_RE.fullmatch(name):
        raise UserError(
            f"params.yaml: {section}.api_key_env must be the NAME of an environment variable (such as OPENAI_API_KEY), "
            f"but its value ({len(name)} characters, not shown) looks like a key itself. Remove it from params.yaml "
            f"(and from dvc.lock and git history if committed), revoke it, and export it instead: "
            f"export OPENAI_API_KEY=..."
        )
    raise UserError(
        f"params.yaml: {section}.api_key_env must be the NAME of an environment variable: letters, digits and _, not "
        f"starting with a digit, at most {_MAX_ENV_NAME} characters (such as OPENAI_API_KEY); the value given "
        f"({len(name)} characters, not shown) is not one"
    )


def resolve_api_key(env_name: str, base_url: str, section: str = "judge") -> str:
    """The key from the environment; a dummy key for a loopback server without one; otherwise an error."""
    check_env_name(env_name, section)
    key = os.environ.get(env_name, "").strip()
    if key:
        if any(c.isspace() or not c.isprintable() for c in key):
            # An HTTP library would reject it with an error that quotes the header, key included.
            raise UserError(f"the environment variable {env_name} holds a key with whitespace or control characters "
                            f"inside; set it to the key alone")
        return key
    host = urllib.parse.urlsplit(base_url).hostname or ""
    if is_loopback(host):
        return DUMMY_API_KEY
    raise UserError(
        f"the environment variable {env_name} (named by {section}.api_key_env) is not set, and the {section} server "
        f"{display_url(base_url)} is not on this machine, so it needs a key: export {env_name}=..."
    )


def redact(text: str, key: str) -> str:
    """`text` with the key, and any word sharing 8 or more consecutive characters with it, replaced."""
    if not key or key == DUMMY_API_KEY:
        return text
    text = text.replace(key, "[redacted]")
    pieces = {key[i : i + 8] for i in range(max(0, len(key) - 7))}
    words = re.split(r"(\s+)", text)
    return "".join("[redacted]" if any(p in w for p in pieces) else w for w in words)
