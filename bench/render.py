"""Render a dense week (42 digests x 16 items) and time variants and personalized messages.

Prints time per variant, time per personalized message, premailer calls per edition (about
one per variant), and, as a reference run in the same process, the cost of
rendering and inlining per message (what a mailmerge-style sender does). Then the byte
savings: how many stories fit under the size budget with the template before them
(`bench/reference_templates/`: the font stack inlined on every cell, every digest listed
when stories are dropped) and with today's (inherited styles set once on the card, one
line linking to the digests), on the same edition, alternating A B A B.

    python bench/render.py
    python bench/render.py --content DIR --week 2026-W08   # also a real week's folder
"""

from __future__ import annotations

import argparse
import dataclasses
import re
import secrets
import statistics
import time
from datetime import timedelta
from pathlib import Path

from newsletter.compose import Edition, VariantPlan, compose
from newsletter.config import Settings, load_settings
from newsletter.content import Digest, load_digests
from newsletter.items import Item
from newsletter.message import MessageFactory, Recipient
from newsletter.render import Renderer, Slots, inline_calls, inline_css
from newsletter.tokens import Tokens
from newsletter.window import resolve_window

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
REFERENCE_TEMPLATES = Path(__file__).resolve().parent / "reference_templates"
CATEGORY_WORDS = {"models": "模型", "products": "推出", "robotics": "机器人", "opinion": "认为"}


def dense_week(settings: object, window: object) -> list[Digest]:
    names = list(CATEGORY_WORDS)
    digests = []
    for n in range(42):
        items = []
        for k in range(16):
            word = CATEGORY_WORDS[names[(n + k) % 4]]
            summary = (f"第 {n} 期第 {k} 条：一段接近真实长度的摘要，{word}相关，包含**加粗**与"
                       f"[链接](https://news.example/{n}/{k}/more)。" * 3)
            # every third story is also covered by the next digest
            ref = (n - 1, k) if k % 3 == 0 and n > 0 else (n, k)
            items.append(Item(headline=f"{word}新闻 {ref[0]}-{ref[1]}", source="来源",
                              url=f"https://news.example/{ref[0]}/{ref[1]}",
                              summary_md=summary, summary_text=summary))
        digests.append(Digest(path=Path(f"{n}.md"), title=f"Digest {n}",
                              date=window.start + timedelta(hours=4 * n),  # type: ignore[attr-defined]
                              categories=tuple(names), url=f"https://site.example/p/{n}/",
                              items=tuple(items)))
    return digests


def main() -> None:
    settings = load_settings(EXAMPLES / "newsletter.toml")
    window = resolve_window(tz=settings.timezone, week="2025-W51")
    edition = compose(dense_week(settings, window), settings, window, number=1)
    renderer = Renderer(settings)
    sets = [(), ("models",), ("products",), ("robotics",), ("opinion",), ("models", "opinion")]
    calls_before = inline_calls()
    started = time.perf_counter()
    variants = [renderer.render(edition, edition.plan(s)) for s in sets]
    per_variant = (time.perf_counter() - started) / len(variants)
    calls = inline_calls() - calls_before

    tokens = Tokens("bench-key")
    factories = [MessageFactory(settings, v, renderer, tokens) for v in variants]
    count = 3000
    started = time.perf_counter()
    for n in range(count):
        factories[n % len(factories)].build(Recipient(f"r{n}@example.com", f"读者{n}", n + 1))
    per_message = (time.perf_counter() - started) / count

    # reference: what a sender that renders and inlines per message pays
    ref_count = 20
    started = time.perf_counter()
    for n in range(ref_count):
        v = renderer.render(edition, edition.plan(sets[n % len(sets)]))
        MessageFactory(settings, v, renderer, tokens).build(Recipient(f"r{n}@example.com"))
    per_reference = (time.perf_counter() - started) / ref_count

    print(f"stories in the edition: {len(edition.stories)}")
    for v in variants:
        size = len(v.personalize(renderer, name="读者", preferences_url="u",
                                 unsubscribe_url="u")[0].encode())
        print(f"  variant {v.key:16} {v.stories:4} stories, {v.dropped:4} on the site, "
              f"HTML {size:,} bytes (budget {settings.max_html_bytes:,})")
    print(f"time per variant (render + inline + budget): {per_variant * 1000:.1f} ms")
    print(f"time per personalized message (slots + MIME bytes): {per_message * 1e6:.0f} us")
    print(f"reference, full render + inline per message: {per_reference * 1000:.1f} ms "
          f"(ratio {per_reference / per_message:.0f}x slower)")
    print(f"premailer calls per edition: {calls} for {len(variants)} variants (one per "
          "variant, plus one or two while the first over-budget variant learns how much "
          "inlining adds)")
    budget_comparison(settings, edition, sets)
    cut_comparison(settings, edition, sets)


def inline_then_cut(renderer: Renderer, edition: Edition, plan: VariantPlan) -> int:
    """The previous budget: render every story, inline CSS once over all of it, then cut
    the lowest-ranked marked blocks out of the inlined HTML until it fits. Needs the
    markers of `bench/reference_templates/`. Returns the stories kept."""
    slots = Slots(secrets.token_hex(8))
    html = inline_css(renderer.env.get_template("email.html.j2").render(
        renderer._context(edition, plan, slots), subject="s", preheader="p"))
    budget = renderer.settings.max_html_bytes
    rank = {s.key: n for n, s in enumerate(edition.stories)}
    stories = plan.stories
    blocks = {n: re.search(f"<!--s:{n}-->.*?<!--/s:{n}-->", html, re.DOTALL)
              for n in range(len(stories))}
    size, kept = len(html.encode()), len(stories)
    for n in sorted(range(len(stories)), key=lambda n: -rank[stories[n].key]):
        block = blocks[n]
        if size <= budget or kept == 1 or block is None:
            break
        html = html.replace(block.group(0), "")
        size, kept = size - len(block.group(0).encode()), kept - 1
    return kept


def cut_comparison(settings: Settings, edition: Edition, sets: list[tuple[str, ...]],
                   rounds: int = 3) -> None:
    """Time per variant: the budget decided from the plan (inline once, after the cut)
    against the previous inline-then-cut, on the same (marked) template, A B A B."""
    renderer = Renderer(dataclasses.replace(settings, templates_dir=REFERENCE_TEMPLATES))
    times: dict[str, list[float]] = {"plan, then inline": [], "inline, then cut": []}
    for _ in range(rounds):
        for cats in sets:
            plan = edition.plan(cats)
            started = time.perf_counter()
            renderer.render(edition, plan)
            times["plan, then inline"].append(time.perf_counter() - started)
            started = time.perf_counter()
            inline_then_cut(renderer, edition, plan)
            times["inline, then cut"].append(time.perf_counter() - started)
    new, old = (statistics.median(t) for t in times.values())
    print(f"\ntime per variant, {rounds} rounds x {len(sets)} variants, interleaved:")
    for label, t in times.items():
        print(f"  {label:18} median {statistics.median(t) * 1000:6.0f} ms "
              f"(range {min(t) * 1000:.0f}-{max(t) * 1000:.0f} ms)")
    print(f"  ratio inline-then-cut / plan-then-inline: {old / new:.1f}x")


def budget_comparison(settings: Settings, edition: Edition,
                      sets: list[tuple[str, ...]], rounds: int = 3) -> None:
    """Stories under the budget, before/after the byte savings, per variant."""
    before = Renderer(dataclasses.replace(settings, templates_dir=REFERENCE_TEMPLATES))
    after = Renderer(settings)
    times: dict[str, list[float]] = {"before": [], "after": []}
    kept: dict[str, dict[str, int]] = {"before": {}, "after": {}}
    for _ in range(rounds):
        for label, renderer in (("before", before), ("after", after)):  # A B A B
            for cats in sets:
                started = time.perf_counter()
                v = renderer.render(edition, edition.plan(cats))
                times[label].append(time.perf_counter() - started)
                kept[label][v.key] = v.stories
    print(f"\nstories under the {settings.max_html_bytes:,}-byte budget, before -> after "
          "the byte savings:")
    for key, was in kept["before"].items():
        now = kept["after"][key]
        print(f"  variant {key:16} {was:4} -> {now:4} stories  (+{now - was}, "
              f"x{now / was:.2f})")
    for label in ("before", "after"):
        t = times[label]
        print(f"  render time {label:6}: median {statistics.median(t) * 1000:.0f} ms "
              f"(range {min(t) * 1000:.0f}-{max(t) * 1000:.0f} ms)")


def real_week(content: Path, week: str) -> None:
    """The before/after comparison on a real content folder (read in place, not copied)."""
    settings = dataclasses.replace(load_settings(EXAMPLES / "newsletter.toml"),
                                   content_dir=content.resolve())
    window = resolve_window(tz=settings.timezone, week=week)
    loaded = load_digests(settings, window)
    edition = compose(loaded.digests, settings, window, number=1)
    print(f"\n{content} {week}: {len(loaded.digests)} digests, {len(edition.stories)} stories")
    budget_comparison(settings, edition, [(), ("models",), ("products",), ("models", "opinion")])


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--content", type=Path, help="a real content folder to compare on")
    parser.add_argument("--week", default="2026-W08")
    args = parser.parse_args()
    if args.content:
        real_week(args.content, args.week)
    else:
        main()
