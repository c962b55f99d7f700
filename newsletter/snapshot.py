"""An edition's snapshot: composed, rendered and stored with one delivery row per
recipient, in one transaction, before anything is sent.

Who gets the edition is decided inside that transaction, from the subscribers as they are
then: a change made while `send` waited at its prompt is in the snapshot (a category set
nobody had when the plan was rendered gets its variant rendered at send time).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from pathlib import Path

from newsletter.compose import Edition, compose_window, edition_to_json
from newsletter.config import Settings
from newsletter.content import Problem
from newsletter.errors import NewsletterError
from newsletter.render import RenderedVariant, Renderer
from newsletter.store import DELIVERY_STATES, EditionRow, Store, split_categories
from newsletter.window import Window


class OverlapError(NewsletterError):
    """The window overlaps an edition already stored."""


@dataclass
class Plan:
    """A composed, rendered edition not stored yet (what `send` shows before asking)."""

    edition: Edition
    variants: list[RenderedVariant]
    recipients: dict[str, int]  # variant key -> active subscribers
    empty: dict[str, int]  # variant key without stories -> subscribers who get nothing
    problems: list[Problem]


@dataclass
class Snapshot:
    edition_id: int
    number: int
    subject: str
    variants: dict[str, int]  # variant key -> recipients
    counts: dict[str, int]  # deliveries per status

    @property
    def todo(self) -> int:
        return self.counts["pending"] + self.counts["deferred"]


def plan_edition(store: Store, settings: Settings, window: Window, renderer: Renderer,
                 intro_file: Path | None = None) -> Plan:
    """Compose the window and render one variant per category set active subscribers chose."""
    edition, loaded = compose_window(settings, window, store.edition_number(window),
                                     intro_file)
    plan = Plan(edition, [], {}, {}, loaded.problems)
    for categories, count in store.variant_demand().items():
        variant_plan = edition.plan(split_categories(categories))
        if variant_plan.stories:
            plan.variants.append(renderer.render(edition, variant_plan))
            plan.recipients[variant_plan.key] = count
        else:
            plan.empty[variant_plan.key] = count
    return plan


def check_overlap(store: Store, window: Window) -> None:
    """A window overlapping a stored edition (other than its own) would mail the same
    stories twice."""
    for row in store.editions_overlapping(window):
        raise OverlapError(
            f"the window {window.label()} overlaps edition {row.number} "
            f"({row.window_start} .. {row.window_end}); resume that edition with its own "
            "window, choose one that does not overlap, or add --allow-overlap")


def find_snapshot(store: Store, window: Window) -> Snapshot | None:
    row = store.edition(window=window)
    return None if row is None else load_snapshot(store, row)


def load_snapshot(store: Store, row: EditionRow) -> Snapshot:
    variants = store.recipients_per_variant(row.id)
    return Snapshot(row.id, row.number, store.edition_subject(row.id), variants,
                    store.delivery_counts(row.id))


def store_snapshot(store: Store, plan: Plan) -> Snapshot:
    """Store the edition, its variants and one delivery row per active subscriber, in one
    transaction. Another process may have stored the same window meanwhile: then that
    edition is the one to send."""
    edition = plan.edition
    window = edition.window
    with store.write() as db:
        if store.edition(window=window) is None:
            edition_id = store.insert_edition(db, number=edition.number, window=window,
                                              nonce=secrets.token_hex(6),
                                              payload=edition_to_json(edition))
            variants = {}
            for variant in plan.variants:
                store.insert_variant(db, edition_id, variant)
                variants[variant.key] = 0
            keys = {}
            for categories, count in store.variant_demand().items():  # now, in this
                variant_plan = edition.plan(split_categories(categories))  # transaction
                if variant_plan.stories:
                    keys[categories] = variant_plan.key
                    variants[variant_plan.key] = variants.get(variant_plan.key, 0) + count
            store.insert_deliveries(db, edition_id, keys)
            # counted from the demand: no scan of a million new rows before the first send
            counts = dict.fromkeys(DELIVERY_STATES, 0)
            counts["pending"] = sum(variants.values())
            subject = min(plan.variants, key=lambda v: v.key).subject if plan.variants else ""
            return Snapshot(edition_id, edition.number, subject, dict(sorted(variants.items())),
                            counts)
    snapshot = find_snapshot(store, window)  # another process stored it meanwhile
    assert snapshot is not None
    return snapshot
