"""mkdocs hook: links from docs/ to repository files outside docs/ become code.

The guides link the scripts that produced their numbers
(`../../benchmarks/distillation_benchmark.py`). On GitHub those relative
links work; the site has no copy of the files (and no repository URL is
configured), so `mkdocs build --strict` would reject them. This hook turns
such a link, when its target exists in the repository, into the path as
code text; a link to a file that exists nowhere is left for mkdocs to
report. Used by mkdocs.yml (`hooks`).
"""

import os
import re

_LINK = re.compile(r"(?<!!)\[([^\]\n]+)\]\(([^)\s]+)\)")


def on_page_markdown(markdown, page, config, files, **kwargs):
    docs_dir = os.path.abspath(config["docs_dir"])
    root = os.path.dirname(os.path.abspath(config["config_file_path"]))
    page_dir = os.path.dirname(page.file.abs_src_path)

    def replace(match):
        text, target = match.groups()
        if "://" in target or target.startswith(("#", "/", "mailto:")):
            return match.group(0)
        path = os.path.normpath(os.path.join(page_dir, target.split("#")[0]))
        inside_docs = path.startswith(docs_dir + os.sep)
        inside_repository = path.startswith(root + os.sep)
        if inside_docs or not inside_repository or not os.path.exists(path):
            return match.group(0)
        relative = os.path.relpath(path, root)
        if text.strip("`") == relative:
            return f"`{relative}`"
        return f"{text} (`{relative}`)"

    return _LINK.sub(replace, markdown)
