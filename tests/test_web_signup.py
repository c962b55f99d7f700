"""Signup that tells nothing and cannot be abused: uniform answers, queued confirmations,
limits in the store (several processes, forwarded headers), pruning, names that relay
nothing."""

import asyncio
import email
import email.policy
import logging
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner

from newsletter.cli import cli
from newsletter.config import load_settings
from newsletter.store import Store
from newsletter.tokens import FORM, UNSUBSCRIBE
from tests.conftest import REPO, free_port
from tests.pg import both_stores
from tests.test_web import TOKENS, add, post, signup, status, wait_outbox


def configure(site: Path, web: str = "", extra: str = "") -> None:
    """Add keys to the test site's `[web]` table (the last one) and more tables after it."""
    config = site / "newsletter.toml"
    config.write_text(config.read_text(encoding="utf-8") + web + "\n" + extra,
                      encoding="utf-8")


@pytest.fixture
def smtp_site(web_site: Any, smtp_server: Any) -> Iterator[tuple[Path, Any]]:
    """The web test site delivering to a real SMTP server on loopback."""
    site, _ = web_site
    handler, port = smtp_server
    configure(site, "signups_per_network = 100000\n",
              f'[smtp]\nhost = "127.0.0.1"\nport = {port}\ntls = "none"\ntimeout = 2\n')
    yield site, handler


def mails_to(handler: Any, address: str, count: int, seconds: float = 10.0) -> list[Any]:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        found = [raw for rcpt, raw in handler.messages if rcpt == address]
        if len(found) >= count:
            break
        time.sleep(0.02)
    time.sleep(0.3)  # and nothing more arrives
    return [email.message_from_bytes(raw, policy=email.policy.default)
            for rcpt, raw in handler.messages if rcpt == address]


def test_same_answer_and_timing_whatever_the_address(smtp_site: Any, web_server: str) -> None:
    site, handler = smtp_site
    add(site, "known@example.com")
    add(site, "left@example.com", status="unsubscribed")
    assert signup(web_server, "pending@example.com").status_code == 200
    times: dict[str, list[float]] = {"known": [], "new": [], "pending": [], "unsubscribed": []}
    bodies: set[tuple[int, str]] = set()
    addresses = {"known": "known@example.com", "pending": "pending@example.com",
                 "unsubscribed": "left@example.com"}
    form = {"form_token": TOKENS.make(FORM, 0), "categories": "models"}
    with httpx.Client(headers={"origin": web_server}) as client:
        for n in range(5):  # warm up every path
            client.post(f"{web_server}/subscribe", data={**form, "email": f"warm{n}@example.com"})
        order = list(times)
        for round_ in range(40):
            order = order[1:] + order[:1]  # interleaved, each kind in every position
            for kind in order:
                address = addresses.get(kind, f"new{round_}@example.com")
                started = time.perf_counter()
                response = client.post(f"{web_server}/subscribe",
                                       data={**form, "email": address})
                times[kind].append(time.perf_counter() - started)
                # the page repeats the address typed in, whatever its state: leave that out
                bodies.add((response.status_code, response.text.replace(address, "ADDRESS")))
                time.sleep(0.02)  # people are not back to back: the queued mail goes out
    assert len(bodies) == 1 and next(iter(bodies))[0] == 200
    medians = {kind: statistics.median(values) * 1000 for kind, values in times.items()}
    print("\nmedian ms:", {k: round(v, 2) for k, v in medians.items()})
    assert max(medians.values()) - min(medians.values()) < 5.0, medians
    assert len(mails_to(handler, "new39@example.com", 1)) == 1  # sent after the answers
    assert mails_to(handler, "known@example.com", 0) == []
    assert len(mails_to(handler, "pending@example.com", 3)) == 3  # 3 a day, then no more
    assert len(mails_to(handler, "left@example.com", 3)) == 3


def test_smtp_down_gives_the_same_answer_and_a_logged_outcome(
        web_site: Any, caplog: pytest.LogCaptureFixture) -> None:
    site, _ = web_site
    configure(site, "", f'[smtp]\nhost = "127.0.0.1"\nport = {free_port()}\ntls = "none"\n'
              "timeout = 1\n")
    add(site, "known@example.com")
    from tests.test_web_safety import serving

    caplog.set_level(logging.INFO, logger="newsletter.web")
    with serving(site, "test-secret-key") as base:
        new = signup(base, "new@example.com")
        known = signup(base, "known@example.com")
        deadline = time.monotonic() + 10
        while "retry later" not in caplog.text and time.monotonic() < deadline:
            time.sleep(0.05)
    assert new.status_code == known.status_code == 200
    assert new.text.replace("new@example.com", "A") == known.text.replace("known@example.com",
                                                                          "A")
    assert "confirmation email for signup 1 (attempt 1): retry later: " in caplog.text


@both_stores
def test_resignup_after_unsubscribing_needs_a_fresh_confirmation(web_site: Any,
                                                                 web_server: str) -> None:
    site, _ = web_site
    assert signup(web_server, "back@example.com", "Bea").status_code == 200
    (first,) = wait_outbox(site, 1)
    old_link = first.get_body(("plain",)).get_content().split("/confirm/")[1].split()[0]  # type: ignore[union-attr]
    assert post(f"{web_server}/confirm/{old_link}").status_code == 200
    sub = status(site, "back@example.com")
    unsubscribe = f"{web_server}/unsubscribe/{TOKENS.make(UNSUBSCRIBE, sub.id)}"
    time.sleep(1.1)  # the unsubscribe is later than the first signup
    assert httpx.post(unsubscribe, content=b"List-Unsubscribe=One-Click").status_code == 200
    # the old confirmation mail never undoes the unsubscribe
    assert post(f"{web_server}/confirm/{old_link}").status_code == 400
    assert status(site, "back@example.com").status == "unsubscribed"

    response = post(f"{web_server}/subscribe", data={
        "form_token": TOKENS.make(FORM, 0), "email": "back@example.com", "name": "Bea B",
        "categories": "robots"})
    assert response.status_code == 200
    messages = wait_outbox(site, 2)
    assert len(messages) == 2
    assert status(site, "back@example.com").status == "unsubscribed"  # until confirmed
    links = {m.get_body(("plain",)).get_content().split("/confirm/")[1].split()[0]  # type: ignore[union-attr]
             for m in messages}
    (fresh,) = links - {old_link}
    assert post(f"{web_server}/confirm/{fresh}").status_code == 200
    back = status(site, "back@example.com")
    assert (back.status, back.name, back.categories) == ("active", "Bea B", ("robots",))


@both_stores
def test_double_submit_gives_one_row_and_200s(web_site: Any, web_server: str) -> None:
    site, _ = web_site
    form = {"form_token": TOKENS.make(FORM, 0), "email": "twice@example.com"}

    async def burst() -> list[int]:
        async with httpx.AsyncClient(headers={"origin": web_server}, timeout=30) as client:
            responses = await asyncio.gather(*(
                client.post(f"{web_server}/subscribe", data=form) for _ in range(20)))
        return [r.status_code for r in responses]

    assert asyncio.run(burst()) == [200] * 20
    settings = load_settings(site / "newsletter.toml")
    with Store(settings.store_location) as store:
        assert [s.email for s in store.subscribers()] == ["twice@example.com"]
    assert len(wait_outbox(site, 3)) == 3


def start_serve(site: Path, port: int) -> subprocess.Popen[bytes]:
    process = subprocess.Popen(
        [sys.executable, "-m", "newsletter", "serve", "--port", str(port)], cwd=site,
        env={**os.environ, "PYTHONPATH": str(REPO)}, stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            httpx.get(f"http://127.0.0.1:{port}/", timeout=1)
            return process
        except httpx.TransportError:
            time.sleep(0.05)
    process.kill()
    raise AssertionError("serve did not start")


@both_stores
def test_limits_hold_across_two_serve_processes(web_site: Any) -> None:
    site, _ = web_site
    configure(site, "signups_per_network = 8\n")
    servers = [start_serve(site, port) for port in (free_port(), free_port())]
    try:
        bases = [f"http://127.0.0.1:{s.args[-1]}" for s in servers]  # type: ignore[index]
        codes = [signup(bases[n % 2], "victim@example.com").status_code for n in range(6)]
        codes += [signup(bases[n % 2], f"x{n}@example.com").status_code for n in range(3)]
        mails = wait_outbox(site, 5)  # the victim's 3 (not 3 each) and x0's, x1's
    finally:
        for server in servers:
            server.terminate()
            server.wait(timeout=10)
    assert codes == [200] * 8 + [429]  # 8 a network, counted by both processes together
    assert sorted(str(m["To"]) for m in mails) == [
        "victim@example.com"] * 3 + ["x0@example.com", "x1@example.com"]


def test_rotated_forwarded_headers_do_not_reset_the_limits(web_site: Any) -> None:
    site, _ = web_site
    configure(site, "signups_per_network = 5\n")
    from tests.test_web_safety import serving

    with serving(site, "test-secret-key") as base:
        codes = [signup(base, "victim@example.com", **{
            "x-forwarded-for": f"198.51.{n}.{n}", "x-real-ip": f"203.0.{n}.1",
            "forwarded": f"for=192.0.2.{n}"}).status_code for n in range(7)]
    assert codes == [200] * 5 + [429] * 2
    assert len(wait_outbox(site, 3)) == 3


def test_forwarded_for_from_a_trusted_proxy(web_site: Any) -> None:
    site, _ = web_site
    configure(site, 'signups_per_network = 2\ntrusted_proxies = ["127.0.0.1"]\n')
    from tests.test_web_safety import serving

    def code(forwarded: str, n: int) -> int:
        return signup(base, f"p{n}@example.com", **{"x-forwarded-for": forwarded}).status_code

    with serving(site, "test-secret-key") as base:
        # one /24 shares its allowance, whatever the host; the client can prepend lies
        same = [code(f"10.9.9.9, 198.51.100.{n}", n) for n in range(3)]
        other = [code("203.0.113.7", 10 + n) for n in range(2)]
        ipv6 = [code(f"2001:db8:1:2::{n}", 20 + n) for n in range(3)]
    assert same == [200, 200, 429] and other == [200, 200] and ipv6 == [200, 200, 429]


@both_stores
def test_prune_removes_expired_pending_signups(web_site: Any, web_server: str) -> None:
    site, _ = web_site
    add(site, "active@example.com")
    assert signup(web_server, "old@example.com").status_code == 200
    assert signup(web_server, "fresh@example.com").status_code == 200
    assert len(wait_outbox(site, 2)) == 2
    settings = load_settings(site / "newsletter.toml")
    with Store(settings.store_location) as store:  # the old signup happened 8 days ago
        store.db.execute("UPDATE subscribers SET updated_at = '2000-01-01T00:00:00+00:00', "
                         "created_at = '2000-01-01T00:00:00+00:00' WHERE email = ?",
                         ("old@example.com",))
    result = CliRunner().invoke(cli, ["subscribers", "prune"])
    assert result.exit_code == 0, result.output
    assert "removed 1 unconfirmed signups and 1 old signup records" in result.output
    assert status(site, "old@example.com") is None
    assert status(site, "fresh@example.com").status == "pending"
    assert status(site, "active@example.com").status == "active"


@pytest.mark.parametrize("name", [
    "WINNER! Claim $500 at https://gift.example", "see gift.example now", "www.gift",
    "mail me: a@b.example", "Team\nBcc: x", "Line\u2028break", "n" * 41, "claim at gift . com",
])
def test_names_that_would_relay_text_are_refused(web_site: Any, web_server: str,
                                                  name: str) -> None:
    site, _ = web_site
    response = signup(web_server, "target@example.com", name)
    assert response.status_code == 422
    assert status(site, "target@example.com") is None
    assert wait_outbox(site, 0) == []


def test_the_to_header_keeps_its_quotes(web_site: Any, web_server: str) -> None:
    site, _ = web_site
    # ASCII specials with a non-ASCII letter and a long line: folding once lost the quotes
    names = {"Team: Alpha, Beta; Gamma Délta": "someone-with-a-longish-address@example.com",
             'Team: Alpha, Beta; Gamma "Ops"': "a@example.com",
             '团队: 甲, 乙; 丙 "运营" 部门的同事们你们好': "b@example.com"}
    for name, address in names.items():
        assert signup(web_server, address, name).status_code == 200
    squeezed = {"".join(name.split()): address for name, address in names.items()}
    for message in wait_outbox(site, 3):
        to = message["To"]
        (mailbox,) = to.addresses  # one mailbox, never a group of forged addresses
        assert not to.groups[0].display_name
        # (Python's parser adds a space between folded encoded words; mail clients don't)
        assert squeezed["".join(mailbox.display_name.split())] == mailbox.addr_spec
