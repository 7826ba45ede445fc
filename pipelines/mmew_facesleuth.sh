#!/usr/bin/env bash
# FaceSleuth on mmew (see pipelines/facesleuth.sh for the stages and environment variables).
# Usage:  pipelines/mmew_facesleuth.sh DATA/MMEW [WORK_DIR] [MODEL]
set -euo pipefail
# shellcheck source=/dev/null
. "$(dirname "$0")/lib/usage.bash" "$@"
PIPELINE="$0 DATA/MMEW [WORK_DIR] [MODEL]" exec "$(dirname "$0")/facesleuth.sh" mmew "$@"
