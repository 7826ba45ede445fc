#!/usr/bin/env bash
# DIANet on casme2 (see pipelines/dianet.sh for the stages and the environment variables).
# Usage:  pipelines/casme2_dianet.sh DATASET_ROOT [WORK_DIR] [MODEL]
set -euo pipefail
# shellcheck source=/dev/null
. "$(dirname "$0")/lib/usage.bash" "$@"
exec "$(dirname "$0")/dianet.sh" casme2 "$@"
