"""Front matter of a digest file: YAML (`---`), TOML (`+++`), JSON (`{ … }`) or
MultiMarkdown/Pelican `Key: value` lines; errors name the line and the fix."""

from __future__ import annotations

import json
import re
import tomllib
from typing import Any

import frontmatter
import yaml
from frontmatter.default_handlers import BaseHandler, JSONHandler, YAMLHandler

from newsletter.errors import ContentError

_KEY_LINE = re.compile(r"^[A-Za-z_][\w-]*\s*:(\s|$)")


_YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
HEADER_KEYS = ("date", "publishDate", "draft")


def _refuse_aliases(fm: str) -> None:
    """YAML aliases (`*name`) can expand into billions of values; front matter never
    needs them."""
    if "*" in fm and any(isinstance(event, yaml.AliasEvent)
                         for event in yaml.parse(fm, Loader=_YAML_LOADER)):
        raise yaml.YAMLError("YAML aliases (*name) are not allowed in front matter; "
                             "write the values out")


class _FastYAMLHandler(YAMLHandler):
    """YAML front matter with the C loader when PyYAML has one (10x faster)."""

    def load(self, fm: str, **kwargs: Any) -> Any:
        _refuse_aliases(fm)
        return yaml.load(fm, Loader=_YAML_LOADER)

    def load_keys(self, fm: str, keys: tuple[str, ...]) -> Any:
        """Parse the whole document (so errors show) but build only `keys`' values: for a
        post outside the window nothing else is needed, and building is the slow part."""
        _refuse_aliases(fm)
        loader = _YAML_LOADER(fm)
        try:
            node = loader.get_single_node()
            if node is None:
                return {}
            if not isinstance(node, yaml.MappingNode):
                return node.value
            return {k.value: loader.construct_object(v, deep=True) for k, v in node.value
                    if isinstance(k, yaml.ScalarNode) and k.value in keys}
        finally:
            loader.dispose()


class _TOMLHandler(BaseHandler):
    """`+++` TOML front matter with the standard library parser."""

    FM_BOUNDARY = re.compile(r"^\+{3,}\s*$", re.MULTILINE)
    START_DELIMITER = END_DELIMITER = "+++"

    def load(self, fm: str, **kwargs: Any) -> Any:
        return tomllib.loads(fm)


_HANDLERS = [_FastYAMLHandler(), _TOMLHandler(), JSONHandler()]


def split_front_matter(text: str, keys: tuple[str, ...] | None = None
                       ) -> tuple[dict[str, Any], str]:
    """Front matter and body; with `keys`, YAML front matter builds only those values."""
    handler = frontmatter.detect_format(text, _HANDLERS)
    if handler is None:
        header_lines = _key_value_header(text)
        if header_lines is not None:
            return header_lines
        lines = text.lstrip("\n").split("\n", 40)
        if lines and _KEY_LINE.match(lines[0]) and "---" in (ln.strip() for ln in lines[1:]):
            raise ContentError("front matter lacks its opening '---' line; add '---' as line 1")
        return {}, text
    try:
        fm, body = handler.split(text)
        if keys is not None and isinstance(handler, _FastYAMLHandler):
            meta = handler.load_keys(fm, keys)
        else:
            meta = handler.load(fm)
    except (yaml.YAMLError, tomllib.TOMLDecodeError, json.JSONDecodeError) as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 2}" if mark is not None else ""
        raise ContentError(f"bad front matter{where}: {_one_line(exc)}") from exc
    except ValueError as exc:
        raise ContentError(f"bad front matter: {_one_line(exc)}") from exc
    if meta is None:
        meta = {}
    if not isinstance(meta, dict):
        raise ContentError("front matter is not a mapping of keys to values")
    return meta, body


_LIST_KEYS = ("tags", "categories", "category", "keywords", "authors")


def _key_value_header(text: str) -> tuple[dict[str, Any], str] | None:
    """MultiMarkdown / Pelican metadata: `Key: value` lines up to the first blank line,
    naming at least a title or a date. Keys are case-insensitive; list keys split on commas."""
    head, _, body = text.lstrip("\n").partition("\n\n")
    lines = head.split("\n")
    if len(lines) > 60 or not all(_KEY_LINE.match(ln) or ln[:1] in " \t" for ln in lines):
        return None
    meta: dict[str, Any] = {}
    key = ""
    for line in lines:
        if line[:1] in " \t" and key:  # a continuation line
            meta[key] = f"{meta[key]} {line.strip()}"
            continue
        name, _, value = line.partition(":")
        key = name.strip().lower()
        meta[key] = value.strip()
    if not {"title", "date"} & meta.keys():
        return None
    for name in _LIST_KEYS:
        if isinstance(meta.get(name), str):
            meta[name] = [v.strip() for v in meta[name].split(",") if v.strip()]
    return meta, body


def _one_line(value: object) -> str:
    return " ".join(str(value).split())
