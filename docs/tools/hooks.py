"""MkDocs hook: the committed study reports become pages of the site.

`reports/NAME/report.md` and its plots stay where `keras-crl study` wrote
them; this adds them to the site under `reports/`, where the study page
links to them, instead of keeping a copy in `docs/`.
"""

import pathlib

from mkdocs.structure.files import File

ROOT = pathlib.Path(__file__).resolve().parents[2]


def on_files(files, config):
    for path in sorted((ROOT / "reports").rglob("*")):
        if path.suffix in (".md", ".png"):
            relative = path.relative_to(ROOT).as_posix()
            files.append(
                File(relative, str(ROOT), config["site_dir"], config["use_directory_urls"])
            )
    return files
