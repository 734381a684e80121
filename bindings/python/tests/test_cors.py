"""The CORS engine alone."""

from __future__ import annotations

import pytest

import portcullis
from portcullis import CorsKind
from conftest import LIMITER_CONFIG


@pytest.fixture
def cors():
    with portcullis.Cors.from_config(LIMITER_CONFIG) as c:
        yield c


def test_allowed_preflight(cors):
    d = cors.decide("OPTIONS", origin="https://app.example.com", request_method="PUT")
    assert d.kind is CorsKind.PREFLIGHT
    assert d.allowed and d.status == 204
    assert d.reason == ""
    assert d.header("Access-Control-Allow-Methods") == "PUT"
    assert d.header("access-control-allow-origin") == "https://app.example.com"
    # The CORS engine's header names are in lower case.
    assert all(n == n.lower() for n, _ in d.headers)


def test_look_alike_origin_is_refused_with_a_reason(cors):
    d = cors.decide("OPTIONS", origin="https://evil-example.com", request_method="PUT")
    assert not d.allowed and d.status == 403
    assert "evil-example.com" in d.reason
    assert [n for n, _ in d.headers] == ["vary"]  # only Vary


def test_refused_method_and_headers(cors):
    d = cors.decide("OPTIONS", origin="https://app.example.com", request_method="DELETE")
    assert not d.allowed and "DELETE" in d.reason
    d = cors.decide("OPTIONS", origin="https://app.example.com", request_method="PUT",
                    request_headers=["X-Secret", "Content-Type"])
    assert not d.allowed and "x-secret" in d.reason.lower()


def test_actual_and_not_cors_requests(cors):
    d = cors.decide("PUT", origin="https://app.example.com")
    assert d.kind is CorsKind.ACTUAL and d.allowed and d.status == 0
    assert d.header("Access-Control-Allow-Origin") == "https://app.example.com"
    d = cors.decide("GET")
    assert d.kind is CorsKind.NOT_CORS and d.allowed and d.status == 0


def test_a_config_without_cors_is_refused():
    with pytest.raises(portcullis.CorsPolicyError) as e:
        portcullis.Cors.from_config('[[policy]]\nname = "api"\nlimit = "10/s"\n')
    assert "no [cors] table" in str(e.value)
    assert isinstance(e.value, portcullis.ConfigError)


def test_an_insecure_policy_is_refused():
    with pytest.raises(portcullis.ConfigError) as e:
        portcullis.Cors.from_config('[cors]\nallowed_origins = ["*"]\nallow_credentials = true\n')
    assert e.value.code == 200
    assert e.value.name == "PORTCULLIS_RESULT_INVALID_CONFIG"
    assert str(e.value).startswith("2:20: cors.allow_credentials")


def test_from_file_prefixes_errors_with_the_path(tmp_path):
    good = tmp_path / "cors.toml"
    good.write_text(LIMITER_CONFIG)
    with portcullis.Cors.from_file(good) as c:
        assert c.decide("GET", origin="https://a.example.com").allowed
    bad = tmp_path / "bad.toml"
    bad.write_text("[cors]\nallowed_origins = 3\n")
    with pytest.raises(portcullis.ConfigError) as e:
        portcullis.Cors.from_file(bad)
    assert str(bad) in str(e.value)
