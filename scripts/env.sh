# Sourced by the scripts: use ../shared's model offline when it is there.
SHARED=${TDPH_SHARED:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)/shared}
if [ -z "${TDPH_MODEL:-}" ] && [ -d "$SHARED/models/M3GNet-PES-MatPES-PBE-2025.2" ]; then
  export TDPH_MODEL="$SHARED/models/M3GNet-PES-MatPES-PBE-2025.2"
fi
if [ -n "${TDPH_MODEL:-}" ] && [ -d "$TDPH_MODEL" ]; then export HF_HUB_OFFLINE=1; fi
export TDPH_SHARED="$SHARED"
export TDPH_TORCH_THREADS=${TDPH_TORCH_THREADS:-1}
