"""Items of a digest body: structure-based extraction over markdown-it-py's token tree."""

from newsletter.items.extract import (
    Extraction,
    Rules,
    compile_rules,
    extract,
    extract_items,
)
from newsletter.items.inline import web_url
from newsletter.items.item import Item
from newsletter.items.text import MD, first_heading, first_paragraph, markdown_to_text

__all__ = ["MD", "Extraction", "Item", "Rules", "compile_rules", "extract", "extract_items",
           "first_heading", "first_paragraph", "markdown_to_text", "web_url"]
