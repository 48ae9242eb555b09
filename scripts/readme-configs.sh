#!/usr/bin/env bash
# Writes the complete collector configurations shown in the READMEs (yaml
# blocks with receivers: and service:) to DIR, one file each, for `make
# validate`. Partial snippets (an exporter to add, an ocb manifest) are not
# configurations and are left out.
set -euo pipefail
dir=$1
mkdir -p "$dir"
for md in README.md connector/README.md; do
  awk -v dir="$dir" -v base="$(echo "$md" | tr '/.' '__')" '
    /^```yaml$/ { inblock = 1; n++; buf = ""; next }
    /^```$/ && inblock { inblock = 0; if ((buf ~ /\nservice:/ || buf ~ /^service:/) && (buf ~ /\nreceivers:/ || buf ~ /^receivers:/)) { f = dir "/" base "-" n ".yaml"; printf "%s", buf > f; close(f) } ; next }
    inblock { buf = buf $0 "\n" }
  ' "$md"
done
ls "$dir"/*.yaml 2>/dev/null || true
