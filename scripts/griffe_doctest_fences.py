"""A griffe extension for the docs build: doctest examples become code blocks.

Keras-style docstrings put `>>>` examples under an "Example:" line without
indenting them, which Markdown would read as nested quotes. This wraps each
run of doctest lines (a `>>>` line, its `...` continuations and the output,
up to the next blank line) in a ```pycon fence. Lines already inside a fence
are left alone. Used by mkdocs.yml (mkdocstrings `extensions`).
"""

import griffe


def fence_doctests(text: str) -> str:
    """`text` with every doctest block outside a fence wrapped in one."""
    lines = text.split("\n")
    fenced = []
    in_fence = False
    index = 0
    while index < len(lines):
        line = lines[index]
        stripped = line.lstrip()
        if stripped.startswith("```"):
            in_fence = not in_fence
        elif not in_fence and stripped.startswith(">>>"):
            indent = line[: len(line) - len(stripped)]
            fenced.append(f"{indent}```pycon")
            while index < len(lines) and lines[index].strip():
                fenced.append(lines[index])
                index += 1
            fenced.append(f"{indent}```")
            continue
        fenced.append(line)
        index += 1
    return "\n".join(fenced)


class DoctestFences(griffe.Extension):
    """Fences the doctest examples of every docstring griffe loads."""

    def on_instance(self, *, obj, **kwargs) -> None:
        if obj.docstring is not None:
            obj.docstring.value = fence_doctests(obj.docstring.value)
