#!/usr/bin/env python3
"""Every `unsafe fn` in the workspace has a `# Safety` section in its doc comment.

    python3 tools/check_unsafe_docs.py      # lists the ones without; exit 1 if any

Clippy's `missing_safety_doc` covers public functions only, and most of ours are private; this
extends the rule to all of them (CI runs it). The doc comment is the run of `///` lines above the
function, attributes in between allowed.
"""
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
UNSAFE_FN = re.compile(r"^\s*(pub(\([^)]*\))?\s+)?(const\s+)?unsafe\s+(extern\s+\"[^\"]*\"\s+)?fn\s+(\$?\w+)")


def missing(path):
    lines = path.read_text().splitlines()
    for i, line in enumerate(lines):
        m = UNSAFE_FN.match(line)
        if not m:
            continue
        doc, j = [], i - 1
        while j >= 0:
            above = lines[j].strip()
            if above.startswith("///"):
                doc.append(above)
            elif not (above.startswith("#[") or above.startswith("//") or above == ""):
                break
            elif above == "" and not doc:
                break
            j -= 1
        if not any(d.startswith("/// # Safety") for d in doc):
            yield i + 1, m.group(5)


def main():
    bad = []
    for path in sorted(ROOT.glob("**/*.rs")):
        if "target" in path.relative_to(ROOT).parts:
            continue
        bad += [(path.relative_to(ROOT), line, name) for line, name in missing(path)]
    for path, line, name in bad:
        print(f"{path}:{line}: unsafe fn {name} has no `# Safety` section in its doc comment")
    if bad:
        sys.exit(1)
    print("check_unsafe_docs: every unsafe fn documents its safety contract")


if __name__ == "__main__":
    main()
