#!/usr/bin/env bash
# Install the accuracy benchmark's baseline systems (benchmarks/accuracy/baselines.py says what each one is).
#
#   bash benchmarks/accuracy/install_baselines.sh
#   MAIN_VENV=/path/to/venv BENCH_VENV=/opt/bench-venv bash benchmarks/accuracy/install_baselines.sh
#
# Debian, as root or with sudo; safe to run again (it only installs what is missing, and retries what failed).
#   MAIN_VENV   the engine's venv, which must exist (default .venv at the repository root): vpdq and perception
#               go here, under constraints that hold numpy, torch, faiss-cpu, av, SQLAlchemy and Pillow at their
#               installed versions, so pip fails instead of moving them.
#   BENCH_VENV  a venv of its own for videohash (default $SORA_BENCH_VENV, else benchmarks/results/bench-venv in
#               the repository, which git ignores): videohash 3.0.1 calls PIL.Image.ANTIALIAS, which Pillow 10
#               removed, and the engine's Pillow must not change.
#               baselines.py finds it through SORA_BENCH_VENV (same default).
# A baseline that fails to install leaves its pip output's tail in $BENCH_VENV/install-failures/NAME.log, which
# baselines.unavailable_baselines() quotes; the others are still installed, and the script exits 1.
set -euo pipefail

HERE="$(cd "$(dirname "$0")" && pwd)"
REPO_ROOT="$(cd "$HERE/../.." && pwd)"
MAIN_VENV="${MAIN_VENV:-$REPO_ROOT/.venv}"
BENCH_VENV="${BENCH_VENV:-${SORA_BENCH_VENV:-$REPO_ROOT/benchmarks/results/bench-venv}}"

VPDQ="vpdq==0.2.5"
PERCEPTION="perception==0.9.3"
VIDEOHASH="videohash==3.0.1"
VIDEOHASH_PILLOW="pillow==9.5.0"
PINNED_RE='^(numpy|torch|faiss-cpu|av|sqlalchemy|pillow)=='

# ffmpeg: videohash runs the binary. The -dev packages, pkg-config, cmake and a compiler: vpdq builds from source
# against the system libav*. libjpeg/zlib headers: Pillow 9.5 builds from source on Pythons it has no wheel for.
APT_PACKAGES=(ffmpeg pkg-config cmake build-essential python3-dev python3-venv
              libavcodec-dev libavformat-dev libavdevice-dev libavfilter-dev libavutil-dev libswscale-dev
              libswresample-dev libjpeg-dev zlib1g-dev)

say() { printf 'install_baselines: %s\n' "$*" >&2; }

missing=()
for pkg in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if ((${#missing[@]})); then
  sudo=()
  [[ "$(id -u)" -eq 0 ]] || sudo=(sudo)
  say "apt-get install ${missing[*]}"
  "${sudo[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if [[ ! -x "$MAIN_VENV/bin/python" ]]; then
  say "no engine venv at $MAIN_VENV: create it first (README: python3 -m venv ... && pip install -e .), or set MAIN_VENV"
  exit 1
fi
if [[ ! -x "$BENCH_VENV/bin/python" ]]; then
  say "creating $BENCH_VENV"
  /usr/bin/python3 -m venv "$BENCH_VENV"
fi
mkdir -p "$BENCH_VENV/install-failures"

pins="$BENCH_VENV/main-venv-pins.txt"
"$MAIN_VENV/bin/python" -m pip list --format=freeze 2>/dev/null | grep -iE "$PINNED_RE" >"$pins" || true
say "holding in $MAIN_VENV: $(tr '\n' ' ' <"$pins")"

failed=0
# install NAME VENV PIP_ARGS...: pip install, recording the failure for baselines.py or clearing an old one.
install() {
  local name="$1" venv="$2"
  shift 2
  local log="$BENCH_VENV/install-failures/$name.log"
  say "$name -> $venv: pip install $*"
  if out="$("$venv/bin/python" -m pip install -q --disable-pip-version-check "$@" 2>&1)"; then
    rm -f "$log"
  else
    printf 'pip install %s failed:\n%s\n' "$*" "$(grep -v '^WARNING: Location' <<<"$out" | tail -n 20)" >"$log"
    say "$name FAILED (see $log):"
    tail -n 5 "$log" >&2
    failed=1
  fi
}

install vpdq "$MAIN_VENV" -c "$pins" "$VPDQ"
install perception "$MAIN_VENV" -c "$pins" "$PERCEPTION"
install videohash "$BENCH_VENV" "$VIDEOHASH" "$VIDEOHASH_PILLOW"

# What the benchmark will run, as baselines.py sees it.
SORA_BENCH_VENV="$BENCH_VENV" "$MAIN_VENV/bin/python" - "$HERE" <<'EOF'
import sys
sys.path.insert(0, sys.argv[1])
import baselines
print("available baselines:", ", ".join(baselines.available_baselines()) or "none", file=sys.stderr)
for name, why in baselines.unavailable_baselines().items():
    print(f"unavailable: {name}: {why}", file=sys.stderr)
EOF
exit "$failed"
