"""`newsletter init`: a starter site folder, written from the templates shipped in the wheel."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from jinja2 import ChoiceLoader, Environment, FileSystemLoader, StrictUndefined, select_autoescape

from newsletter.errors import ConfigError


def packaged_templates() -> Path:
    """The default templates: inside the installed package, or `templates/` in a checkout."""
    spec = importlib.util.find_spec("newsletter.templates")
    for location in (spec.submodule_search_locations or []) if spec else []:
        if (Path(location) / "email").is_dir():
            return Path(location)
    return Path(__file__).resolve().parent.parent / "templates"


def template_env(templates_dir: Path, folder: str) -> Environment:
    """Templates of `folder` ("email" or "web"): the site's own first, then the defaults;
    HTML autoescaped, anything undefined an error."""
    loaders = [FileSystemLoader(str(templates_dir / folder)),
               FileSystemLoader(str(packaged_templates() / folder))]
    return Environment(loader=ChoiceLoader(loaders), undefined=StrictUndefined,
                       autoescape=select_autoescape(["html.j2", "html"]))


def _starter_files() -> dict[str, str]:
    root = packaged_templates()
    files = {
        "newsletter.toml": (root / "starter" / "newsletter.toml").read_text("utf-8"),
        "subscribers/sample.csv": (root / "starter" / "sample.csv").read_text("utf-8"),
    }
    for folder in ("email", "web"):
        for entry in sorted((root / folder).iterdir()):
            if entry.is_file() and entry.suffix == ".j2":
                files[f"templates/{folder}/{entry.name}"] = entry.read_text("utf-8")
    return files


def write_starter(directory: Path) -> list[Path]:
    """Write every starter file, or nothing at all when any of them already exists."""
    files = _starter_files()
    existing = [directory / name for name in files if (directory / name).exists()]
    if existing:
        raise ConfigError(f"{existing[0]}: already exists; init never overwrites "
                          "(choose an empty folder: newsletter init NEWDIR)")
    written = []
    for name, text in sorted(files.items()):
        target = directory / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
        written.append(target)
    (directory / "content").mkdir(exist_ok=True)
    return written
