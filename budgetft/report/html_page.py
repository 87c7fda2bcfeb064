"""A self-contained HTML page from a Markdown report: the PNGs it links are embedded, so the
page can be mailed or attached on its own. Uses markdown-it-py (already installed with rich)."""

from __future__ import annotations

import base64
import html
import re
from pathlib import Path

from markdown_it import MarkdownIt

STYLE = """
body { font: 15px/1.5 system-ui, sans-serif; max-width: 1100px; margin: 2em auto; padding: 0 1em; color: #222; }
table { border-collapse: collapse; margin: 1em 0; font-size: 13px; }
th, td { border: 1px solid #ddd; padding: 3px 8px; }
th { background: #f4f4f4; }
tr:nth-child(even) td { background: #fafafa; }
img { max-width: 100%; }
blockquote { border-left: 4px solid #e6a700; margin: 0; padding: 0 1em; background: #fff8e6; }
code { background: #f0f0f0; padding: 0 3px; }
"""


def html_page(markdown_text: str, title: str, image_dir: Path | None = None) -> str:
    body = MarkdownIt("commonmark", {"html": False}).enable("table").render(markdown_text)
    if image_dir is not None:
        body = re.sub(r'src="([^"/]+\.png)"', lambda m: f'src="{_data_uri(image_dir / html.unescape(m.group(1)), m.group(1))}"', body)
    return (f"<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{html.escape(title)}</title>"
            f"<style>{STYLE}</style></head><body>\n{body}</body></html>\n")


def _data_uri(path: Path, fallback: str) -> str:
    try:
        return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")
    except OSError:  # not drawn (yet): keep the relative link
        return fallback
