"""Prints the longest functions and the longest classes of a package.

    python scripts/function_lengths.py keras_selfdistill [--top 15]

Lengths are source lines from `def`/`class` to the last line, without the
docstring (a long docstring is documentation, not a long function).
"""

import argparse
import ast
import pathlib


def definitions(root):
    """Yields (kind, qualified name, lines) for every function and class."""
    for path in sorted(pathlib.Path(root).rglob("*.py")):
        tree = ast.parse(path.read_text())
        yield from _walk(tree, f"{path.relative_to(pathlib.Path(root).parent)}:")


def _walk(node, prefix):
    for child in ast.iter_child_nodes(node):
        if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            kind = "class" if isinstance(child, ast.ClassDef) else "function"
            name = f"{prefix}{child.name}"
            yield kind, name, _code_lines(child)
            yield from _walk(child, name + ".")


def _code_lines(node) -> int:
    lines = node.end_lineno - node.lineno + 1
    body = node.body
    if body and isinstance(body[0], ast.Expr) and isinstance(
        getattr(body[0], "value", None), ast.Constant
    ) and isinstance(body[0].value.value, str):
        lines -= body[0].end_lineno - body[0].lineno + 1
    return lines


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root")
    parser.add_argument("--top", type=int, default=15)
    args = parser.parse_args(argv)
    found = list(definitions(args.root))
    for kind, plural in (("function", "functions"), ("class", "classes")):
        rows = sorted((r for r in found if r[0] == kind), key=lambda r: -r[2])
        over_50 = sum(1 for r in rows if r[2] > 50)
        print(f"\n{plural}: {len(rows)}, over 50 lines: {over_50}")
        for _, name, lines in rows[: args.top]:
            print(f"{lines:5d}  {name}")


if __name__ == "__main__":
    main()
