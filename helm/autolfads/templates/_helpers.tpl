{{/*
Names, labels and the shared Pod pieces. Every template takes its names and labels from here so that a
rename happens in one place.
*/}}

{{- define "autolfads.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Full name prefix, truncated to 63 characters (the DNS label limit). */}}
{{- define "autolfads.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/* "<fullname>-<suffix>", the whole still within 63 characters. Call with (list . "suffix"). */}}
{{- define "autolfads.componentName" -}}
{{- $root := index . 0 }}
{{- $suffix := index . 1 }}
{{- $prefix := include "autolfads.fullname" $root | trunc (int (sub 62 (len $suffix))) | trimSuffix "-" }}
{{- printf "%s-%s" $prefix $suffix }}
{{- end }}

{{- define "autolfads.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels every object carries. */}}
{{- define "autolfads.labels" -}}
helm.sh/chart: {{ include "autolfads.chart" . }}
{{ include "autolfads.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: autolfads
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{- define "autolfads.selectorLabels" -}}
app.kubernetes.io/name: {{ include "autolfads.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* Labels of one component. Call with (list . "operator"). */}}
{{- define "autolfads.componentLabels" -}}
{{- $root := index . 0 -}}
{{ include "autolfads.labels" $root }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end }}

{{/* Selector labels of one component. Call with (list . "operator"). */}}
{{- define "autolfads.componentSelectorLabels" -}}
{{- $root := index . 0 -}}
{{ include "autolfads.selectorLabels" $root }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end }}

{{/* The AutoLFADS image reference. */}}
{{- define "autolfads.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{- define "autolfads.mlflowImage" -}}
{{- $repo := default .Values.image.repository .Values.mlflow.image.repository }}
{{- $tag := default (default .Chart.AppVersion .Values.image.tag) .Values.mlflow.image.tag }}
{{- printf "%s:%s" $repo $tag }}
{{- end }}

{{- define "autolfads.operatorServiceAccountName" -}}
{{- if .Values.operator.serviceAccount.create }}
{{- default (include "autolfads.componentName" (list . "operator")) .Values.operator.serviceAccount.name }}
{{- else }}
{{- required "operator.serviceAccount.name is required when operator.serviceAccount.create is false" .Values.operator.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The shared RayCluster's name; kept to 47 characters so KubeRay's derived Service names stay valid. */}}
{{- define "autolfads.rayClusterName" -}}
{{- if .Values.rayCluster.name }}
{{- .Values.rayCluster.name | trunc 47 | trimSuffix "-" }}
{{- else }}
{{- include "autolfads.fullname" . | trunc 43 | trimSuffix "-" }}-ray
{{- end }}
{{- end }}

{{- define "autolfads.mlflowName" -}}
{{- include "autolfads.componentName" (list . "mlflow") }}
{{- end }}

{{- define "autolfads.minioName" -}}
{{- include "autolfads.componentName" (list . "minio") }}
{{- end }}

{{/* In-cluster MLflow tracking URI. */}}
{{- define "autolfads.mlflowUri" -}}
{{- printf "http://%s.%s.svc:%d" (include "autolfads.mlflowName" .) .Release.Namespace (int .Values.mlflow.port) }}
{{- end }}

{{/* The S3 endpoint: the explicit one, else the in-chart MinIO, else empty (AWS S3). */}}
{{- define "autolfads.s3Endpoint" -}}
{{- if .Values.storage.endpointUrl }}
{{- .Values.storage.endpointUrl }}
{{- else if .Values.minio.enabled }}
{{- printf "http://%s.%s.svc:9000" (include "autolfads.minioName" .) .Release.Namespace }}
{{- end }}
{{- end }}

{{/* The Secret holding MinIO's root credentials (existing or rendered by the chart). */}}
{{- define "autolfads.minioSecretName" -}}
{{- default (include "autolfads.minioName" .) .Values.minio.existingSecret }}
{{- end }}

{{/* Env vars that point S3 clients at the store and give them credentials, by Secret reference only. */}}
{{- define "autolfads.storageEnv" -}}
- name: AWS_DEFAULT_REGION
  value: {{ .Values.storage.region | quote }}
{{- with include "autolfads.s3Endpoint" . }}
- name: AWS_ENDPOINT_URL
  value: {{ . | quote }}
- name: MLFLOW_S3_ENDPOINT_URL
  value: {{ . | quote }}
{{- end }}
{{- $secret := "" }}
{{- $idKey := "AWS_ACCESS_KEY_ID" }}
{{- $keyKey := "AWS_SECRET_ACCESS_KEY" }}
{{- if .Values.storage.existingSecret }}
{{- $secret = .Values.storage.existingSecret }}
{{- else if .Values.storage.credentials.create }}
{{- $secret = include "autolfads.componentName" (list . "storage") }}
{{- else if .Values.minio.enabled }}
{{- $secret = include "autolfads.minioSecretName" . }}
{{- $idKey = "rootUser" }}
{{- $keyKey = "rootPassword" }}
{{- end }}
{{- if $secret }}
- name: AWS_ACCESS_KEY_ID
  valueFrom:
    secretKeyRef:
      name: {{ $secret }}
      key: {{ $idKey }}
- name: AWS_SECRET_ACCESS_KEY
  valueFrom:
    secretKeyRef:
      name: {{ $secret }}
      key: {{ $keyKey }}
{{- end }}
{{- end }}

{{/* Pod-level security context: restricted Pod Security Standard. */}}
{{- define "autolfads.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: {{ .Values.runAsUser }}
runAsGroup: {{ .Values.runAsUser }}
fsGroup: {{ .Values.runAsUser }}
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{/* Container security context. Call with (dict "readOnly" true). */}}
{{- define "autolfads.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: {{ .readOnly }}
runAsNonRoot: true
capabilities:
  drop: ["ALL"]
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{/* imagePullSecrets block, or nothing. Use as {{- with include "autolfads.imagePullSecrets" . }}{{ . | nindent N }}{{- end }} */}}
{{- define "autolfads.imagePullSecrets" -}}
{{- with .Values.imagePullSecrets -}}
imagePullSecrets:
{{ toYaml . }}
{{- end -}}
{{- end }}

{{/* Env of Ray containers: telemetry off, writable dirs on emptyDirs, storage and MLflow endpoints. */}}
{{- define "autolfads.rayEnv" -}}
- name: HOME
  value: /tmp/home
- name: MPLCONFIGDIR
  value: /tmp/matplotlib
- name: RAY_USAGE_STATS_ENABLED
  value: "0"
{{- if eq .Values.rayCluster.authMode "disabled" }}
- name: RAY_AUTH_MODE
  value: disabled
{{- end }}
- name: MLFLOW_DISABLE_TELEMETRY
  value: "true"
{{- if .Values.mlflow.enabled }}
- name: MLFLOW_TRACKING_URI
  value: {{ include "autolfads.mlflowUri" . | quote }}
{{- end }}
{{ include "autolfads.storageEnv" . }}
{{- with .Values.rayCluster.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Ray writes logs and sockets under /tmp/ray and its object store into /dev/shm. */}}
{{- define "autolfads.rayVolumeMounts" -}}
- name: tmp
  mountPath: /tmp
- name: dshm
  mountPath: /dev/shm
{{- end }}

{{/* Call with the /dev/shm size limit. */}}
{{- define "autolfads.rayVolumes" -}}
- name: tmp
  emptyDir: {}
- name: dshm
  emptyDir:
    medium: Memory
    sizeLimit: {{ . }}
{{- end }}
