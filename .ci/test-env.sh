# Sourced by `make test` (from the repository root): points the tests at the real tools they drive.
# - helm v4 and kubectl: the pinned binaries `make tools` put in .tools/bin (first on PATH), unless HELM is
#   set already; a helm on PATH is the fallback where the pinned one cannot run (macOS, ARM).
# - KubeRay's CRD schemas: no package registry ships them, so only our CI has them (shared/ beside the
#   clone); elsewhere the few tests that need them skip with one reason (the allow-list in
#   tests/skip_policy.py). With CI=true a missing tool fails its tests instead of skipping them.
tools=$(pwd)/.tools/bin
if [ -d "$tools" ]; then
  export PATH="$tools:$PATH"
fi
if [ -z "${HELM:-}" ]; then
  if [ -x "$tools/helm" ]; then
    export HELM="$tools/helm"
  elif command -v helm >/dev/null 2>&1; then
    export HELM=$(command -v helm)
  fi
fi
shared=${SHARED:-../shared}
if [ -z "${KUBERAY_CRD_DIR:-}" ] && [ -d "$shared/schemas/kuberay" ]; then
  export KUBERAY_CRD_DIR=$(cd "$shared/schemas/kuberay" && pwd)
fi
export RAY_AUTH_MODE=${RAY_AUTH_MODE:-disabled}
export MLFLOW_DISABLE_TELEMETRY=true
