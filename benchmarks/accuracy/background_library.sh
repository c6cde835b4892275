#!/usr/bin/env bash
# A library of about 3 hours (10,938 vectors) for the tuning split's queries, past the size up to which a query
# scans every IVF list (SCAN_MIN_VECTORS, docs/tuning.md): the split's references and filler, and as background the
# held-out split's references and filler, those of a second held-out draw, and both draws' held-out queries.
#
#   bash benchmarks/accuracy/background_library.sh BENCH BENCH_H OUT
#   python benchmarks/accuracy/requery.py BENCH --index OUT/sora --split tune [FIELD=VALUE ...] --out RESULT.json
#
# BENCH is a split benchmark (generate.py --splits), BENCH_H its second held-out draw (generate.py --splits
# --heldout-draw 1). The background files are hard links in OUT/background (same file system as the benchmarks),
# renamed so that none is taken for a reference of the split. No tuning-split footage is in the background: the
# held-out split shares no source with it.
set -euo pipefail

if [ $# -ne 3 ]; then
    sed -n '2,7p' "$0" >&2
    exit 2
fi
BENCH=$1 BENCH_H=$2 OUT=$3
for d in "$BENCH/refs" "$BENCH/filler" "$BENCH/queries" "$BENCH_H/refs" "$BENCH_H/filler" "$BENCH_H/queries"; do
    [ -d "$d" ] || { echo "no folder $d: give two split benchmarks (generate.py --splits)" >&2; exit 2; }
done
REPO_ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
SORA_SEARCH=${SORA_SEARCH:-$REPO_ROOT/.venv/bin/sora-search}

mkdir -p "$OUT/background"
link() {  # link FILE... with the prefix $1
    local prefix=$1 f
    shift
    for f in "$@"; do ln -f "$f" "$OUT/background/${prefix}_$(basename "$f")"; done
}
link draw2_ref "$BENCH_H"/refs/h*.mp4
link draw2_filler "$BENCH_H"/filler/h*.mp4
link queries1 "$BENCH"/queries/h*.mp4
link queries2 "$BENCH_H"/queries/h*.mp4
"$SORA_SEARCH" index "$BENCH/refs" "$BENCH/filler" "$OUT/background" --index "$OUT/sora"
