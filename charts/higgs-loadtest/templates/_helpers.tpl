{{- define "higgs-loadtest.fullname" -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 52 | trimSuffix "-" -}}
{{- end -}}

{{- define "higgs-loadtest.labels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "higgs-loadtest.selector" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/* The Service name as Kubernetes turns it into env var names: FOO_BAR_SERVICE_HOST. */}}
{{- define "higgs-loadtest.masterEnvPrefix" -}}
{{- printf "%s-master" (include "higgs-loadtest.fullname" .) | upper | replace "-" "_" -}}
{{- end -}}

{{- define "higgs-loadtest.image" -}}
{{ printf "%s:%s" .Values.image.repository .Values.image.tag }}
{{- end -}}

{{- define "higgs-loadtest.containerSecurity" -}}
allowPrivilegeEscalation: false
privileged: false
readOnlyRootFilesystem: true
capabilities:
  drop: ["ALL"]
{{- end -}}

{{/* Pod securityContext: the values', with runAsNonRoot and RuntimeDefault seccomp always (restricted). */}}
{{- define "higgs-loadtest.podSecurity" -}}
{{- toYaml (mustMergeOverwrite (deepCopy (.Values.podSecurityContext | default dict)) (dict "runAsNonRoot" true "seccompProfile" (dict "type" "RuntimeDefault"))) -}}
{{- end -}}

{{/* --higgsdeployment's NAMESPACE/NAME from .Values.higgsDeployment (NAME: in the release namespace). */}}
{{- define "higgs-loadtest.hdRef" -}}
{{- $hd := .Values.higgsDeployment -}}
{{- if contains "/" $hd -}}
{{ $hd }}
{{- else -}}
{{ printf "%s/%s" .Release.Namespace $hd }}
{{- end -}}
{{- end -}}

{{- define "higgs-loadtest.hdNamespace" -}}
{{ include "higgs-loadtest.hdRef" . | splitList "/" | first }}
{{- end -}}

{{- define "higgs-loadtest.hdName" -}}
{{ include "higgs-loadtest.hdRef" . | splitList "/" | last }}
{{- end -}}
