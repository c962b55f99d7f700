"""The store's web signups and bounce records (mixed into `Store`): the signup limits'
memory, the confirmation emails' outbox, and every bounce mailbox message once."""

from __future__ import annotations

from datetime import datetime

from newsletter.rows import Subscriber, join_categories, now_iso, split_categories, storable
from newsletter.store_backend import Row
from newsletter.store_subscribers import SubscriberStore

MAILING = "('queued', 'sending', 'sent', 'failed')"  # signup states that mail someone


class SignupStore(SubscriberStore):
    def record_signup(self, *, at: float, network: str, email: str, email_key: str, name: str,
                      categories: tuple[str, ...], since_network: float, per_network: int,
                      per_day: int) -> str | None:
        """One signup post, in one transaction so concurrent posts (several processes
        too) see each other: None when the network is over its limit, else the state of
        the new signups row: 'queued' (a confirmation to send) or 'none'."""
        with self.write() as db:
            recent = db.execute("SELECT COUNT(*) FROM signups WHERE network = ? AND at > ?",
                                (network, since_network)).fetchone()[0]
            if recent >= per_network:
                return None
            stamp = now_iso()
            db.execute("INSERT INTO subscribers (email, email_key, name, categories, status, "
                       "source, created_at, updated_at) VALUES (?, ?, ?, ?, 'pending', 'web', "
                       "?, ?) ON CONFLICT (email_key) DO NOTHING",
                       (email, email_key, name, join_categories(categories), stamp, stamp))
            found = db.execute("SELECT id, status FROM subscribers WHERE email_key = ?",
                               (email_key,)).fetchone()
            mailed = db.execute(f"SELECT COUNT(*) FROM signups WHERE email_key = ? AND at > ? "
                                f"AND state IN {MAILING}",
                                (email_key, at - 24 * 3600)).fetchone()[0]
            wants_mail = found["status"] in ("pending", "unsubscribed", "bounced")
            state = "queued" if wants_mail and mailed < per_day else "none"
            # a fresh attempt keeps a pending signup from expiring (the same statement
            # whatever the status: the same work for every address)
            db.execute("UPDATE subscribers SET updated_at = ? WHERE id = ? AND "
                       "status = 'pending'", (stamp, found["id"]))
            db.execute("INSERT INTO signups (at, network, email_key, subscriber_id, name, "
                       "categories, state) VALUES (?, ?, ?, ?, ?, ?, ?)",
                       (at, network, email_key, found["id"], name, join_categories(categories),
                        state))
            return state

    def claim_confirmation(self, now: float, lease: float) -> Row | None:
        """The next confirmation email due, claimed for `lease` seconds (a crashed claimer's
        rows come back when the lease ends)."""
        with self.write() as db:
            row: Row | None = db.execute(
                "SELECT g.id, g.name, g.attempts, s.email FROM signups g JOIN subscribers s "
                "ON s.id = g.subscriber_id WHERE g.state IN ('queued', 'sending') "
                "AND g.next_at <= ? ORDER BY g.id LIMIT 1", (now,)).fetchone()
            if row is not None:
                db.execute("UPDATE signups SET state = 'sending', next_at = ?, "
                           "attempts = attempts + 1 WHERE id = ?", (now + lease, row["id"]))
            return row

    def finish_confirmation(self, signup_id: int, state: str, reply: str,
                            next_at: float = 0.0) -> None:
        self.db.execute("UPDATE signups SET state = ?, reply = ?, next_at = ? WHERE id = ?",
                        (state, storable(reply), next_at, signup_id))

    def signup_state(self, signup_id: int) -> Row | None:
        row: Row | None = self.db.execute(
            "SELECT * FROM signups WHERE id = ?", (signup_id,)).fetchone()
        return row

    def confirm_signup(self, signup_id: int) -> Subscriber | None:
        """Activate the subscriber of a signup with the name and categories chosen in it;
        None when the signup is unknown or older than the subscriber's last unsubscribe
        (an old confirmation mail never undoes a later unsubscribe)."""
        with self.write() as db:
            row = db.execute("SELECT g.at, g.name AS chosen_name, g.categories AS chosen, s.* "
                             "FROM signups g JOIN "
                             "subscribers s ON s.id = g.subscriber_id WHERE g.id = ?",
                             (signup_id,)).fetchone()
            if row is None or row["status"] not in ("pending", "active", "unsubscribed",
                                                    "bounced"):
                return None
            left = row["unsubscribed_at"]  # whole seconds: compare with the signup's second
            if left and datetime.fromisoformat(left).timestamp() > int(row["at"]):
                return None
            if row["status"] != "active":
                self.update_subscriber(db, row["id"], name=row["chosen_name"],
                                       categories=split_categories(row["chosen"]),
                                       status="active")
            return self.subscriber_by_id(row["id"])

    def prune_signups(self, *, before: str, before_at: float) -> tuple[int, int]:
        """Delete pending subscribers untouched since `before` that never confirmed, and
        signup rows older than `before_at`: (subscribers, signup rows) removed."""
        with self.write() as db:
            stale = "status = 'pending' AND confirmed_at IS NULL AND updated_at < ?"
            rows = db.execute(f"DELETE FROM signups WHERE at < ? AND state NOT IN "
                              f"('queued', 'sending') OR subscriber_id IN "
                              f"(SELECT id FROM subscribers WHERE {stale})",
                              (before_at, before)).rowcount
            people = db.execute(f"DELETE FROM subscribers WHERE {stale}", (before,)).rowcount
            return people, rows

    # ------------------------------------------------------------ bounces and complaints

    def delivery_by_id(self, delivery_id: int) -> Row | None:
        row: Row | None = self.db.execute(
            "SELECT d.edition_id, d.subscriber_id, d.email, e.nonce FROM deliveries d "
            "JOIN editions e ON e.id = d.edition_id WHERE d.id = ?", (delivery_id,)).fetchone()
        return row

    def delivery_of(self, edition_id: int, subscriber_id: int) -> Row | None:
        row: Row | None = self.db.execute(
            "SELECT edition_id, subscriber_id, email FROM deliveries "
            "WHERE edition_id = ? AND subscriber_id = ?", (edition_id, subscriber_id)).fetchone()
        return row

    def last_delivery_to(self, subscriber_id: int) -> Row | None:
        row: Row | None = self.db.execute(
            "SELECT edition_id, subscriber_id, email FROM deliveries WHERE subscriber_id = ? "
            "AND status = 'sent' ORDER BY edition_id DESC LIMIT 1", (subscriber_id,)).fetchone()
        return row

    def bounce_known(self, message_key: str) -> bool:
        return self.db.execute("SELECT 1 FROM bounces WHERE message_key = ?",
                               (message_key,)).fetchone() is not None

    def record_bounce(self, *, message_key: str, kind: str, edition_id: int | None,
                      subscriber_id: int | None, recipient: str, status: str, detail: str,
                      received_at: str, soft_limit: int, soft_since: str) -> str | None:
        """Record one bounce mailbox message once; returns the subscriber's new status
        when this message changed it (hard -> bounced, enough soft -> bounced,
        complaint -> complained)."""
        with self.write() as db:
            inserted = db.execute(
                "INSERT OR IGNORE INTO bounces (message_key, kind, edition_id, subscriber_id, "
                "recipient, status, detail, received_at, processed_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (message_key, kind, edition_id, subscriber_id, recipient[:320], status,
                 storable(detail), received_at, now_iso())).rowcount
            if not inserted or subscriber_id is None:
                return None
            new: str | None = None
            allowed: tuple[str, ...] = ("pending", "active")
            if kind == "complaint":  # never mailed again, whatever the status was
                new, allowed = "complained", ("pending", "active", "unsubscribed", "bounced")
            elif kind == "hard":
                new = "bounced"
            elif kind == "soft":
                count = db.execute("SELECT COUNT(*) FROM bounces WHERE subscriber_id = ? AND "
                                   "kind = 'soft' AND received_at >= ?",
                                   (subscriber_id, soft_since)).fetchone()[0]
                new = "bounced" if count >= soft_limit else None
            if new is None:
                return None
            marks = ", ".join("?" for _ in allowed)
            changed = db.execute(
                f"UPDATE subscribers SET status = ?, updated_at = ? WHERE id = ? "
                f"AND status IN ({marks})", (new, now_iso(), subscriber_id, *allowed)).rowcount
            return new if changed else None

    def bounce_counts(self, edition_id: int) -> dict[str, int]:
        counts = {k: 0 for k in ("hard", "soft", "complaint")}
        for row in self.db.execute("SELECT kind, COUNT(*) FROM bounces WHERE edition_id = ? "
                                   "GROUP BY kind", (edition_id,)):
            counts[row[0]] = row[1]
        return counts
