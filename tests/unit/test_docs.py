"""The README and the manual in docs/: the site builds without a warning, and what they name exists."""

from __future__ import annotations

import configparser
import re
import subprocess
import sys
from pathlib import Path

import markdown
import yaml

REPO = Path(__file__).resolve().parents[2]
README = REPO / "README.md"
DOCS = REPO / "docs"

#: Top-level folders whose paths the README and the manual may name in backticks.
CODE_ROOTS = ("core", "webapp", "jobrunner", "cli", "sql", "tests", "bench", "docs", ".ci")


def nav_pages(nav: list) -> list[str]:
    pages = []
    for entry in nav:
        value = next(iter(entry.values())) if isinstance(entry, dict) else entry
        pages += nav_pages(value) if isinstance(value, list) else [value]
    return pages


def test_the_manual_builds_in_strict_mode_without_a_warning(tmp_path):
    """A broken link or anchor, or a page missing from the nav, is a warning, and fails here."""
    config = yaml.safe_load((REPO / "mkdocs.yml").read_text(encoding="utf-8"))
    validation = config["validation"]
    assert validation["nav"]["omitted_files"] == "warn"
    assert validation["links"]["not_found"] == "warn"
    assert validation["links"]["anchors"] == "warn"
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "WARNING" not in output, output
    assert (tmp_path / "site" / "index.html").exists()


def test_every_page_is_in_the_nav_once():
    config = yaml.safe_load((REPO / "mkdocs.yml").read_text(encoding="utf-8"))
    pages = nav_pages(config["nav"])
    assert len(pages) == len(set(pages))
    assert sorted(pages) == sorted(p.relative_to(DOCS).as_posix() for p in DOCS.rglob("*.md"))


def test_the_readme_is_short_and_starts_with_the_two_commands():
    text = README.read_text(encoding="utf-8")
    assert len(text.splitlines()) <= 250
    block = text[text.index("## The two commands") :].split("```")[1]
    commands = [line.split("#")[0].strip() for line in block.splitlines()[1:] if line.strip()]
    assert commands == ["make run", "make test"]


def anchors(page: Path) -> set[str]:
    """The ids mkdocs gives the headings of a page (the same toc extension and slugs)."""
    html = markdown.markdown(page.read_text(encoding="utf-8"), extensions=["toc", "tables", "fenced_code"])
    return set(re.findall(r'id="([^"]+)"', html))


def test_the_readme_links_reach_existing_pages_and_headings():
    text = README.read_text(encoding="utf-8")
    links = re.findall(r"\]\(([^)\s]+)\)", text)
    local = [link for link in links if not re.match(r"[a-z]+:", link)]
    assert any(link.startswith("docs/") for link in local)
    broken = []
    for link in local:
        path, _, anchor = link.partition("#")
        target = REPO / path
        if not target.exists() or (anchor and anchor not in anchors(target)):
            broken.append(link)
    assert broken == []


def named_paths(text: str) -> set[str]:
    """Paths of the repository that a text names: in backticks, or as a module to run."""
    names = set()
    for token in re.findall(r"`([^`\s]+)`", text):
        if token.split("/")[0] in CODE_ROOTS and "/" in token and not re.search(r"[<*…]|NNNN", token):
            names.add(token.rstrip("/") or token)
    for module in re.findall(r"(?:python3? -m |python:)([A-Za-z_][\w.]*)", text):
        names.add(module.replace(".", "/"))
    return names


def exists(name: str) -> bool:
    path = REPO / name
    return path.exists() or path.with_suffix(".py").exists()


def test_every_path_the_readme_and_the_manual_name_exists():
    missing = {}
    for page in [README, *sorted(DOCS.glob("*.md"))]:
        gone = sorted(name for name in named_paths(page.read_text(encoding="utf-8")) if not exists(name))
        if gone:
            missing[page.relative_to(REPO).as_posix()] = gone
    assert missing == {}


def test_the_readme_layout_names_every_package():
    text = README.read_text(encoding="utf-8")
    layout = text[text.index("## Layout") : text.index("## Tests and benchmarks")]
    assert len([line for line in layout.splitlines() if line.startswith("- ")]) <= 10
    config = configparser.ConfigParser()
    config.read(REPO / "setup.cfg", encoding="utf-8")
    packages = [name.strip() for name in config["options"]["packages"].split(",") if name.strip()]
    unnamed = [p for p in packages if f"`{p.replace('.', '/')}/`" not in layout]
    assert unnamed == []
