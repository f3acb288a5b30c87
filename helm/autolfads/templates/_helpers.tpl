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

{{/*
Deep merge: copy every key of src into dst (a dict, changed in place); maps merge key by key, anything
else (lists, scalars, false, 0, "") replaces. Sprig's mergeOverwrite would skip false/0/"" values, so a
lab could not turn a default off. Call as {{- include "autolfads.mergeInto" (list $dst $src) }}.
*/}}
{{- define "autolfads.mergeInto" -}}
{{- $dst := index . 0 -}}
{{- $src := index . 1 -}}
{{- range $k, $v := $src -}}
{{- if and (kindIs "map" $v) (kindIs "map" (get $dst $k)) -}}
{{- include "autolfads.mergeInto" (list (get $dst $k) $v) -}}
{{- else -}}
{{- $_ := set $dst $k $v -}}
{{- end -}}
{{- end -}}
{{- end }}

{{/*
One lab as every template sees it: labDefaults ← the labs[] entry, rayCluster ← the entry's rayCluster,
and the derived defaults (namespace = name, RayCluster "<name>-ray", experiment and queue = name).
Fills the dict passed last, in place: {{- $lab := dict }}{{- include "autolfads.resolveLab" (list $ $entry $lab) }}
*/}}
{{- define "autolfads.resolveLab" -}}
{{- $root := index . 0 -}}
{{- $entry := deepCopy (index . 1) -}}
{{- $lab := index . 2 -}}
{{- include "autolfads.mergeInto" (list $lab (deepCopy $root.Values.labDefaults)) -}}
{{- $clusterOverrides := default dict $entry.rayCluster -}}
{{- $_ := unset $entry "rayCluster" -}}
{{- include "autolfads.mergeInto" (list $lab $entry) -}}
{{- $cluster := deepCopy $root.Values.rayCluster -}}
{{- include "autolfads.mergeInto" (list $cluster $clusterOverrides) -}}
{{- $_ := set $cluster "name" (default (printf "%s-ray" $lab.name) $cluster.name) -}}
{{- $_ := set $lab "rayCluster" $cluster -}}
{{- $_ := set $lab "namespace" (default $lab.name $lab.namespace) -}}
{{- $_ := set $lab.mlflow "experiment" (default $lab.name $lab.mlflow.experiment) -}}
{{- $_ := set $lab.jobs "queueName" (default $lab.name $lab.jobs.queueName) -}}
{{- $_ := set $lab.storage "endpointUrl" (default (include "autolfads.s3Endpoint" $root) $lab.storage.endpointUrl) -}}
{{- end }}

{{/* Every lab's namespace, as a list (for NetworkPolicy peers and the operator's watch list). */}}
{{- define "autolfads.labNamespaces" -}}
{{- $out := list -}}
{{- range $entry := .Values.labs -}}
{{- $out = append $out (default $entry.name $entry.namespace) -}}
{{- end -}}
{{- toJson $out -}}
{{- end }}

{{/* Labels of the objects the chart puts into a lab's namespace. Call with (list . $lab "component"). */}}
{{- define "autolfads.labLabels" -}}
{{- $root := index . 0 -}}
{{ include "autolfads.labels" $root }}
app.kubernetes.io/component: {{ index . 2 }}
autolfads.io/lab: {{ (index . 1).name }}
{{- end }}

{{/* A NetworkPolicy peer for Pods of one namespace (by its immutable name label). Call with (list "ns" $podLabels). */}}
{{- define "autolfads.namespacePeer" -}}
namespaceSelector:
  matchLabels:
    kubernetes.io/metadata.name: {{ index . 0 }}
{{- with index . 1 }}
podSelector:
  matchLabels:
    {{- toYaml . | nindent 4 }}
{{- end }}
{{- end }}

{{/* The KubeRay operator as a NetworkPolicy peer. */}}
{{- define "autolfads.kuberayPeer" -}}
{{- $k := .Values.networkPolicies.kuberayOperator -}}
{{ include "autolfads.namespacePeer" (list $k.namespace $k.podLabels) }}
{{- end }}

{{/* Names of the lab-side MLflow credentials: the Secret in the lab namespace and its release-namespace copy. */}}
{{- define "autolfads.mlflowLabSecretName" -}}
{{- include "autolfads.componentName" (list . "mlflow") }}
{{- end }}

{{- define "autolfads.mlflowLabCopyName" -}}
{{- $root := index . 0 -}}
{{- include "autolfads.componentName" (list $root (printf "mlflow-lab-%s" (index . 1).name)) }}
{{- end }}

{{- define "autolfads.mlflowAdminSecretName" -}}
{{- default (include "autolfads.componentName" (list . "mlflow-admin")) .Values.mlflow.auth.existingSecret }}
{{- end }}

{{/*
A random value that survives upgrades: the one already in Secret NAME (release namespace) under KEY, else
a new one. Call with (list . "secret-name" "key"). `helm template` has no cluster, so it always draws anew.
*/}}
{{- define "autolfads.keptRandom" -}}
{{- $root := index . 0 -}}
{{- $existing := lookup "v1" "Secret" $root.Release.Namespace (index . 1) -}}
{{- if and $existing $existing.data (hasKey $existing.data (index . 2)) -}}
{{- index $existing.data (index . 2) | b64dec -}}
{{- else -}}
{{- randAlphaNum 32 -}}
{{- end -}}
{{- end }}

{{/* Env of a lab's Ray containers: telemetry off, writable dirs on emptyDirs, the lab's storage endpoint. */}}
{{- define "autolfads.labRayEnv" -}}
{{- $root := index . 0 -}}
{{- $lab := index . 1 -}}
- name: HOME
  value: /tmp/home
- name: MPLCONFIGDIR
  value: /tmp/matplotlib
- name: RAY_USAGE_STATS_ENABLED
  value: "0"
- name: MLFLOW_DISABLE_TELEMETRY
  value: "true"
- name: AWS_DEFAULT_REGION
  value: {{ $root.Values.storage.region | quote }}
{{- with $lab.storage.endpointUrl }}
- name: AWS_ENDPOINT_URL
  value: {{ . | quote }}
{{- end }}
{{- with $lab.rayCluster.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end }}
