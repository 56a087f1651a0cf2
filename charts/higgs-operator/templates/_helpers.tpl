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
# HiggsDeployments: list + watch for kopf's handlers (handlers.py @kopf.on.*/daemon); patch for kopf's own
# progress annotations and finalizer on the object. No update, no delete: the user owns the resource.
- apiGroups: [audio.higgs.dev]
  resources: [higgsdeployments]
  verbs: [list, watch, patch]
# The status the operator reports (kube.patch_status, a merge patch).
- apiGroups: [audio.higgs.dev]
  resources: [higgsdeployments/status]
  verbs: [patch]
# Children carry an ownerReference with blockOwnerDeletion, which the API server allows only to who may
# update the owner's finalizers.
- apiGroups: [audio.higgs.dev]
  resources: [higgsdeployments/finalizers]
  verbs: [update]
# Children rendered from charts/higgs-audio (render.APPLIABLE_KINDS): watched for drift (kopf.on.event,
# list + watch), server-side applied (kube.apply: patch, create when absent), pruned (kube.delete).
- apiGroups: [""]
  resources: [configmaps, services, serviceaccounts, persistentvolumeclaims]
  verbs: [list, watch, create, patch, delete]
- apiGroups: [apps]
  resources: [deployments]
  verbs: [list, watch, create, patch, delete]
- apiGroups: [policy]
  resources: [poddisruptionbudgets]
  verbs: [list, watch, create, patch, delete]
- apiGroups: [networking.k8s.io]
  resources: [networkpolicies]
  verbs: [list, watch, create, patch, delete]
# spec.autoscaling.engine hpa / keda: the chart's HorizontalPodAutoscaler or KEDA ScaledObject, a child
# like the others (watched, applied, pruned); the operator then never writes replicas. A cluster without
# KEDA simply serves no scaledobjects (kopf logs it unresolved; a keda resource says ApplyFailed).
- apiGroups: [autoscaling]
  resources: [horizontalpodautoscalers]
  verbs: [list, watch, create, patch, delete]
- apiGroups: [keda.sh]
  resources: [scaledobjects]
  verbs: [list, watch, create, patch, delete]
# Secrets: the token and API-key Secrets read by name (kube.get) and watched for rotation
# (@kopf.on.event secrets); mirrored token copies applied and pruned like the other children. Cluster-wide
# only without watchNamespaces: with it, this rule lives in the watched namespaces' Roles.
- apiGroups: [""]
  resources: [secrets]
  verbs: [get, list, watch, create, patch, delete]
# The autoscaler writes replicas through the scale subresource only (kube.scale_deployment).
- apiGroups: [apps]
  resources: [deployments/scale]
  verbs: [patch]
# Pods: read only, for readiness, failure reasons and the /metrics targets (@kopf.on.event pods). Never
# create or delete: the Deployment does that.
- apiGroups: [""]
  resources: [pods]
  verbs: [list, watch]
# Events posted on the HiggsDeployment (kopf.event/kopf.warn in handlers.py): create only, never read.
- apiGroups: [""]
  resources: [events]
  verbs: [create]
# kopf peering in a watched namespace (KopfPeering: one active replica, the other on standby).
- apiGroups: [kopf.dev]
  resources: [kopfpeerings]
  verbs: [get, list, watch, patch]
{{- end -}}

{{- define "higgs-operator.clusterScopedRules" -}}
# kopf itself: it scans the CRDs to resolve the resources it watches (read only).
- apiGroups: [apiextensions.k8s.io]
  resources: [customresourcedefinitions]
  verbs: [list, watch]
# kopf itself: it observes namespaces to know which exist (read only).
- apiGroups: [""]
  resources: [namespaces]
  verbs: [list, watch]
{{- if not .Values.watchNamespaces }}
# kopf peering when watching the whole cluster (ClusterKopfPeering).
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
