# Sourced by the scripts: find ../shared's foundation model by name, offline, when it is there.
SHARED=${TDPH_SHARED:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)/shared}
# the default potential ships with tdph (tdph_workflows/models); TDPH_MODEL_PATH makes the foundation model
# it was fine-tuned from (M3GNet-PES-MatPES-PBE-2025.2) selectable by name without matgl's hub
if [ -d "$SHARED/models" ]; then
  export TDPH_MODEL_PATH="$SHARED/models${TDPH_MODEL_PATH:+:$TDPH_MODEL_PATH}"
  export HF_HUB_OFFLINE=1
fi
export TDPH_SHARED="$SHARED"
export TDPH_TORCH_THREADS=${TDPH_TORCH_THREADS:-1}
