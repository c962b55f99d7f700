"""Which mentions are one story: link identity, hubs, near-duplicate headlines, summaries.

Two mentions are one story when their links name the same page and that page is not a
*hub* (a site's front page, or a page one digest gives several different headlines: an
aggregator or a placeholder), when their headlines are near-duplicates (the same event
told by another source under another link), or when a summary ties them: the digest's
own translation of a headline in another script, a story's point given as a bare line,
a trend's hashtag. Headlines are compared as sequences of tokens where a CJK character
is a token and a word of another script is one, so Chinese and English are measured
alike. Every merge keeps its reason, for `digests --stories`.
"""

from __future__ import annotations

import itertools
import re
import unicodedata
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from rapidfuzz import fuzz, process

from newsletter.urls import DEFAULT_RULES, UrlRules, is_site_root, normalize_url

SAME_STORY = 82  # headline similarity (0-100) that makes two mentions one story
SAME_PAGE_DIFFERENT_STORY = 45  # below this, two headlines on one page contradict it
SAME_HUB_STORY = 60  # two headlines on one hub page, from different digests
_CJK = "\u3040-\u30ff\u3400-\u9fff\uac00-\ud7af"
_LATIN = "a-z0-9\u00c0-\u00d6\u00d8-\u00f6\u00f8-\u024f\u1e00-\u1eff"  # "pokémon", "nguyễn"
# a Latin word, a CJK character, or a word of another script (Arabic, Devanagari, Cyrillic…);
# never punctuation, symbols, emoji, combining marks or variation selectors alone
_TOKEN = re.compile(rf"[{_LATIN}]+(?:[.'’-][{_LATIN}]+)*|[{_CJK}]"
                    rf"|[^\s\x00-\u036f\u1e00-\u1eff\u2000-\u2bff\u3000-\u303f{_CJK}"
                    rf"\ufe00-\ufe0f\uff00-\uffef\U0001f000-\U0001ffff\U000e0000-\U000e007f]+")
_HAS_CJK = re.compile(f"[{_CJK}]")
# a summary's first clause: for a headline in another script, often its translation
_FIRST_CLAUSE = re.compile(r"[^\n，。；：！？,.;:!?」』】”）)]+")
# "#LabourOut" (and in "#LabourOut冲上热搜"), "#乃木坂工事中"; not "#1", "#12345", "&#39;"
_HASHTAG = re.compile(r"(?<![\w&/])#(?:[a-z0-9_]{4,}(?![a-z0-9_])|\w{4,})", re.IGNORECASE)
_URL = re.compile(r"https?://\S+")  # a link's "#fragment" is no hashtag
SUMMARY_READ = 300  # how much of a summary is read: its opening says what it is about
_CUT_WORD = re.compile(r"#?[a-z0-9_]+$", re.IGNORECASE)
POINT_TOKENS = 8  # a headline this long found in another's summary is one of its points
SAME_POINT = 90  # how nearly (0-100) the summary must contain it
_ORDINAL = re.compile(r"^\s*(?:[(（]?\d{1,3}[.、)）](?!\d)|#\d{1,3}\s)\s*")  # "7. ", "(3)"
# "バレンタイン（情人节）", "人生逆転（人生逆转）": a name glossed, each side a name of the story
_GLOSSED = re.compile(r"^(?P<name>[^（(]+?)\s*[（(](?P<gloss>[^）)]+)[）)]\s*$")


Find = Callable[[int], int]  # a mention's story so far
Union = Callable[[int, int, str], None]  # join two mentions' stories, saying why


@dataclass(frozen=True)
class Mention:
    headline: str
    url: str | None
    digest: int  # which digest of the window told it
    summary: str = ""  # plain text


@dataclass(frozen=True)
class Merge:
    a: int
    b: int
    reason: str  # "same page <url>", "headlines <score>", "translated <text>", …


@dataclass(frozen=True)
class Clustering:
    groups: list[list[int]]  # mention indices, each group one story, in first-mention order
    merges: list[Merge]
    hubs: set[str]  # normalized links that name no single story


def headline_tokens(text: str) -> str:
    folded = unicodedata.normalize("NFKC", text).casefold()
    return " ".join(_TOKEN.findall(_ORDINAL.sub("", folded, count=1)))


def headline_names(text: str) -> list[str]:
    """The headline's tokens, and when it is a name with a gloss, each side."""
    names = [headline_tokens(text)]
    glossed = _GLOSSED.match(unicodedata.normalize("NFKC", text))
    if glossed:
        names += [headline_tokens(glossed["name"]), headline_tokens(glossed["gloss"])]
    return [n for n in names if n]


def summary_opening(summary: str) -> str:
    """What of a summary is read: its first SUMMARY_READ characters, without a Latin word
    or hashtag the cut split ("#LabourOut" is not "#Labour")."""
    opening = unicodedata.normalize("NFKC", summary[:SUMMARY_READ + 1])
    if len(opening) <= SUMMARY_READ:
        return opening
    return _CUT_WORD.sub("", opening[:-1]) if opening[-1].isalnum() else opening[:-1]


def translation(headline: str, opening: str) -> str:
    """For a headline with no CJK whose summary opens in CJK ("Valentine's Day":
    "情人节持续18小时"), that opening clause: often the digest's own translation."""
    clause = _FIRST_CLAUSE.match(opening.lstrip(" -*•\n「『【“（("))
    if clause and not _HAS_CJK.search(headline) and _HAS_CJK.match(clause[0]):
        return headline_tokens(clause[0])
    return ""


def similarity(a: str, b: str) -> float:
    """0–100: how alike two headlines are, order-aware, CJK and Latin alike."""
    ta, tb = headline_tokens(a), headline_tokens(b)
    return _score(ta, tb)


def _score(ta: str, tb: str) -> float:
    if not ta or not tb:
        return 0.0
    return max(fuzz.ratio(ta, tb), fuzz.token_sort_ratio(ta, tb))


def cluster(mentions: Sequence[Mention], rules: UrlRules = DEFAULT_RULES,
            threshold: float = SAME_STORY) -> Clustering:
    n = len(mentions)
    parent = list(range(n))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    merges: list[Merge] = []

    def union(a: int, b: int, reason: str) -> None:
        ra, rb = find(a), find(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
            merges.append(Merge(a, b, reason))

    tokens = [headline_tokens(m.headline) for m in mentions]
    openings = [summary_opening(m.summary) for m in mentions]
    pages: dict[str, list[int]] = defaultdict(list)
    for i, m in enumerate(mentions):
        if m.url:
            pages[normalize_url(m.url, rules)].append(i)
    hubs = {page for page, members in pages.items() if _is_hub(page, members, mentions, tokens)}
    for page, members in pages.items():
        if page not in hubs:
            for other in members[1:]:
                union(members[0], other, f"same page {page}")
            continue
        for k, a in enumerate(members):  # on a hub, a shared link still supports a merge
            for b in members[k + 1:]:
                if mentions[a].digest != mentions[b].digest:
                    score = _score(tokens[a], tokens[b])
                    if score >= SAME_HUB_STORY:
                        union(a, b, f"same hub page and headlines {score:.0f}")
    _join_trends(mentions, openings, tokens, union)
    names = [(i, name) for i, m in enumerate(mentions) for name in headline_names(m.headline)]
    same_words: dict[str, int] = {}
    for i, name in names:  # the same words, however short: the same story
        if same_words.setdefault(name, i) != i:
            union(same_words[name], i, "same headline")
    _merge_near_duplicates(names, threshold, union)
    _join_short_names(names, find, union)
    _join_translations(names, [translation(m.headline, o)
                               for m, o in zip(mentions, openings, strict=True)],
                       threshold, find, union)
    bare = [t if not m.url and not m.summary.strip() else ""
            for t, m in zip(tokens, mentions, strict=True)]
    _join_summary_points(bare, [headline_tokens(o) for o in openings], find, union)
    groups: dict[int, list[int]] = defaultdict(list)
    for i in range(n):
        groups[find(i)].append(i)
    return Clustering(sorted(groups.values()), merges, hubs)


def _hashtags(text: str) -> set[str]:
    text = _URL.sub(" ", unicodedata.normalize("NFKC", text))
    return {t.casefold() for t in _HASHTAG.findall(text) if not t[1:].isdigit()}


def _join_trends(mentions: Sequence[Mention], openings: list[str], tokens: list[str],
                 union: Union) -> None:
    """A hashtag in a mention's headline ("#LabourOut") names its trend as a link names a
    page, wherever another mention writes it; one written only in summaries is a passing
    mention. A tag one digest gives dissimilar headlines, or that dissimilar stories
    write in passing ("对标 #OpenAI", "与 #OpenAI 的合作"), names no single story."""
    tagged = [_hashtags(m.headline) for m in mentions]
    trends: dict[str, list[int]] = defaultdict(list)
    for i, opening in enumerate(openings):
        for tag in sorted((tagged[i] | _hashtags(opening)) & set().union(*tagged)):
            trends[tag].append(i)
    for tag, members in trends.items():
        in_passing = [i for i in members if tag not in tagged[i]]
        if not _is_hub(tag, members, mentions, tokens) and not _dissimilar(in_passing, tokens):
            for other in members[1:]:
                union(members[0], other, f"same hashtag {tag}")


def _dissimilar(members: list[int], tokens: list[str]) -> bool:
    return any(_score(tokens[a], tokens[b]) < SAME_PAGE_DIFFERENT_STORY
               for k, a in enumerate(members) for b in members[k + 1:])


def _is_hub(page: str, members: list[int], mentions: Sequence[Mention], tokens: list[str]
            ) -> bool:
    """A front page, or a page (or hashtag) given dissimilar headlines inside one digest."""
    if not page.startswith("#") and is_site_root("https://" + page):
        return True
    by_digest: dict[int, list[int]] = defaultdict(list)
    for i in members:
        by_digest[mentions[i].digest].append(i)
    return any(_dissimilar(same_digest, tokens) for same_digest in by_digest.values())


def _join_short_names(names: list[tuple[int, str]], find: Find, union: Union) -> None:
    """A headline that is only a name ("Massie", "Veo 3.1", "AlphaFold") is the story
    of the headlines naming it, when those are all one story; a name found in several
    stories ("OpenAI"), or in a headline naming several ("InterJuve、Valverde"), stays
    apart."""
    padded = [(i, f" {t} ") for i, t in names]
    naming: dict[tuple[int, str], list[int]] = {}
    for i, name in names:
        if len(name.split()) <= 2 and len(name.replace(" ", "")) >= 4 and \
                any(c.isascii() and c.isalpha() for c in name):
            naming[i, name] = [j for j, text in padded if text != f" {name} "
                               and _contains(text, f" {name} ")]
    names_in: dict[int, set[str]] = defaultdict(set)
    for (_, name), found in naming.items():
        for j in found:
            names_in[j].add(name)
    # the longest names first: "Thomas Massie" joins its story before "Massie" looks
    for (i, name), found in sorted(naming.items(), key=lambda kv: -len(kv[0][1])):
        stories = {find(j) for j in found} - {find(i)}  # its own glosses name it too
        if len(stories) == 1 and all(len(_outermost(names_in[j])) == 1 for j in found):
            union(stories.pop(), i, f"name {name}")


def _join_translations(names: list[tuple[int, str]], translations: list[str],
                       threshold: float, find: Find, union: Union) -> None:
    """A headline in another script joins the one story whose CJK headline its
    translation is, opens with ("情人节" of "バレンタイン（情人节）" opens "情人节持续18小时")
    or nearly is. A translation that fits several stories is a description ("足球运动员"),
    not a name; a story that several different headlines translate into is a topic
    ("特朗普" opens the tariffs, the pardon and the summit), not their story."""
    cjk = [(j, name) for j, name in names if _HAS_CJK.search(name)]
    texts = [name for _, name in cjk]
    opening: dict[str, list[int]] = defaultdict(list)  # first word -> names
    for k, name in enumerate(texts):
        if len(name.split()) >= 3:  # "泰国" opens "泰国电视剧" and "泰国明星" alike
            opening[name.split()[0]].append(k)
    translating: dict[int, list[tuple[int, int, str]]] = defaultdict(list)
    for i, said in enumerate(translations):
        if not said:
            continue
        fitting = set(_near(said, texts, threshold))
        fitting.update(k for k in opening[said.split()[0]] if f"{said} ".startswith(f"{texts[k]} "))
        fits = {find(cjk[k][0]): cjk[k][0] for k in sorted(fitting)}
        fits.pop(find(i), None)
        if len(fits) == 1:
            story, j = fits.popitem()
            translating[story].append((j, i, said))
    for told in translating.values():
        if len({find(i) for _, i, _ in told}) == 1:
            for j, i, said in told:
                union(j, i, f"translated {said.replace(' ', '')}")


def _join_summary_points(points: list[str], summaries: list[str], find: Find,
                         union: Union) -> None:
    """A bare line (no summary, no link) that another mention's summary nearly contains
    is one of that story's points ("连接政府、科技公司与非营利组织" under "J-PAL启动AI扶贫
    计划", whose summary reads "连接政府、科技公司和非营利组织，…"): a digest that gave the
    story's points as items of their own. `points` holds the bare lines' tokens, "" for
    the rest. Only when one other story's summary holds it."""
    holding_pair: dict[tuple[str, str], set[int]] = defaultdict(set)
    for j, summary in enumerate(summaries):
        for pair in _word_pairs(summary):
            holding_pair[pair].add(j)
    for i, line in enumerate(points):
        if len(line.split()) < POINT_TOKENS:
            continue
        pairs = _word_pairs(line)
        # a summary that nearly holds the line holds at least half its pairs of words
        held = Counter(j for pair in pairs for j in holding_pair.get(pair, ()))
        holding = {find(j): j for j in sorted(held) if held[j] * 2 >= len(pairs)
                   and len(summaries[j]) >= len(line)
                   and fuzz.partial_ratio(line, summaries[j], score_cutoff=SAME_POINT)}
        holding.pop(find(i), None)
        if len(holding) == 1:
            union(holding.popitem()[1], i, "point of its summary")


def _word_pairs(text: str) -> set[tuple[str, str]]:
    return set(itertools.pairwise(text.split()))


def _outermost(names: set[str]) -> set[str]:
    """The names not part of a longer one ("Massie" is part of "Thomas Massie")."""
    return {n for n in names if not any(n != m and f" {n} " in f" {m} " for m in names)}


def _contains(longer: str, shorter: str) -> bool:
    """Words inside a longer headline; CJK characters only as its opening topic
    ("情人节" in "情人节话题持续热度"): further in, they are qualified into something else
    ("情人节" in "白色情人节", "巧克力" in "情人节巧克力")."""
    if shorter not in longer:
        return False
    return any(c.isascii() and c.isalnum() for c in shorter) or longer.startswith(shorter)


def _numbers(tokens: str) -> tuple[str, ...]:
    return tuple(t for t in tokens.split() if any(c.isdigit() for c in t))


def _near(text: str, texts: list[str], threshold: float) -> dict[int, float]:
    """The texts (by index) at least `threshold` alike to `text`, with their score."""
    best: dict[int, float] = {}
    for scorer in (fuzz.ratio, fuzz.token_sort_ratio):
        for _, score, k in process.extract(text, texts, scorer=scorer, score_cutoff=threshold,
                                           limit=None):
            best[k] = max(best.get(k, 0.0), score)
    return best


def _merge_near_duplicates(names: list[tuple[int, str]], threshold: float, union: Union
                           ) -> None:
    """Union every pair of headlines (three tokens or more) at or above `threshold`."""
    indexed = [(i, t) for i, t in names if len(t.split()) >= 3]
    texts = [t for _, t in indexed]
    for a, text in enumerate(texts):
        later = texts[a + 1:]
        best = _near(text, later, threshold)
        numbers = _numbers(text)
        padded = f" {text} "
        for b, other in enumerate(later):  # "Gemini 3 Deep Think" in a longer headline
            if _contains(padded, f" {other} ") or _contains(f" {other} ", padded):
                best.setdefault(b, 100.0)
        for b, score in best.items():
            theirs = _numbers(later[b])
            if numbers and theirs and numbers != theirs:
                continue  # "GPT-5" is not "GPT-4", "$2B" is not "$3B"
            if indexed[a][0] != indexed[a + 1 + b][0]:
                union(indexed[a][0], indexed[a + 1 + b][0], f"headlines {score:.0f}")
