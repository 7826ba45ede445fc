#!/usr/bin/env bash
# Sourced first by every pipelines/*.sh:  . "$(dirname "$0")/lib/usage.bash" "$@"
# With -h or --help as the first argument, prints the calling script's header comment
# (what it runs, its usage and environment variables) and exits 0.
set -euo pipefail
case "${1:-}" in
  -h | --help)
    sed -n '2,/^set -euo pipefail/{/^set -euo pipefail/d;s/^# \{0,1\}//;p;}' "$0"
    exit 0
    ;;
esac
