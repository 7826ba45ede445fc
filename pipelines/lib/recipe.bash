#!/usr/bin/env bash
# Sourced by pipelines/*.sh: run a model's feature recipe as verbs.
#   make_features MODEL WORK SAMPLES_CSV [FLAGS for the feature verb ...]
# reads `mertool models --recipe MODEL` (one "verb<TAB>output<TAB>flags" line per stage:
# align -> keyframes -> flow | dynimg | pairs), runs each verb inside WORK and sets
# FEATURES to the file `mertool train` reads. Env: JOBS (default 2), APEX_METHOD
# (keyframes method, default flowpeak), PREVIEWS (a folder: previews per verb), FEATURES_TAG
# (appended to the features file name, for variants made with extra flags).
# Every verb is called on every run; the stage files' keys decide what is up to date.
set -euo pipefail

make_features() {
  local model=$1 work=$2 samples=$3
  shift 3
  local recipe verb out rest aligned="" apexes="" flags preview
  recipe=$(mertool models --recipe "$model")  # fails here, with mertool's error, for an unknown model
  while IFS=$'\t' read -r verb out rest; do
    out=${out/#WORK/$work}
    read -ra flags <<< "$rest"
    preview=()
    if [ -n "${PREVIEWS:-}" ] && [ "$verb" != keyframes ]; then preview=(--preview "$PREVIEWS/$verb"); fi
    case "$verb" in
      align) mertool align "$samples" -o "$out" "${flags[@]}" --jobs "${JOBS:-2}" "${preview[@]}"; aligned=$out ;;
      keyframes) mertool keyframes "$samples" --aligned "$aligned" -o "$out" --method "${APEX_METHOD:-flowpeak}" "${flags[@]}"
        apexes=$out ;;
      *) out=${out%.h5}${FEATURES_TAG:-}.h5
        mertool "$verb" "$aligned" -o "$out" "${flags[@]}" --samples "$apexes" --jobs "${JOBS:-2}" "${preview[@]}" "$@"
        export FEATURES=$out ;;  # read by the calling script
    esac
  done <<< "$recipe"
}
