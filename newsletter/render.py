"""Render a variant into subject, HTML and text, with slots for per-subscriber values.

Digest text is untrusted: Markdown is rendered with markdown-it-py and its HTML sanitized
with nh3; it reaches Jinja only as data, so template syntax in it stays literal. The size
budget is decided from the plan: the template is rendered with fewer stories until it fits,
then CSS is inlined (usually once per variant), so any template works, markers or not.
"""

from __future__ import annotations

import functools
import logging
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nh3
from jinja2 import Environment, nodes
from markdown_it import MarkdownIt
from markupsafe import Markup, escape
from wcwidth import wcswidth, wcwidth

from newsletter import dates
from newsletter.compose import Edition, Story, VariantPlan
from newsletter.config import Settings
from newsletter.starter import packaged_templates, template_env

SLOT_NAMES = ("greeting", "preferences_url", "unsubscribe_url", "more")
TEXT_WIDTH = 78
_MD = MarkdownIt("commonmark", {"html": True, "linkify": False})
_ALLOWED_TAGS = {"p", "a", "strong", "em", "b", "i", "code", "pre", "ul", "ol", "li", "br",
                 "blockquote", "span", "del", "sup", "sub"}


@functools.lru_cache(maxsize=8192)  # a story's summary is rendered again while fitting
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
        # the greeting has its own line in the text part: wrap it once the name is in
        text_values = {**values, slots.greeting: "\n".join(wrap_line(greeting))}
        return _fill(self.html, html_values), _fill(self.text, text_values)


def _fill(template: str, values: dict[str, str]) -> str:
    pattern = re.compile("|".join(re.escape(k) for k in values))
    return pattern.sub(lambda m: values[m.group(0)], template)


GREETING_CACHE = 10_000
NAME_MARK = f"nlname{secrets.token_hex(6)}"


def name_only_printed(env: Environment, template: str) -> bool:
    """Whether `template` uses `name` only as `{{ name }}` and `{% if name %}` (and is not
    autoescaped): then every non-empty name gives the same text with the name put in."""
    if env.autoescape is True or (callable(env.autoescape) and env.autoescape(template)):
        return False
    assert env.loader is not None
    tree = env.parse(env.loader.get_source(env, template)[0])

    def plain(node: nodes.Node) -> bool:
        if isinstance(node, nodes.Extends | nodes.Include | nodes.Import | nodes.FromImport):
            return False  # another template may use the name otherwise
        for field, value in node.iter_fields():
            for child in value if isinstance(value, list) else [value]:
                if not isinstance(child, nodes.Node):
                    continue
                if isinstance(child, nodes.Name) and child.name == "name":
                    if child.ctx != "load" or not (
                            (isinstance(node, nodes.Output) and field == "nodes")
                            or (isinstance(node, nodes.If) and field == "test")):
                        return False
                elif not plain(child):
                    return False
        return True

    return plain(tree)


class Renderer:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.env = template_env(settings.templates_dir, "email")
        self.env.filters["markdown"] = markdown_html
        lang = settings.language
        self.env.filters["day"] = lambda value: dates.day(value, lang)
        self.env.filters["span"] = lambda start, end: dates.span(start, end, lang)
        self._greeting = self.env.get_template("greeting.txt.j2")
        # the greeting with a stand-in for any non-empty name, when the template only
        # prints the name and tests whether there is one: then no rendering per name
        self._greeting_shape = (self._render_greeting(NAME_MARK)
                                if name_only_printed(self.env, "greeting.txt.j2") else None)
        self._growth = 1.0  # inlined bytes per template byte of stories, learned
        self._bare: tuple[int, int] | None = None  # the page without stories: raw, inlined
        self._greetings: dict[str, str] = {}

    def greeting(self, name: str) -> str:
        """The greeting line for `name`, rendered from the template for each name (a
        template may branch on the name); the same name is rendered once."""
        name = " ".join(name.split())
        if name and self._greeting_shape is not None:
            return " ".join(self._greeting_shape.replace(NAME_MARK, name).split())
        found = self._greetings.get(name)
        if found is None:
            if len(self._greetings) >= GREETING_CACHE:
                self._greetings.clear()
            found = self._greetings[name] = self._render_greeting(name)
        return found

    def _render_greeting(self, name: str) -> str:
        return " ".join(self._greeting.render(name=name, lang=self.settings.language).split())

    def _context(self, edition: Edition, plan: VariantPlan, slots: Slots,
                 web: bool = False) -> dict[str, Any]:
        s = self.settings
        start = edition.window.start.astimezone(s.timezone).date()
        ids = {story.key: n for n, story in enumerate(plan.stories)}
        words = self.env.get_template("strings.j2").make_module({"lang": s.language}).t  # type: ignore[attr-defined]
        titles = {"top": words["top"], "more": words["more_section"]}
        archive = archive_url(s, edition.number)
        return {
            "web": web, "intro": edition.intro, "toc_mark": _toc_mark(slots),
            "archive_url": archive, "web_url": f"{archive}{plan.key}/",
            "subscribe_url": f"{s.public_url}/subscribe",
            "name": s.name, "lang": s.language, "tz": s.timezone, "number": edition.number,
            "start": start, "end": edition.window.last_day, "site_url": s.base_url,
            "postal_address": s.postal_address, "slot": slots,
            "categories": [edition.labels.get(c, c) for c in sorted(plan.categories)],
            "sections": [_SectionView(sec.key, sec.label, titles.get(sec.key, sec.label),
                                      [(ids[st.key], st) for st in sec.stories])
                         for sec in plan.sections],
            "digests": edition.digests, "dropped": plan.dropped,
            "story_count": len(plan.stories),
        }

    def subject(self, edition: Edition, plan: VariantPlan) -> str:
        text = self.env.get_template("subject.txt.j2").render(
            self._context(edition, plan, Slots("")), stories=len(plan.stories))
        return " ".join(text.split())  # one line, whatever the template does

    def render(self, edition: Edition, plan: VariantPlan, *, web: bool = False
               ) -> RenderedVariant:
        """The variant's email; `web` renders the archive page: no budget, no personal links."""
        slots = Slots(secrets.token_hex(8))
        subject = self.subject(edition, plan)
        template = self.env.get_template("email.html.j2")

        def html_of(shown: VariantPlan) -> str:
            return template.render(self._context(edition, shown, slots, web), subject=subject,
                                   preheader=self._preheader(shown))

        if web:
            html = inline_css(html_of(plan))
        else:
            html, plan = self._fit(edition, plan, html_of, slots)
        html = _fill_toc(html, plan, {s.key for s in plan.stories}, _toc_mark(slots))
        html = html.replace(slots.more, str(plan.dropped))
        if not plan.dropped:
            html = _remove_block(html, "more")
        text = self.env.get_template("email.txt.j2").render(
            self._context(edition, plan, slots, web))
        return RenderedVariant(key=plan.key, categories=plan.categories, subject=subject,
                               html=html, text=wrap_text(text), nonce=slots.nonce,
                               stories=len(plan.stories), dropped=plan.dropped)

    def _fit(self, edition: Edition, plan: VariantPlan, html_of: Callable[[VariantPlan], str],
             slots: Slots) -> tuple[str, VariantPlan]:
        """The best-ranked stories whose inlined HTML fits the budget, decided from the plan:
        the template is rendered (cheap) until its size, grown by what inlining adds, fits;
        then CSS is inlined once. What inlining adds is learned from each inlining (a fixed
        part, from the page without stories, and a part per byte of stories), so a variant
        usually needs one. Any template works: nothing is cut out of the HTML."""
        budget = self.settings.max_html_bytes
        rank = {s.key: n for n, s in enumerate(edition.stories)}
        ranked = sorted((s.key for s in plan.stories), key=lambda k: rank.get(k, len(rank)))

        def first(n: int) -> VariantPlan:
            return plan if n >= len(ranked) else plan.keep(set(ranked[:n]))

        def estimate(text: str) -> float:
            if self._bare is None:
                return self._filled_size(text, slots) * self._growth
            raw, inlined = self._bare
            return inlined + (self._filled_size(text, slots) - raw) * self._growth

        count, text = len(ranked), html_of(plan)
        while True:
            if estimate(text) > budget and count > 1:
                if self._bare is None:  # the page without stories, inlined once
                    bare = html_of(first(0))
                    self._bare = (self._filled_size(bare, slots),
                                  self._filled_size(inline_css(bare), slots))
                low, high = 1, count - 1  # the largest count whose estimate fits
                while low < high:
                    middle = (low + high + 1) // 2
                    if estimate(html_of(first(middle))) <= budget:
                        low = middle
                    else:
                        high = middle - 1
                count, text = low, html_of(first(low))
            html = inline_css(text)
            size = self._filled_size(html, slots)
            if self._bare is not None and len(text) > self._bare[0]:
                raw, inlined = self._bare
                self._growth = max(1.0, (size - inlined) / (self._filled_size(text, slots) - raw))
            if size <= budget or count <= 1:
                return html, first(count)
            count = max(1, count - max(1, count // 50))
            text = html_of(first(count))

    def _preheader(self, plan: VariantPlan) -> str:
        return " · ".join(s.headline for s in plan.stories[:3])

    def _filled_size(self, html: str, slots: Slots) -> int:
        """Bytes once slots hold realistic values (long name, signed-token URLs)."""
        url = f"{self.settings.public_url}/preferences/" + "x" * 120
        values = {slots.greeting: str(escape(self.greeting("N" * 40))),
                  slots.preferences_url: url, slots.unsubscribe_url: url, slots.more: "999"}
        return len(_fill(html, values).encode("utf-8"))


def archive_url(settings: Settings, number: int) -> str:
    """The public page of edition `number` (its variants and digests)."""
    return f"{settings.public_url}/editions/{number}/"


@dataclass(frozen=True)
class _SectionView:
    key: str
    label: str
    title: str  # what the reader sees: the label, or "Top stories" / "More"
    stories: list[tuple[int, Story]]


def _toc_mark(slots: Slots) -> str:
    return f"nltoc{slots.nonce}n"


def _fill_toc(html: str, plan: VariantPlan, kept: set[str], mark: str) -> str:
    """Story counts in the table of contents, once the budget has chosen the stories;
    a section the budget emptied leaves the contents too."""
    for n, section in enumerate(plan.sections, start=1):
        count = sum(story.key in kept for story in section.stories)
        html = (html.replace(f"{mark}{n}z", str(count)) if count
                else _remove_block(html, f"toc:{n}"))
    return html


def _remove_block(html: str, name: str) -> str:
    return re.sub(f"<!--{name}-->.*?<!--/{name}-->\n?", "", html, count=1, flags=re.DOTALL)


# ---------------------------------------------------------------- plain text wrapping

def display_width(text: str) -> int:
    """Terminal columns (wcwidth): CJK counts 2, combining marks 0, an emoji sequence 2."""
    width: int = wcswidth(text)
    return width if width >= 0 else sum(max(int(wcwidth(ch)), 0) for ch in text)


# CJK scripts and full-width forms: they break anywhere, and a URL ends where they begin
_CJK = (r"\u1100-\u115f\u2e80-\ua4cf\uac00-\ud7a3\uf900-\ufaff\ufe30-\ufe4f"
        r"\uff00-\uff60\uffe0-\uffe6")
_UNITS = re.compile(rf"https?://[^\s{_CJK}]+|[^\s{_CJK}]+|\s+|.", re.DOTALL)
_URL_THEN_CJK = re.compile(rf"(https?://[^\s{_CJK}]+)(?=[{_CJK}])")
_NO_LINE_START = set("，。、；：！？）》」』】,.;:!?)]}%")


def wrap_line(line: str, width: int = TEXT_WIDTH) -> list[str]:
    """Wrap one line at `width` display columns; CJK may break anywhere, URLs never, and a
    line never starts with closing punctuation (the token before it moves along)."""
    line = _URL_THEN_CJK.sub(r"\1 ", line)  # so mail clients end the link there too
    if display_width(line) <= width:
        return [line]
    indent = re.match(r"\s*(?:[-*] |\d+\. )?", line).group(0)  # type: ignore[union-attr]
    hang = " " * len(indent)
    out: list[str] = []
    current, used, last = indent, display_width(indent), ""
    for unit in _UNITS.findall(line[len(indent):]):
        w = display_width(unit)
        if unit.isspace():
            if used + w <= width:
                current, used = current + unit, used + w
            last = ""
            continue
        if used + w > width and current.strip():
            carry = ""
            if unit[0] in _NO_LINE_START and last and len(current) - len(last) > len(hang):
                carry, current = last, current[:-len(last)]  # "GPT-5，" stays whole
            out.append(current.rstrip())
            current, used = hang + carry, len(hang) + display_width(carry)
        while not unit.startswith("http") and used + display_width(unit) > width \
                and display_width(unit) > width - len(hang):
            cut = _cut(unit, width - used)
            out.append(current + unit[:cut])
            unit, current, used = unit[cut:], hang, len(hang)
        current, used, last = current + unit, used + display_width(unit), unit
    if current.strip():
        out.append(current.rstrip())
    return out


def _cut(word: str, room: int) -> int:
    for i in range(1, len(word) + 1):
        if display_width(word[:i]) > room:
            return max(i - 1, 1)
    return len(word)


def wrap_text(text: str, width: int = TEXT_WIDTH) -> str:
    lines = [wrapped for line in text.split("\n") for wrapped in wrap_line(line.rstrip(), width)]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip() + "\n"


def template_dirs(settings: Settings) -> list[Path]:
    """Folders whose changes should trigger a re-render (for the preview server)."""
    return [settings.templates_dir, packaged_templates()]
