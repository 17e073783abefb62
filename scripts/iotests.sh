#!/usr/bin/env bash
# Runs QEMU's own qemu-iotests with IMGFMT=qed against `qed`: qemu-img and qemu-io are thin
# shims (`qemu-img SUB ...` -> `qed SUB ...`, `qemu-io ...` -> `qed io ...`, arguments
# unchanged). Not part of `npm test`: it needs QEMU's source and takes minutes.
#
#   scripts/iotests.sh [--qemu] [--all] [TEST ...]
#
#   --qemu   run with QEMU's own qemu-img/qemu-io instead (the baseline)
#   --all    every test `check -qed` knows, not just the list below
#   TEST     run only these tests (e.g. 001 052)
#
# The shims are symlinks named qemu-img and qemu-io to dist/src/cli/qed.cjs (the bundled bin).
# QEMU_SRC names the unpacked source of the installed QEMU (default /work/qemu-src/qemu-7.2+dfsg).
# Set up once, as root, on Debian 12:
#   sed -i 's/^Types: deb$/Types: deb deb-src/' /etc/apt/sources.list.d/debian.sources
#   apt-get update && apt-get install -y qemu-utils dpkg-dev
#   mkdir -p /work/qemu-src && cd /work/qemu-src && apt-get source qemu
# Build first (npm run build). Prints the check script's output, then "N passed, N failed".
set -euo pipefail

here="$(cd "$(dirname "$0")/.." && pwd)"
qemu_src="${QEMU_SRC:-/work/qemu-src/qemu-7.2+dfsg}"
iotests="$qemu_src/tests/qemu-iotests"

# The 45 tests of `check -qed` that pass with QEMU 7.2's own qemu-img and qemu-io on a machine
# without qemu-system, libnbd or FUSE (the others need those, another protocol, or a non-root
# user). 020, 033 and 251 also use blkdebug, QEMU's error-injection driver, which qed lacks.
default_tests=(001 002 003 004 005 008 009 010 011 012 017 018 019 020 021 024 025 027 032 033
  034 037 038 042 043 048 050 052 063 069 072 104 105 110 111 116 126 159 170 174 197 215 226
  251 279)

use_qemu=no
all=no
tests=()
for arg in "$@"; do
  case "$arg" in
    --qemu) use_qemu=yes ;;
    --all) all=yes ;;
    -h|--help) sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    -*) echo "iotests.sh: unknown option $arg" >&2; exit 2 ;;
    *) tests+=("$arg") ;;
  esac
done
[ "${#tests[@]}" -gt 0 ] || [ "$all" = yes ] || tests=("${default_tests[@]}")

if [ ! -x "$iotests/check" ]; then
  echo "iotests.sh: no qemu-iotests at $iotests: set QEMU_SRC (see the top of this script)" >&2
  exit 2
fi
cli="$here/dist/src/cli/qed.cjs"
if [ "$use_qemu" = no ] && [ ! -f "$cli" ]; then
  echo "iotests.sh: $cli missing: run npm run build first" >&2
  exit 2
fi

work="$(mktemp -d /tmp/qed-iotests-XXXXXX)"
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/bin" "$work/scratch" "$work/sock"

# check insists on a qemu-system binary and asks it for its machine types; tests that need
# one fail with this message (as they would with QEMU's tools on this machine).
cat > "$work/bin/qemu-system" <<'EOF'
#!/bin/sh
[ "$1 $2" = "-machine help" ] && exit 0
echo "qemu-system is not installed" >&2
exit 1
EOF

if [ "$use_qemu" = yes ]; then
  img=/usr/bin/qemu-img
  io=/usr/bin/qemu-io
else
  # qed run under the name qemu-io is `qed io`, under qemu-img plain `qed` (see src/cli/persona.ts):
  # the arguments pass unchanged, and error lines start with the tool's name as QEMU's do.
  ln -s "$cli" "$work/bin/qemu-img"
  ln -s "$cli" "$work/bin/qemu-io"
  img="$work/bin/qemu-img"
  io="$work/bin/qemu-io"
fi
chmod +x "$work/bin/qemu-system"

status=0
(cd "$iotests" && QEMU_PROG="$work/bin/qemu-system" QSD_PROG="$work/bin/qemu-system" \
  QEMU_IMG_PROG="$img" QEMU_IO_PROG="$io" QEMU_NBD_PROG="$(command -v qemu-nbd || echo "$work/bin/qemu-system")" \
  TEST_DIR="$work/scratch" SOCK_DIR="$work/sock" ./check -qed "${tests[@]}") | tr '\r' '\n' | tee "$work/log" || status=$?

passed=$(awk '$2 == "pass"' "$work/log" | wc -l)
failed=$(awk '$2 == "fail"' "$work/log" | wc -l)
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ] || exit 1
exit "$status"
