#!/usr/bin/env python3
"""X-Twilio-Signature vectors computed by Twilio's own helper library, twilio-python.

The project's tests and simulator sign WebSocket upgrades with voxbridge's own `sign_websocket`,
so a wrong canonical URL would be mirrored on both sides. These vectors come from an
independent implementation: `twilio.request_validator.RequestValidator` of twilio-python
9.13.0 (pinned below). `crates/twilio/tests/twilio_python_vectors.rs` checks that voxbridge's
signer produces every signature and that its validator accepts (and rejects) the same URLs as
twilio-python; `crates/media/tests/bridge.rs` opens real upgrades with the `bridge` vectors.

Rerun (from the repository root; writes twilio_python_vectors.json beside this script):

    python3 -m venv /tmp/twvenv && /tmp/twvenv/bin/pip install twilio==9.13.0
    /tmp/twvenv/bin/python crates/twilio/tests/data/gen_twilio_python_vectors.py

What each vector holds:
- `signature`: `RequestValidator.compute_signature(signed_url, params)`, the header Twilio
  sends when it requests `signed_url` (for `json`, `signed_url` carries `bodySHA256`).
- `accepts`: URLs the server may see (the signed URL, without its port, with the default port)
  for which `RequestValidator.validate` returns True.
- `rejects`: URLs that differ in what the signature covers (another port, path, host, query or
  scheme) for which `validate` returns False.
- `websocket` vectors also list `server_urls`: the `https://` (or `http://` for `ws://`) form a
  server behind a TLS proxy sees and the trailing-`/` form (Twilio's security page: for WSS handshakes "try appending a
  trailing /"). twilio-python does not rewrite schemes, so these are voxbridge's documented
  tolerances on top of a twilio-python signature over the `wss://` URL.

twilio-python's `add_port` adds `:80` to any scheme but `https`, `wss` included, so for a
`wss://` URL it never tries `:443`; voxbridge tries `:443` for `wss` (the port Twilio connects
to). The candidate URLs below therefore never add `:443` to a `wss://` URL.
"""

import json
import pathlib
import sys
from urllib.parse import urlparse, urlunparse

import twilio
from twilio.request_validator import RequestValidator

TWILIO_VERSION = "9.13.0"
# The auth token of crates/media/tests/common/mod.rs (AUTH_TOKEN), so bridge tests can use it.
TOKEN = "12345678901234567890123456789012"
OUT = pathlib.Path(__file__).with_name("twilio_python_vectors.json")

VALIDATOR = RequestValidator(TOKEN)


class Pairs:
    """Form parameters as received, repeated names kept: twilio-python reads them through
    `getall` (the Flask MultiDict interface)."""

    def __init__(self, pairs):
        self.pairs = pairs

    def __iter__(self):
        return iter([name for name, _ in self.pairs])

    def __bool__(self):
        return bool(self.pairs)

    def getall(self, name):
        return [value for key, value in self.pairs if key == name]


CALL_PARAMS = [
    ("AccountSid", "AC00000000000000000000000000000000"),
    ("ApiVersion", "2010-04-01"),
    ("CallSid", "CA11111111111111111111111111111111"),
    ("CallStatus", "ringing"),
    ("Called", "+15005550006"),
    ("Caller", "+14155550100"),
    ("Direction", "inbound"),
    ("From", "+14155550100"),
    ("To", "+15005550006"),
]


def with_netloc(url, netloc):
    return urlunparse(urlparse(url)._replace(netloc=netloc))


def host_of(url):
    parsed = urlparse(url)
    return parsed.netloc.rsplit(":", 1)[0] if parsed.port else parsed.netloc


def candidates(url):
    """The signed URL, without its port, with the default port (never :443 on wss), and, when
    Twilio signed no port, with the port a server behind a proxy may see (Twilio drops the port
    of HTTPS voice callbacks before signing)."""
    parsed = urlparse(url)
    host = host_of(url)
    out = [url, with_netloc(url, host)]
    if not parsed.port:
        out.append(with_netloc(url, f"{host}:8443"))
    if parsed.scheme in ("https", "http"):
        default = "443" if parsed.scheme == "https" else "80"
        out.append(with_netloc(url, f"{host}:{default}"))
    return list(dict.fromkeys(out))


def wrong_urls(url):
    """URLs that differ from `url` in a part the signature covers. Another port counts only
    when the signed URL has one: a validator also tries the URL it sees without its port."""
    parsed = urlparse(url)
    host = host_of(url)
    other_scheme = {"https": "http", "http": "https", "wss": "ws", "ws": "wss"}[parsed.scheme]
    query_sep = "&" if parsed.query else "?"
    out = [
        with_netloc(url, "evil.example.com" + (f":{parsed.port}" if parsed.port else "")),
        urlunparse(parsed._replace(path=parsed.path + "x")),
        url.split("#")[0] + f"{query_sep}extra=1",
        urlunparse(parsed._replace(scheme=other_scheme)),
    ]
    if parsed.port:
        out.append(with_netloc(url, f"{host}:{parsed.port + 1}"))
    return list(dict.fromkeys(out))


def check_accepts_rejects(url, params, signature):
    accepts = [u for u in candidates(url) if VALIDATOR.validate(u, params, signature)]
    assert url in accepts, f"twilio-python rejects its own signature over {url}"
    rejects = wrong_urls(url)
    for wrong in rejects:
        assert not VALIDATOR.validate(wrong, params, signature), f"accepts {wrong} for {url}"
    return accepts, rejects


def toggle_slash(url):
    parsed = urlparse(url)
    path = parsed.path[:-1] if parsed.path.endswith("/") else parsed.path + "/"
    return urlunparse(parsed._replace(path=path))


def websocket(name, signed_url):
    signature = VALIDATOR.compute_signature(signed_url, {})
    accepts, rejects = check_accepts_rejects(signed_url, {}, signature)
    scheme, rest = signed_url.split("://", 1)
    https = {"wss": "https", "ws": "http"}[scheme] + "://" + rest
    return {
        "name": name,
        "kind": "websocket",
        "signed_url": signed_url,
        "signature": signature,
        "accepts": accepts,
        "rejects": rejects,
        "server_urls": [https, toggle_slash(https), toggle_slash(signed_url)],
    }


def form(name, signed_url, params):
    multi = Pairs(params)
    signature = VALIDATOR.compute_signature(signed_url, multi)
    accepts, rejects = check_accepts_rejects(signed_url, multi, signature)
    return {
        "name": name,
        "kind": "form",
        "signed_url": signed_url,
        "params": [list(pair) for pair in params],
        "signature": signature,
        "accepts": accepts,
        "rejects": rejects,
    }


def json_webhook(name, url, body):
    body_hash = VALIDATOR.compute_hash(body)
    separator = "&" if "?" in url else "?"
    signed_url = f"{url}{separator}bodySHA256={body_hash}"
    signature = VALIDATOR.compute_signature(signed_url, {})
    accepts, rejects = check_accepts_rejects(signed_url, body, signature)
    tampered = body.replace("1", "2") if "1" in body else body + " "
    assert not VALIDATOR.validate(signed_url, tampered, signature), "tampered body accepted"
    return {
        "name": name,
        "kind": "json",
        "url": url,
        "body": body,
        "body_sha256": body_hash,
        "signed_url": signed_url,
        "signature": signature,
        "accepts": accepts,
        "rejects": rejects,
        "tampered_body": tampered,
    }


def bridge(name, public_url, path_and_query):
    """An upgrade the media bridge must accept when configured with `public_url`."""
    signed_url = public_url.rstrip("/") + path_and_query
    signature = VALIDATOR.compute_signature(signed_url, {})
    assert VALIDATOR.validate(signed_url, {}, signature)
    return {
        "name": name,
        "public_url": public_url,
        "path_and_query": path_and_query,
        "signed_url": signed_url,
        "signature": signature,
    }


def main():
    if twilio.__version__ != TWILIO_VERSION:
        sys.exit(f"twilio {twilio.__version__} installed; pin is {TWILIO_VERSION}")
    vectors = [
        websocket("media stream", "wss://voice.example.com/media"),
        websocket("media stream, trailing slash", "wss://voice.example.com/media/"),
        websocket("relay with query", "wss://voice.example.com/relay?agent=support&lang=en-US"),
        websocket("custom port", "wss://voice.example.com:8443/media"),
        websocket("custom port and query", "wss://voice.example.com:8443/relay?tenant=acme"),
        websocket("path prefix", "wss://edge.example.com/twilio/voice/media"),
        websocket("percent-encoded query", "wss://voice.example.com/relay?name=J%C3%BCrgen%20O"),
        websocket("plain ws with port", "ws://127.0.0.1:8080/media"),
        form("voice webhook", "https://voice.example.com/voice", CALL_PARAMS),
        form(
            "voice webhook with query",
            "https://voice.example.com/voice?agent=screening&x=1",
            CALL_PARAMS,
        ),
        form("http with port", "http://voice.example.com:8080/voice", CALL_PARAMS),
        form("https with port", "https://voice.example.com:8443/status", CALL_PARAMS),
        form("no params", "https://voice.example.com/voice", []),
        form(
            "repeated names and unicode",
            "https://voice.example.com/sms",
            [
                ("Body", "Grüße ☎ It's +1 & more"),
                ("MediaUrl", "https://b.example.com/2"),
                ("MediaUrl", "https://a.example.com/1"),
                ("MediaUrl", "https://a.example.com/1"),
                ("NumMedia", "2"),
            ],
        ),
        json_webhook(
            "json event",
            "https://voice.example.com/events",
            '{"event":"call.completed","callSid":"CA11111111111111111111111111111111","duration":17}',
        ),
        json_webhook(
            "json with query and port",
            "https://voice.example.com:8443/events?source=twilio",
            '{"a": [1, 2, 3], "b": "caf\u00e9"}',
        ),
        json_webhook("empty json", "https://voice.example.com/events", "{}"),
    ]
    bridges = [
        bridge("default", "wss://voice.example.com", "/media"),
        bridge("port", "wss://voice.example.com:8443", "/media"),
        bridge("query", "wss://voice.example.com", "/media?tenant=acme&lang=en-US"),
        bridge("https base with port and query", "https://voice.example.com:8443", "/media?x=1"),
        bridge("path prefix", "wss://edge.example.com/twilio/", "/media"),
    ]
    # The bridge signs over wss://: rewrite an https:// public URL as Twilio would request it.
    for entry in bridges:
        if entry["signed_url"].startswith("https://"):
            entry["signed_url"] = "wss://" + entry["signed_url"].removeprefix("https://")
            entry["signature"] = VALIDATOR.compute_signature(entry["signed_url"], {})
    document = {
        "generator": "crates/twilio/tests/data/gen_twilio_python_vectors.py",
        "library": f"twilio-python {TWILIO_VERSION} (twilio.request_validator.RequestValidator)",
        "auth_token": TOKEN,
        "vectors": vectors,
        "bridge": bridges,
    }
    OUT.write_text(json.dumps(document, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"wrote {len(vectors)} vectors and {len(bridges)} bridge upgrades to {OUT}")


if __name__ == "__main__":
    main()
