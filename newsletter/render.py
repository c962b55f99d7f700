"""Render a variant into subject, HTML and text, with slots for per-subscriber values.

Digest text is untrusted: Markdown is rendered with markdown-it-py and its HTML sanitized
with nh3; it reaches Jinja only as data, so template syntax in it stays literal. CSS is
inlined once per variant; the size budget then removes whole story blocks from the inlined
HTML (they are marked with comments) instead of inlining again.
"""

from __future__ import annotations

import logging
import re
import secrets
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nh3
from jinja2 import ChoiceLoader, Environment, FileSystemLoader, StrictUndefined, select_autoescape
from markdown_it import MarkdownIt
from markupsafe import Markup, escape

from newsletter.compose import Edition, Story, VariantPlan
from newsletter.config import Settings
from newsletter.starter import packaged_templates

SLOT_NAMES = ("greeting", "preferences_url", "unsubscribe_url", "more")
TEXT_WIDTH = 78
_MD = MarkdownIt("commonmark", {"html": True, "linkify": False})
_ALLOWED_TAGS = {"p", "a", "strong", "em", "b", "i", "code", "pre", "ul", "ol", "li", "br",
                 "blockquote", "span", "del", "sup", "sub"}


def markdown_html(text: str) -> Markup:
    """Digest Markdown to safe HTML: no scripts, handlers, styles or javascript: links."""
    clean = nh3.clean(_MD.render(text), tags=_ALLOWED_TAGS,
                      attributes={"a": {"href", "title"}}, url_schemes={"http", "https", "mailto"},
                      link_rel="noopener noreferrer")
    return Markup(clean)


class _InlineCounter:
    calls = 0


def inline_css(html: str) -> str:
    """The one place CSS is inlined (premailer); counted so the bench can check it."""
    from premailer import Premailer

    _InlineCounter.calls += 1
    return str(Premailer(html, keep_style_tags=False, strip_important=False,
                         remove_classes=False, disable_validation=True, allow_network=False,
                         cssutils_logging_level=logging.CRITICAL).transform())


def inline_calls() -> int:
    return _InlineCounter.calls


@dataclass(frozen=True)
class Slots:
    """Per-render placeholder strings; the nonce keeps digest text from forging one."""

    nonce: str

    def __getattr__(self, name: str) -> str:
        if name in SLOT_NAMES:
            return f"nlslot{name.replace('_', '')}{self.nonce}"
        raise AttributeError(name)


@dataclass(frozen=True)
class RenderedVariant:
    key: str
    categories: frozenset[str]
    subject: str
    html: str  # inlined, with slots
    text: str  # with slots
    nonce: str
    stories: int
    dropped: int

    def personalize(self, renderer: Renderer, *, name: str, preferences_url: str,
                    unsubscribe_url: str) -> tuple[str, str]:
        """This subscriber's HTML and text: fill slots, never re-render or re-inline."""
        slots = Slots(self.nonce)
        greeting = renderer.greeting(name)
        values = {slots.greeting: greeting, slots.preferences_url: preferences_url,
                  slots.unsubscribe_url: unsubscribe_url}
        html_values = {k: str(escape(v)) for k, v in values.items()}
        return _fill(self.html, html_values), _fill(self.text, values)


def _fill(template: str, values: dict[str, str]) -> str:
    pattern = re.compile("|".join(re.escape(k) for k in values))
    return pattern.sub(lambda m: values[m.group(0)], template)


GREETING_CACHE = 10_000


class Renderer:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        loaders = [FileSystemLoader(str(settings.templates_dir / "email"))]
        loaders.append(FileSystemLoader(str(packaged_templates() / "email")))
        self.env = Environment(loader=ChoiceLoader(loaders), undefined=StrictUndefined,
                               autoescape=select_autoescape(["html.j2", "html"]),
                               keep_trailing_newline=False)
        self.env.filters["markdown"] = markdown_html
        self._greeting = self.env.get_template("greeting.txt.j2")
        self._greetings: dict[str, str] = {}

    def greeting(self, name: str) -> str:
        """The greeting line for `name`, rendered from the template for each name (a
        template may branch on the name); the same name is rendered once."""
        name = " ".join(name.split())
        found = self._greetings.get(name)
        if found is None:
            if len(self._greetings) >= GREETING_CACHE:
                self._greetings.clear()
            found = self._greetings[name] = self._render_greeting(name)
        return found

    def _render_greeting(self, name: str) -> str:
        return " ".join(self._greeting.render(name=name, lang=self.settings.language).split())

    def _context(self, edition: Edition, plan: VariantPlan, slots: Slots) -> dict[str, Any]:
        s = self.settings
        start = edition.window.start.astimezone(s.timezone).date()
        ids = {story.key: n for n, story in enumerate(plan.stories)}
        return {
            "name": s.name, "lang": s.language, "tz": s.timezone, "number": edition.number,
            "start": start, "end": edition.window.last_day, "site_url": s.base_url,
            "postal_address": s.postal_address, "slot": slots,
            "categories": [edition.labels.get(c, c) for c in sorted(plan.categories)],
            "sections": [_SectionView(sec.key, sec.label, [(ids[st.key], st) for st in sec.stories])
                         for sec in plan.sections],
            "digests": edition.digests, "dropped": plan.dropped,
            "story_count": len(plan.stories),
        }

    def subject(self, edition: Edition, plan: VariantPlan) -> str:
        text = self.env.get_template("subject.txt.j2").render(
            self._context(edition, plan, Slots("")), stories=len(plan.stories))
        return " ".join(text.split())  # one line, whatever the template does

    def render(self, edition: Edition, plan: VariantPlan) -> RenderedVariant:
        slots = Slots(secrets.token_hex(8))
        subject = self.subject(edition, plan)
        context = self._context(edition, plan, slots)
        html = inline_css(self.env.get_template("email.html.j2").render(
            context, subject=subject, preheader=self._preheader(plan)))
        html, kept = _fit(html, plan, slots, self.settings.max_html_bytes, self._filled_size)
        plan = plan.keep(kept)
        html = html.replace(slots.more, str(plan.dropped))
        if not plan.dropped:
            html = _remove_block(html, "more")
        text = self.env.get_template("email.txt.j2").render(
            self._context(edition, plan, slots))
        return RenderedVariant(key=plan.key, categories=plan.categories, subject=subject,
                               html=html, text=wrap_text(text), nonce=slots.nonce,
                               stories=len(plan.stories), dropped=plan.dropped)

    def _preheader(self, plan: VariantPlan) -> str:
        return " · ".join(s.headline for s in plan.stories[:3])

    def _filled_size(self, html: str, slots: Slots) -> int:
        """Bytes once slots hold realistic values (long name, signed-token URLs)."""
        url = f"{self.settings.public_url}/preferences/" + "x" * 120
        values = {slots.greeting: str(escape(self.greeting("N" * 40))),
                  slots.preferences_url: url, slots.unsubscribe_url: url, slots.more: "999"}
        return len(_fill(html, values).encode("utf-8"))


@dataclass(frozen=True)
class _SectionView:
    key: str
    label: str
    stories: list[tuple[int, Story]]


def _fit(html: str, plan: VariantPlan, slots: Slots, budget: int,
         size: Callable[[str, Slots], int]) -> tuple[str, set[str]]:
    """Drop the lowest-ranked stories (whole marked blocks) until the HTML fits."""
    stories = plan.stories
    keys = {s.key for s in stories}
    total = size(html, slots)
    if total <= budget:
        return html, keys
    blocks = {n: _block_size(html, f"s:{n}") for n in range(len(stories))}
    # lowest rank = latest in edition order (coverage, then recency), whatever the section
    order = sorted(range(len(stories)), key=lambda n: _rank(stories[n]), reverse=True)
    dropped: set[int] = set()
    for n in order:
        if total <= budget or len(dropped) == len(stories) - 1:
            break
        dropped.add(n)
        total -= blocks[n]
    for n in dropped:
        html = _remove_block(html, f"s:{n}")
    html = re.sub(r"<!--sec:(\d+)-->(.*?)<!--/sec:\1-->",
                  lambda m: m.group(0) if "<!--s:" in m.group(2) else "", html, flags=re.DOTALL)
    return html, {stories[n].key for n in range(len(stories)) if n not in dropped}


def _rank(story: Story) -> tuple[int, float]:
    return (-len(story.coverage), -story.date.timestamp())


def _block_size(html: str, name: str) -> int:
    match = re.search(f"<!--{name}-->.*?<!--/{name}-->", html, flags=re.DOTALL)
    return len(match.group(0).encode("utf-8")) if match else 0


def _remove_block(html: str, name: str) -> str:
    return re.sub(f"<!--{name}-->.*?<!--/{name}-->\n?", "", html, count=1, flags=re.DOTALL)


# ---------------------------------------------------------------- plain text wrapping

def display_width(text: str) -> int:
    return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text)


_UNITS = re.compile(r"https?://\S+|[^\s\u1100-\u115f\u2e80-\ua4cf\uac00-\ud7a3\uf900-\ufaff"
                    r"\ufe30-\ufe4f\uff00-\uff60\uffe0-\uffe6]+|\s+|.", re.DOTALL)
_NO_LINE_START = set("，。、；：！？）》」』】,.;:!?)]}%")


def wrap_line(line: str, width: int = TEXT_WIDTH) -> list[str]:
    """Wrap one line at `width` display columns; CJK may break anywhere, URLs never."""
    if display_width(line) <= width:
        return [line]
    indent = re.match(r"\s*(?:[-*] )?", line).group(0)  # type: ignore[union-attr]
    hang = " " * len(indent)
    out: list[str] = []
    current, used = indent, display_width(indent)
    for unit in _UNITS.findall(line[len(indent):]):
        w = display_width(unit)
        if unit.isspace():
            if used + w <= width:
                current, used = current + unit, used + w
            continue
        if used + w > width and current.strip():
            carry = ""
            if unit[0] in _NO_LINE_START and len(current) > len(hang) + 1:
                carry, current = current[-1], current[:-1]  # no line starts with '，'
            out.append(current.rstrip())
            current, used = hang + carry, len(hang) + display_width(carry)
        while not unit.startswith("http") and used + display_width(unit) > width \
                and display_width(unit) > width - len(hang):
            cut = _cut(unit, width - used)
            out.append(current + unit[:cut])
            unit, current, used = unit[cut:], hang, len(hang)
        current, used = current + unit, used + display_width(unit)
    if current.strip():
        out.append(current.rstrip())
    return out


def _cut(word: str, room: int) -> int:
    used = 0
    for i, ch in enumerate(word):
        used += display_width(ch)
        if used > room:
            return max(i, 1)
    return len(word)


def wrap_text(text: str, width: int = TEXT_WIDTH) -> str:
    lines = [wrapped for line in text.split("\n") for wrapped in wrap_line(line.rstrip(), width)]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip() + "\n"


def template_dirs(settings: Settings) -> list[Path]:
    """Folders whose changes should trigger a re-render (for the preview server)."""
    return [settings.templates_dir, packaged_templates()]
