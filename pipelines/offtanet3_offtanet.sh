#!/usr/bin/env bash
# Offtanet on the offtanet3 3-class set (see pipelines/flow3class.sh for the stages and environment variables).
# Usage:  pipelines/offtanet3_offtanet.sh OFFTANET3_ROOT [WORK_DIR]
set -euo pipefail
# shellcheck source=/dev/null
. "$(dirname "$0")/lib/usage.bash" "$@"
PIPELINE="$0 OFFTANET3_ROOT [WORK_DIR]" exec "$(dirname "$0")/flow3class.sh" offtanet3 offtanet "$@"
