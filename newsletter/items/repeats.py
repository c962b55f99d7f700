"""A story told twice in one post is one item: overviews, repeated sections, field names
and reports in parts are recognized after the structure has been read."""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import replace

from rapidfuzz import fuzz, process

from newsletter.items.inline import label_like
from newsletter.items.item import Item


def drop_repeats(items: list[Item]) -> list[Item]:
    """A story told twice in one post is one item, told where it first appears:
    - a section whose links were mostly given already (highlights, then an overview, then
      a reference list) repeats them; its items with a new link stay;
    - an overview line without a link that another item tells in full;
    - a lead repeated word for word without a link ("预测时间：") is a field name.
    Several items of one section sharing a link is a hub (an aggregator page): all stay."""
    items = _own_links(items)
    items = _drop_overview(items)
    items = _drop_repeated_sections(items)
    items = _drop_report_parts(items)
    norms = [_norm(i.headline) for i in items]
    full = [k for k, i in zip(norms, items, strict=True)
            if k and (i.url is not None or len(i.summary_text) >= 60)]
    long_full = [k for k in full if len(k) >= 8]
    bare_leads = Counter(_norm(i.headline) for i in items if i.url is None)
    linked_leads = Counter(_norm(i.headline) for i in items if i.url is not None)
    keep: list[Item] = []
    for n, item in enumerate(items):
        key = norms[n]
        if (item.url is None and bare_leads[key] > 1) or linked_leads[key] > 2:
            continue  # a field name, or a placeholder title ("（标题待翻译）") on many links
        short_and_bare = item.url is None and len(item.summary_text) < 60  # never in `full`
        if short_and_bare and _told_elsewhere(key, full, long_full):
            continue
        keep.append(item)
    return keep


def _own_links(items: list[Item]) -> list[Item]:
    """An item whose link another item of its section also gives, but which has a link
    no other item gives, is told by that link of its own: the shared one is the other
    story's (a citation slipped) or an aggregator's."""
    uses = Counter((i.section, u) for i in items for u in {i.url, *i.links} if u)
    mine: list[Item] = []
    for item in items:
        own = [u for u in item.links if uses[item.section, u] == 1]
        if item.url is not None and uses[item.section, item.url] > 1 and own:
            others = tuple(u for u in (item.url, *item.links) if u != own[0])
            item = replace(item, url=own[0], links=others)
        mine.append(item)
    return mine


def _drop_report_parts(items: list[Item]) -> list[Item]:
    """A post without a single story link whose headings are all short labels ("今日表现",
    "1. 风险因素") is a report in parts, not a digest of stories: its parts are no items."""
    parts = [i for i in items if i.shape.endswith("heading")]
    if len(parts) < 3 or any(i.url for i in items) or not all(
            label_like(i.headline, limit=8) for i in parts):
        return items
    return [i for i in items if not i.shape.endswith("heading")]


def _drop_repeated_sections(items: list[Item]) -> list[Item]:
    keep: list[Item] = []
    seen: set[str] = set()
    start = 0
    while start < len(items):
        end = start
        while end < len(items) and items[end].section == items[start].section:
            end += 1
        section = items[start:end]
        linked = [i for i in section if i.url is not None]
        repeated = [i for i in linked if i.url in seen]
        distinct = {i.url for i in linked}
        mostly_repeated = bool(linked) and len({i.url for i in repeated}) * 5 >= len(distinct) * 3
        shared = Counter(i.url for i in linked)
        keep += [i for i in section if i.url not in seen or (
            shared[i.url] > 1 and not mostly_repeated)]
        for item in section:
            seen.update(u for u in (item.url, *item.links) if u)
        start = end
    return keep


def _drop_overview(items: list[Item]) -> list[Item]:
    """A post that opens with a list of one-line, link-less headlines and then tells at
    least as many stories in full opens with an overview of them (perhaps in another
    language): the full stories are the items."""
    if not items or items[0].url is not None:
        return items
    first = items[0].section
    head = 0
    while head < len(items) and items[head].section == first and items[head].url is None \
            and not items[head].summary_text:
        head += 1
    told = [i for i in items[head:] if i.url is not None or i.summary_text]
    if head == 0 or (head < len(items) and items[head].section == first) or len(told) < head:
        return items
    return items[head:]


def _norm(text: str) -> str:
    return re.sub(r"[\W_]+", "", text.casefold())


def _told_elsewhere(key: str, others: list[str], long_others: list[str]) -> bool:
    """Is `key` a near-duplicate of one of `others` (normalized headlines)?"""
    if not key or not others:
        return False
    if process.extractOne(key, others, scorer=fuzz.ratio, score_cutoff=60):
        return True
    return len(key) >= 8 and bool(process.extractOne(key, long_others, scorer=fuzz.partial_ratio,
                                                     score_cutoff=80))
