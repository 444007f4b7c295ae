"""The HTML page both doubles serve for a pull or merge request: its branches, its commit
statuses and its comments, rendered the way a forge shows them, so a browser (and a
screenshot) can show what a check reported. Everything from a request is escaped; comment
markdown is rendered with raw HTML off, like a forge's sanitizer."""

from __future__ import annotations

import html
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from markdown_it import MarkdownIt

_HIDDEN = re.compile(r"<!--.*?-->", re.DOTALL)
_ALLOWED_TAGS = ("details", "summary", "br", "b", "code")
"""Bare tags a forge's sanitizer keeps (no attributes, so nothing can run)."""
_markdown = MarkdownIt("commonmark", {"html": True}).enable("table").enable("strikethrough")


def _sanitized(_renderer: Any, tokens: Any, idx: int, _options: Any, _env: Any) -> str:
    """Raw HTML in a comment, as a forge's sanitizer keeps it: escaped, except the bare
    allowed tags. Only raw HTML comes here (code spans and text are other tokens), and the
    source is escaped first, so a written `&lt;b&gt;` stays text."""
    out = html.escape(tokens[idx].content, quote=False)
    for tag in _ALLOWED_TAGS:
        out = out.replace(f"&lt;{tag}&gt;", f"<{tag}>").replace(f"&lt;/{tag}&gt;", f"</{tag}>")
    return out


_markdown.add_render_rule("html_inline", _sanitized)
_markdown.add_render_rule("html_block", _sanitized)

_STYLE = """
body { font: 14px/1.5 -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; color: #1f2328;
       max-width: 980px; margin: 24px auto; padding: 0 16px; }
h1 { font-size: 24px; font-weight: 400; margin: 0 0 4px; } h1 .number { color: #59636e; }
.meta { color: #59636e; margin-bottom: 16px; } code { background: #eff1f3; padding: 1px 4px;
  border-radius: 4px; font-size: 85%; } .state { border-radius: 2em; padding: 3px 10px;
  color: #fff; font-weight: 600; margin-right: 6px; } .open { background: #1f883d; }
.closed { background: #8250df; } .box { border: 1px solid #d1d9e0; border-radius: 6px;
  margin: 16px 0; } .box > header { background: #f6f8fa; border-bottom: 1px solid #d1d9e0;
  padding: 8px 16px; border-radius: 6px 6px 0 0; } .box > div { padding: 8px 16px; }
.status { display: flex; gap: 8px; padding: 6px 16px; border-top: 1px solid #d1d9e0; }
.status:first-of-type { border-top: 0; } .success { color: #1a7f37; }
.failure, .error, .failed, .canceled { color: #d1242f; } .pending, .running { color: #9a6700; }
table { border-collapse: collapse; margin: 8px 0; } th, td { border: 1px solid #d1d9e0;
  padding: 4px 12px; } th { background: #f6f8fa; } pre { background: #f6f8fa; padding: 12px;
  border-radius: 6px; overflow: auto; }
"""


@dataclass(frozen=True)
class StatusLine:
    """One commit status as the page lists it."""

    context: str
    state: str
    description: str | None
    target_url: str | None


@dataclass(frozen=True)
class CommentBox:
    """One comment (GitHub issue comment, GitLab note)."""

    author: str
    created_at: str
    body: str


def render_markdown(body: str) -> str:
    """A comment's markdown as safe HTML: hidden comments dropped, raw HTML escaped but for
    a few bare tags, and links only where markdown-it allows them (no `javascript:`)."""
    return str(_markdown.render(_HIDDEN.sub("", body)))


def _link(url: str | None, text: str) -> str:
    if url and url.startswith(("http://", "https://")):
        return f'<a href="{html.escape(url)}">{html.escape(text)}</a>'
    return html.escape(text)


def change_request_page(
    *,
    forge: str,
    title: str,
    number: str,
    open_: bool,
    source: str,
    target: str,
    head_sha: str,
    statuses: Sequence[StatusLine],
    comments: Sequence[CommentBox],
) -> bytes:
    """The whole page, as UTF-8."""
    e = html.escape
    state = "Open" if open_ else "Closed"
    lines = (
        "".join(
            f'<div class="status"><b class="{e(s.state)}">{e(s.state)}</b>'
            f"<span>{_link(s.target_url, s.context)}</span>"
            f"<span>{e(s.description or '')}</span></div>"
            for s in statuses
        )
        or '<div class="status">No statuses on this commit.</div>'
    )
    boxes = "".join(
        f'<section class="box comment"><header><b>{e(c.author)}</b> commented '
        f"{e(c.created_at)}</header><div>{render_markdown(c.body)}</div></section>"
        for c in comments
    )
    page = (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8">'
        f"<title>{e(title)} · {e(forge)} double</title><style>{_STYLE}</style></head><body>"
        f'<h1>{e(title)} <span class="number">{e(number)}</span></h1>'
        f'<div class="meta"><span class="state {"open" if open_ else "closed"}">{state}</span>'
        f"<code>{e(source)}</code> into <code>{e(target)}</code> at <code>{e(head_sha[:7])}</code>"
        f"</div>"
        f'<section class="box statuses"><header>Checks</header>{lines}</section>'
        f"{boxes}</body></html>"
    )
    return page.encode()
