# Sourced by `make test`: points the tests at the real tools that live outside the repository
# (shared/ beside the clone holds KubeRay's CRD schemas and the helm installer). Outside CI a missing tool
# makes its tests skip with a reason; with CI=true they fail instead.
shared=${SHARED:-../shared}
if [ -z "${KUBERAY_CRD_DIR:-}" ] && [ -d "$shared/schemas/kuberay" ]; then
  export KUBERAY_CRD_DIR=$(cd "$shared/schemas/kuberay" && pwd)
fi
if [ -z "${HELM:-}" ]; then
  if command -v helm >/dev/null 2>&1; then
    export HELM=$(command -v helm)
  elif [ -x "$shared/tools/get-helm" ]; then
    HELM=$("$shared/tools/get-helm") && export HELM
  fi
fi
export RAY_AUTH_MODE=${RAY_AUTH_MODE:-disabled}
export MLFLOW_DISABLE_TELEMETRY=true
