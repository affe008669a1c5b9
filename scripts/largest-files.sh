#!/usr/bin/env bash
# Report the largest Rust source files (lines) and the longest functions, to keep files
# to a few hundred lines and functions under ~70 (see ../shared/STYLE.md).
set -euo pipefail
cd "$(dirname "$0")/.."
echo "## largest files (lines)"
find protocol node tests -name '*.rs' -not -path '*/target/*' -print0 | xargs -0 wc -l | sort -rn | sed -n '2,11p'
echo "## longest functions (lines, approximate: from 'fn' to the closing brace at the same indent)"
find protocol node tests -name '*.rs' -not -path '*/target/*' -print0 | xargs -0 awk '
  match($0, /^( *)(pub(\([a-z]+\))? )?(async )?fn [a-z_0-9]+/) {
    if (name != "") {}
    indent = RLENGTH; split($0, a, "fn "); split(a[2], b, /[(<]/); name = b[1]; start = FNR; file = FILENAME;
    ind = match($0, /[^ ]/) - 1; pad = sprintf("%*s", ind, ""); next_close = pad "}"
  }
  name != "" && $0 == next_close { print FNR - start + 1, file ":" start, name; name = "" }
' | sort -rn | head -10
