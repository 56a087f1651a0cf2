{{- define "higgs-operator.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else if contains (default .Chart.Name .Values.nameOverride) .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name (default .Chart.Name .Values.nameOverride) | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "higgs-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "higgs-operator.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{ include "higgs-operator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/component: operator
{{- end -}}

{{- define "higgs-operator.serviceAccountName" -}}
{{- default (include "higgs-operator.fullname" .) .Values.serviceAccount.name -}}
{{- end -}}

{{- define "higgs-operator.image" -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository .Values.image.tag -}}
{{- end -}}
{{- end -}}

{{- /*
Exactly the verbs the operator uses (operator/higgs_operator/permissions.py; tests/operator/test_chart.py
compares). Split by scope so that an operator told to watch some namespaces gets Roles in those only.
*/}}
{{- define "higgs-operator.namespacedRules" -}}
# HiggsDeployments: watched by kopf (which patches its own annotations), status written, and owner
# of children with blockOwnerDeletion (needs update on the finalizers subresource).
- apiGroups: [audio.higgs.dev]
  resources: [higgsdeployments]
  verbs: [list, watch, patch]
- apiGroups: [audio.higgs.dev]
  resources: [higgsdeployments/status]
  verbs: [patch]
- apiGroups: [audio.higgs.dev]
  resources: [higgsdeployments/finalizers]
  verbs: [update]
# Children rendered from charts/higgs-audio: watched (drift), server-side applied (create + patch), pruned.
- apiGroups: [""]
  resources: [configmaps, services, serviceaccounts, persistentvolumeclaims]
  verbs: [list, watch, create, patch, delete]
- apiGroups: [apps]
  resources: [deployments]
  verbs: [list, watch, create, patch, delete]
- apiGroups: [policy]
  resources: [poddisruptionbudgets]
  verbs: [list, watch, create, patch, delete]
# Token Secrets: read and watched; mirrored copies applied and pruned.
- apiGroups: [""]
  resources: [secrets]
  verbs: [get, list, watch, create, patch, delete]
# The autoscaler writes replicas through the scale subresource only.
- apiGroups: [apps]
  resources: [deployments/scale]
  verbs: [patch]
# Pods: readiness and the /metrics targets.
- apiGroups: [""]
  resources: [pods]
  verbs: [list, watch]
- apiGroups: [""]
  resources: [events]
  verbs: [create]
# kopf peering in a watched namespace.
- apiGroups: [kopf.dev]
  resources: [kopfpeerings]
  verbs: [get, list, watch, patch]
{{- end -}}

{{- define "higgs-operator.clusterScopedRules" -}}
# kopf itself: resource and namespace scanning.
- apiGroups: [apiextensions.k8s.io]
  resources: [customresourcedefinitions]
  verbs: [list, watch]
- apiGroups: [""]
  resources: [namespaces]
  verbs: [list, watch]
{{- if not .Values.watchNamespaces }}
- apiGroups: [kopf.dev]
  resources: [clusterkopfpeerings]
  verbs: [get, list, watch, patch]
{{- end }}
{{- end -}}

{{- /* Namespaces that get a Role: the watched ones, plus the release's own for mirrored token sources. */}}
{{- define "higgs-operator.roleNamespaces" -}}
{{- $namespaces := .Values.watchNamespaces | uniq -}}
{{- if not (has .Release.Namespace $namespaces) -}}{{- $namespaces = append $namespaces .Release.Namespace -}}{{- end -}}
{{- toJson $namespaces -}}
{{- end -}}
