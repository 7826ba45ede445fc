#!/usr/bin/env bash
# FaceSleuth on samm (see pipelines/facesleuth.sh for the stages and environment variables).
# Usage:  pipelines/samm_facesleuth.sh DATA/SAMM [WORK_DIR] [MODEL]
set -euo pipefail
# shellcheck source=/dev/null
. "$(dirname "$0")/lib/usage.bash" "$@"
PIPELINE="$0 DATA/SAMM [WORK_DIR] [MODEL]" exec "$(dirname "$0")/facesleuth.sh" samm "$@"
