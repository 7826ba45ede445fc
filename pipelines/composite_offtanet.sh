#!/usr/bin/env bash
# Offtanet on the megc2019 3-class set (see pipelines/flow3class.sh for the stages and environment variables).
# Usage:  pipelines/composite_offtanet.sh COMPOSITE_ROOT [WORK_DIR]
set -euo pipefail
# shellcheck source=/dev/null
. "$(dirname "$0")/lib/usage.bash" "$@"
PIPELINE="$0 COMPOSITE_ROOT [WORK_DIR]" exec "$(dirname "$0")/flow3class.sh" megc2019 offtanet "$@"
