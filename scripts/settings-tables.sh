#!/usr/bin/env bash
# Rewrites the generated settings tables of docs/configuration.md (between their
# <!-- settings … --> markers) from the Structs, as `corral-api config --markdown` and
# `corral-worker config --markdown` print them. packages/*/tests/test_settings.py fail while the
# page differs.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
tables=$(mktemp)
trap 'rm -f "$tables"' EXIT
./pants run packages/api:corral-api -- config --markdown >"$tables"
./pants run packages/worker:corral-worker -- config --markdown >>"$tables"
python3 - "$tables" <<'PY'
import re
import sys
from pathlib import Path

generated = Path(sys.argv[1]).read_text()
blocks = {
    match.group(1): match.group(0)
    for match in re.finditer(r"<!-- settings \[(\w+)\].*?<!-- end of settings \[\1\] -->", generated, re.S)
}
page = Path("docs/configuration.md")
text = page.read_text()
for section, block in blocks.items():
    pattern = re.compile(rf"<!-- settings \[{section}\].*?<!-- end of settings \[{section}\] -->", re.S)
    if not pattern.search(text):
        sys.exit(f"{page} has no generated table for [{section}]")
    text = pattern.sub(lambda _: block, text)
page.write_text(text)
print(f"{page}: rewrote the tables of {', '.join(sorted(blocks))}")
PY
