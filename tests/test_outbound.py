"""The outbound policy: which hosts respd reaches for users, checked on the addresses it really connects to."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx
import pytest
from aiohttp import web

from respd.config import ConfigError, load_settings
from respd.outbound import OutboundPolicy, OutboundRefused, Pattern, refusal


@pytest.mark.parametrize(
    "host",
    ["127.0.0.1", "10.1.2.3", "172.16.0.1", "192.168.1.1", "169.254.169.254", "100.64.0.1", "0.0.0.0",
     "::1", "fe80::1", "fd00::1", "::ffff:127.0.0.1", "224.0.0.1"],
)  # fmt: skip
def test_internal_addresses_are_refused_by_default(host: str) -> None:
    url = f"http://[{host}]:8080/" if ":" in host else f"http://{host}:8080/"
    with pytest.raises(OutboundRefused, match="not allowed"):
        OutboundPolicy().check_url(url)


def test_public_addresses_and_names_pass_the_url_check() -> None:
    policy = OutboundPolicy()
    assert policy.check_url("https://8.8.8.8/x") == ("8.8.8.8", 443)
    assert policy.check_url("http://example.com:8080/mcp") == ("example.com", 8080)


@pytest.mark.parametrize("url", ["file:///etc/passwd", "gopher://x/", "http:///nohost", "http://[::1/", "ftp://a/"])
def test_only_http_urls_with_a_host(url: str) -> None:
    with pytest.raises(OutboundRefused, match="Invalid URL"):
        OutboundPolicy().check_url(url)


def test_allow_patterns_match_host_and_port() -> None:
    policy = OutboundPolicy(allow=("127.0.0.1:*", "*.corp.example", "10.0.0.5:8443", "[::1]:9000"))
    assert policy.check_url("http://127.0.0.1:5432/") == ("127.0.0.1", 5432)
    assert policy.check_url("https://10.0.0.5:8443/") == ("10.0.0.5", 8443)
    assert policy.check_url("http://[::1]:9000/") == ("::1", 9000)
    for refused in ("https://10.0.0.5:8444/", "http://[::1]:9001/", "http://127.0.0.2/"):
        with pytest.raises(OutboundRefused):
            policy.check_url(refused)


def test_public_false_narrows_to_the_list() -> None:
    policy = OutboundPolicy(allow=("api.example.com",), public=False)
    assert policy.check_url("https://api.example.com/") == ("api.example.com", 443)
    for refused in ("https://8.8.8.8/", "https://other.example.com/"):
        with pytest.raises(OutboundRefused, match="not in outbound_allow"):
            policy.check_url(refused)


@pytest.mark.parametrize("bad", ["", "a b", "host:port", "[::1", "http://x", "h:1:2:x"])
def test_bad_patterns_are_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="outbound pattern"):
        Pattern.parse(bad)


def test_resolve_checks_every_address_of_a_name() -> None:
    async def main() -> None:
        with pytest.raises(OutboundRefused, match=r"localhost \(127\.0\.0\.1\)"):
            await OutboundPolicy().resolve("localhost", 80)
        assert "127.0.0.1" in await OutboundPolicy(allow=("localhost",)).resolve("localhost", 80)
        assert await OutboundPolicy(allow=("127.0.0.1:80",)).resolve("localhost", 80) == ["127.0.0.1"]
        with pytest.raises(OutboundRefused, match="Cannot resolve"):
            await OutboundPolicy().resolve("no-such-host.invalid", 80)

    asyncio.run(main())


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


async def _serve(handler: Handler) -> tuple[web.AppRunner, int]:
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    return runner, port


def test_guarded_client_refuses_loopback_until_it_is_listed() -> None:
    async def main() -> None:
        async def ok(request: web.Request) -> web.Response:
            return web.Response(text="reached")

        runner, port = await _serve(ok)
        try:
            async with OutboundPolicy().httpx_client() as client:
                with pytest.raises(httpx.ConnectError) as caught:
                    await client.get(f"http://127.0.0.1:{port}/")
                found = refusal(caught.value)
                assert found is not None and "127.0.0.1" in found.message
                with pytest.raises(httpx.ConnectError):  # a name is checked on what it resolves to
                    await client.get(f"http://localhost:{port}/")
            async with OutboundPolicy(allow=(f"127.0.0.1:{port}",)).httpx_client() as client:
                assert (await client.get(f"http://localhost:{port}/")).text == "reached"
        finally:
            await runner.cleanup()

    asyncio.run(main())


def test_a_redirect_to_an_unlisted_address_is_refused() -> None:
    async def main() -> None:
        async def target(request: web.Request) -> web.Response:
            return web.Response(text="should not be reached")

        inner, inner_port = await _serve(target)

        async def redirect(request: web.Request) -> web.Response:
            raise web.HTTPFound(f"http://127.0.0.1:{inner_port}/secret")

        outer, outer_port = await _serve(redirect)
        try:
            policy = OutboundPolicy(allow=(f"127.0.0.1:{outer_port}",))
            async with policy.httpx_client(follow_redirects=True) as client:
                with pytest.raises(httpx.ConnectError) as caught:
                    await client.get(f"http://127.0.0.1:{outer_port}/")
                assert refusal(caught.value) is not None
        finally:
            await outer.cleanup()
            await inner.cleanup()

    asyncio.run(main())


def test_settings_read_the_policy_from_file_and_environment(tmp_path: Path) -> None:
    cfg = tmp_path / "respd.toml"
    cfg.write_text('outbound_allow = ["127.0.0.1:*", "*.corp.example"]\noutbound_public = false\n')
    s = load_settings(str(cfg), env={"RESPD_OUTBOUND_ALLOW": "10.0.0.1:443, 127.0.0.1:*"})
    assert s.outbound.allow == ("127.0.0.1:*", "*.corp.example", "10.0.0.1:443")
    assert s.outbound.public is False
    assert load_settings(env={}).outbound == OutboundPolicy()
    cfg.write_text('outbound_allow = ["http://x"]\n')
    with pytest.raises(ConfigError, match="outbound_allow"):
        load_settings(str(cfg), env={})
    cfg.write_text('outbound_allow = "127.0.0.1"\n')
    with pytest.raises(ConfigError, match="outbound_allow"):
        load_settings(str(cfg), env={})
