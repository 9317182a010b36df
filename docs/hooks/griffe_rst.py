"""Griffe extension: render the reStructuredText bits of flowlm's docstrings as Markdown.

flowlm's docstrings are Markdown-friendly Google style with a few rst constructs, rewritten here
when mkdocstrings loads the package (nothing in the source changes):

* ``:math:`x``` → ``$x$`` and ``.. math::`` blocks → ``$$ … $$`` (pymdownx.arithmatex + MathJax);
* ``:class:`~pkg.Name``` (also ``:func:``, ``:meth:``, ``:mod:``, ``:attr:``) → a cross-reference
  to the documented object (``~`` shows the last name only). References that name no documented
  object render as code instead of a link, so a docstring never breaks the build;
* doctest lines (``>>>`` and their output) become a fenced ``pycon`` block;
* a paragraph ending in ``::`` (rst's literal-block marker) ends in ``:``.
"""

from __future__ import annotations

import re
import textwrap
from typing import Any

import griffe

_ROLE = re.compile(r":(class|func|meth|mod|attr|obj|exc|data):`(~?)([^`]+)`")
_MATH = re.compile(r":math:`([^`]+)`")
_DIRECTIVE = re.compile(r"^(?P<indent>[ \t]*)\.\. math::[ \t]*(?P<arg>.*)$")


def _math_block(body: str, indent: str) -> str:
    body = textwrap.dedent(body).strip("\n")
    if "\\\\" in body:  # several lines: MathJax needs an environment for the line breaks
        env = "aligned" if "&" in body else "gathered"
        body = f"\\begin{{{env}}}\n{body}\n\\end{{{env}}}"
    return f"{indent}$$\n{textwrap.indent(body, indent)}\n{indent}$$"


def _math_blocks(text: str) -> str:
    lines = text.splitlines()
    out: list[str] = []
    i = 0
    while i < len(lines):
        m = _DIRECTIVE.match(lines[i])
        if not m:
            out.append(lines[i])
            i += 1
            continue
        indent = m.group("indent")
        body = [m.group("arg")] if m.group("arg").strip() else []
        i += 1
        while i < len(lines) and (not lines[i].strip() or len(lines[i]) - len(lines[i].lstrip()) > len(indent)):
            body.append(lines[i])
            i += 1
        while body and not body[-1].strip():
            body.pop()
        out.append(_math_block("\n".join(body), indent))
        out.append("")
    return "\n".join(out)


def _doctests(text: str) -> str:
    """Fence each run of ``>>>`` lines (and their output, up to a blank line) as a ``pycon`` block."""
    lines, out, i, fenced = text.splitlines(), [], 0, False
    while i < len(lines):
        line = lines[i]
        if line.lstrip().startswith("```"):
            fenced = not fenced
        if fenced or not line.lstrip().startswith(">>>"):
            out.append(line)
            i += 1
            continue
        indent = line[: len(line) - len(line.lstrip())]
        if out and out[-1].strip():
            out.append("")
        out.append(f"{indent}```pycon")
        while i < len(lines) and lines[i].strip():
            out.append(lines[i])
            i += 1
        out.append(f"{indent}```")
    return "\n".join(out)


def _role(m: re.Match[str]) -> str:
    short, target = m.group(2) == "~", m.group(3).strip()
    target = target.rstrip("()")
    title = target.rsplit(".", 1)[-1] if short else target
    if not target.startswith("flowlm.") and not target.startswith("torch."):
        return f"`{title}`"
    return f'<autoref identifier="{target}" optional><code>{title}</code></autoref>'


def rst_to_markdown(text: str) -> str:
    """The docstring ``text`` with the rst constructs above rewritten as Markdown."""
    end = "\n" if text.endswith("\n") else ""
    text = _doctests(_math_blocks(text)).rstrip("\n") + end
    text = _MATH.sub(lambda m: f"${m.group(1).strip()}$", text)
    text = _ROLE.sub(_role, text)
    return re.sub(r"(\S)::[ \t]*$", r"\1:", text, flags=re.MULTILINE)


class RstToMarkdown(griffe.Extension):
    """Rewrite every loaded docstring (modules, classes, functions, attributes)."""

    def on_instance(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        if obj.docstring is not None:
            obj.docstring.value = rst_to_markdown(obj.docstring.value)
