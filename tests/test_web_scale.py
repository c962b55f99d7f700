"""Two `newsletter serve` processes on one store (PostgreSQL: what several web servers
behind a load balancer share) take 400 concurrent preference updates and lose none."""

from typing import Any

from newsletter.config import load_settings
from newsletter.store import Store
from tests.conftest import free_port
from tests.pg import both_backends  # noqa: F401 (every test on both stores)
from tests.test_web_load import preference_burst
from tests.test_web_signup import start_serve

UPDATES = 400
CHOICES = [["models"], ["robots"], ["apps"], ["models", "robots"], ["apps", "models"]]


def test_two_servers_take_concurrent_updates_and_lose_none(web_site: Any) -> None:
    site, _ = web_site
    settings = load_settings(site / "newsletter.toml")
    with Store(settings.store_location) as store, store.write() as db:
        ids = [store.insert_subscriber(db, email=f"w{n}@example.com",
                                       email_key=f"w{n}@example.com", name="", categories=(),
                                       status="active", source="test")
               for n in range(UPDATES)]
    servers = [start_serve(site, port) for port in (free_port(), free_port())]
    bases = [f"http://127.0.0.1:{s.args[-1]}" for s in servers]  # type: ignore[index]
    try:
        codes = preference_burst(bases, ids, CHOICES, "Reader ")
        if settings.store_url:  # each server keeps a bounded pool open, not one per request
            with Store(settings.store_location) as store:
                open_now = store.db.execute("SELECT COUNT(*) FROM pg_stat_activity WHERE "
                                            "datname = current_database()").fetchone()[0]
            assert 3 <= open_now <= 2 * 10 + 1, open_now
    finally:
        for server in servers:
            server.terminate()
            server.wait(timeout=15)
    assert codes == [200] * UPDATES
    with Store(settings.store_location) as store:
        for n, sid in enumerate(ids):
            found = store.subscriber_by_id(sid)
            assert found is not None and found.name == f"Reader {n}", (sid, found)
            assert found.categories == tuple(sorted(CHOICES[n % len(CHOICES)])), sid
