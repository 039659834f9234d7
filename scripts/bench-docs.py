#!/usr/bin/env python3
"""Rebuild docs/benchmarks.md: its hand-written head (summary table, engine section) followed
by every per-area docs/bench-*.md, headings demoted one level (outside code fences)."""
import pathlib

DOCS = pathlib.Path(__file__).resolve().parent.parent / "docs"
MARK = "<!-- Everything below is generated from docs/bench-*.md by scripts/bench-docs.py. -->"
AREAS = ["engine", "pcap", "l7", "h2", "ebpf", "sinks", "vrl", "enrich", "observe"]


def demoted(text: str) -> str:
    lines, fence = [], False
    for line in text.splitlines():
        if line.startswith("```"):
            fence = not fence
        elif not fence and line.startswith("#"):
            line = "#" + line
        lines.append(line)
    return "\n".join(lines).strip() + "\n"


def main() -> None:
    out = DOCS / "benchmarks.md"
    text = out.read_text()
    head = text.split(MARK)[0] if MARK in text else text.split("## Benchmarks: record JSON writer")[0]
    parts = [head.rstrip() + "\n\n" + MARK + "\n"]
    parts += [demoted((DOCS / f"bench-{a}.md").read_text()) for a in AREAS]
    out.write_text("\n".join(parts))


if __name__ == "__main__":
    main()
