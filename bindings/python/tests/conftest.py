"""Shared configs and helpers of the portcullis Python tests.

Every decision that depends on time is taken at an explicit ``now_ns``; no test sleeps to wait
for quota.
"""

from __future__ import annotations

import pytest

import portcullis

#: 2023-11-14T22:13:20Z, in Unix-epoch nanoseconds.
T0 = 1_700_000_000 * 1_000_000_000
MS = 1_000_000
SEC = 1_000_000_000

LIMITER_CONFIG = """\
[[policy]]
name = "api"
limit = "10/s"
burst = 3

[[policy]]
name = "export"
algorithm = "concurrency"
limit = 2
lease_timeout = "1m"

[[policy]]
name = "login"
algorithm = "fixed_window"
limit = "5/15m"
block = "15m"

[[policy]]
name = "shaped"
algorithm = "leaky_bucket"
limit = "10/s"
burst = 3
max_delay = "1s"

[cors]
allowed_origins = ["https://*.example.com"]
allowed_methods = ["PUT"]
"""

GATE_CONFIG = """\
header_style = "both"

[store]
kind = "memory"

[[policy]]
name = "login"
algorithm = "fixed_window"
limit = "5/15m"
block = "15m"

[[policy]]
name = "export"
algorithm = "concurrency"
limit = 1
lease_timeout = "1m"

[[route]]
match = "POST /login"
limits = [{ policy = "login", key = "ip" }]

[[route]]
match = "GET /export"
limits = [{ policy = "export", key = "principal" }]

[cors]
allowed_origins = ["https://app.example.com"]
allow_credentials = true
allowed_methods = ["POST"]
allowed_headers = ["Content-Type"]
"""


@pytest.fixture
def limiter():
    with portcullis.Limiter.from_config(LIMITER_CONFIG) as lim:
        yield lim


@pytest.fixture
def gate():
    with portcullis.Gate.from_config(GATE_CONFIG) as g:
        yield g


def sled_config(path, extra: str = "") -> str:
    """A config with a sled store at ``path`` (a TOML literal string: no escapes needed)."""
    return f"[store]\nkind = \"sled\"\npath = '{path}'\n{extra}"
