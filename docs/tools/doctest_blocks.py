"""Griffe extension: Keras-style docstrings as Google-style parsing wants them.

Two habits of this project's docstrings that the parser would misread; the
docstrings themselves stay as they are (doctest runs them):

- `Example:` followed by a blank line and unindented `>>>` lines stays plain
  text, where Markdown would read `>>>` as a nested quote: each run of `>>>`
  lines and their output is wrapped in a ```pycon fence.
- `x, y: ...` in `Args:` documents two arguments at once (the parser wants
  one name per item, and warns that "x, y" is not a parameter): the item is
  repeated for each name. A list of names may wrap over lines ending in ",".
"""

import re

import griffe

_ARGS_TITLE = re.compile(r"^(\s*)Args:\s*$")
_NAMES = re.compile(r"^\*{0,2}\w+(\s*,\s*\*{0,2}\w+)*$")


def fence_doctests(lines):
    """Returns `lines` with every `>>>` block (prompts and output) fenced."""
    out = []
    in_fence = in_example = False
    for line in lines:
        stripped = line.strip()
        if stripped.startswith("```"):
            in_fence = not in_fence
        elif not in_fence and not in_example and stripped.startswith(">>>"):
            out.append("```pycon")
            in_example = True
        elif in_example and not stripped:
            out.append("```")
            in_example = False
        out.append(line)
    if in_example:
        out.append("```")
    return out


def _indent(line):
    return len(line) - len(line.lstrip())


def split_grouped_args(lines):
    """Returns `lines` with each `a, b: text` item of `Args:` repeated per name."""
    out = []
    i = 0
    while i < len(lines):
        title = _ARGS_TITLE.match(lines[i])
        out.append(lines[i])
        i += 1
        if not title:
            continue
        section_indent = len(title.group(1))
        item_indent = None
        while i < len(lines) and (not lines[i].strip() or _indent(lines[i]) > section_indent):
            line = lines[i]
            if not line.strip() or (item_indent is not None and _indent(line) > item_indent):
                out.append(line)
                i += 1
                continue
            item_indent = _indent(line)
            # An item's head: names up to the first ":", possibly over lines.
            head = [line]
            while (
                head[-1].rstrip().endswith(",")
                and ":" not in head[-1]
                and i + len(head) < len(lines)
            ):
                head.append(lines[i + len(head)])
            i += len(head)
            body = []
            while i < len(lines) and lines[i].strip() and _indent(lines[i]) > item_indent:
                body.append(lines[i])
                i += 1
            names, _, text = " ".join(part.strip() for part in head).partition(":")
            if "," in names and _NAMES.match(names.strip()):
                for name in names.split(","):
                    out.append(f"{' ' * item_indent}{name.strip()}:{text}")
                    out.extend(body)
            else:
                out.extend(head + body)
    return out


class DoctestBlocks(griffe.Extension):
    def on_instance(self, *, obj, **kwargs):
        if obj.docstring is None:
            return
        lines = obj.docstring.value.split("\n")
        obj.docstring.value = "\n".join(fence_doctests(split_grouped_args(lines)))
