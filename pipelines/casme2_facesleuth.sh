#!/usr/bin/env bash
# FaceSleuth on casme2 (see pipelines/facesleuth.sh for the stages and environment variables).
# Usage:  pipelines/casme2_facesleuth.sh DATA/CASME2 [WORK_DIR] [MODEL]
set -euo pipefail
# shellcheck source=/dev/null
. "$(dirname "$0")/lib/usage.bash" "$@"
PIPELINE="$0 DATA/CASME2 [WORK_DIR] [MODEL]" exec "$(dirname "$0")/facesleuth.sh" casme2 "$@"
