{{/* Names ------------------------------------------------------------------------------------ */}}

{{- define "higgs-audio.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Full name: <release>-<chart>, or the release name when it already contains the chart name. */}}
{{- define "higgs-audio.fullname" -}}
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

{{- define "higgs-audio.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels ----------------------------------------------------------------------------------- */}}

{{- define "higgs-audio.selectorLabels" -}}
app.kubernetes.io/name: {{ include "higgs-audio.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "higgs-audio.labels" -}}
helm.sh/chart: {{ include "higgs-audio.chart" . }}
{{ include "higgs-audio.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: higgs-audio
{{- end }}

{{/* Labels of the serving pods (selector + component). */}}
{{- define "higgs-audio.serverSelectorLabels" -}}
{{ include "higgs-audio.selectorLabels" . }}
app.kubernetes.io/component: server
{{- end }}

{{- define "higgs-audio.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "higgs-audio.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* Images ----------------------------------------------------------------------------------- */}}

{{/* repository@digest when a digest is given, else repository:tag. Arg: an image dict. */}}
{{- define "higgs-audio.imageRef" -}}
{{- if .digest }}
{{- printf "%s@%s" .repository .digest }}
{{- else }}
{{- printf "%s:%s" .repository (toString .tag) }}
{{- end }}
{{- end }}

{{- define "higgs-audio.image" -}}
{{- include "higgs-audio.imageRef" .Values.image }}
{{- end }}

{{/* An override image ({repository, tag, digest, pullPolicy}) that falls back to the server image. */}}
{{- define "higgs-audio.overrideImage" -}}
{{- $o := index . 0 }}
{{- $root := index . 1 }}
{{- if $o.repository }}
{{- include "higgs-audio.imageRef" (dict "repository" $o.repository "tag" (default $root.Values.image.tag $o.tag) "digest" $o.digest) }}
{{- else }}
{{- include "higgs-audio.image" $root }}
{{- end }}
{{- end }}

{{- define "higgs-audio.overridePullPolicy" -}}
{{- $o := index . 0 }}
{{- $root := index . 1 }}
{{- default $root.Values.image.pullPolicy $o.pullPolicy }}
{{- end }}

{{/* Model cache ------------------------------------------------------------------------------ */}}

{{- define "higgs-audio.modelPath" -}}
{{- default (printf "%s/%s/%s" (trimSuffix "/" .Values.modelCache.mountPath) .Values.model.repository .Values.model.revision) .Values.model.path }}
{{- end }}

{{- define "higgs-audio.tokenizerPath" -}}
{{- default (printf "%s/%s/%s" (trimSuffix "/" .Values.modelCache.mountPath) .Values.audioTokenizer.repository .Values.audioTokenizer.revision) .Values.audioTokenizer.path }}
{{- end }}

{{/* The Hugging Face hub cache on the cache volume: what the server loads by repository name
(semanticModel) lives there in huggingface_hub's layout; the server gets it as HF_HUB_CACHE. */}}
{{- define "higgs-audio.hubCachePath" -}}
{{- printf "%s/hub" (trimSuffix "/" .Values.modelCache.mountPath) }}
{{- end }}

{{/* "true" when an init container downloads the weights (modes pvc and none). */}}
{{- define "higgs-audio.downloads" -}}
{{- if ne .Values.modelCache.mode "existing" }}true{{ end }}
{{- end }}

{{- define "higgs-audio.pvcName" -}}
{{- if .Values.modelCache.pvc.create }}
{{- printf "%s-model-cache" (include "higgs-audio.fullname" .) }}
{{- else }}
{{- .Values.modelCache.pvc.existingClaim }}
{{- end }}
{{- end }}

{{- define "higgs-audio.scriptsName" -}}
{{- printf "%s-scripts" (include "higgs-audio.fullname" .) }}
{{- end }}

{{- define "higgs-audio.scriptsMountPath" -}}
/opt/higgs-audio/scripts
{{- end }}

{{/* Secrets ---------------------------------------------------------------------------------- */}}

{{/* The Secret holding the Hugging Face token: the chart-made one when hfToken.value is set. */}}
{{- define "higgs-audio.hfTokenSecretName" -}}
{{- if .Values.hfToken.value }}
{{- printf "%s-hf-token" (include "higgs-audio.fullname" .) }}
{{- else }}
{{- .Values.hfToken.existingSecret }}
{{- end }}
{{- end }}

{{/* Server arguments: the recipe's flags from typed values, in the syntax of Boson's vLLM 0.8 fork
(`--limit-mm-per-prompt audio=50`, `--disable-mm-preprocessor-cache`). ---------------------------- */}}
{{- define "higgs-audio.serverArgs" -}}
- "--model"
- {{ include "higgs-audio.modelPath" . | quote }}
- "--served-model-name"
- {{ .Values.servedModelName | quote }}
- "--audio-tokenizer-type"
- {{ include "higgs-audio.tokenizerPath" . | quote }}
- "--limit-mm-per-prompt"
- {{ printf "audio=%d" (int .Values.limitMmPerPrompt.audio) | quote }}
- "--max-model-len"
- {{ int .Values.maxModelLen | quote }}
- "--port"
- {{ int .Values.port | quote }}
- "--gpu-memory-utilization"
- {{ .Values.gpuMemoryUtilization | toString | quote }}
{{- if .Values.disableMmPreprocessorCache }}
- "--disable-mm-preprocessor-cache"
{{- end }}
{{- if not (kindIs "invalid" .Values.maxNumSeqs) }}
- "--max-num-seqs"
- {{ int .Values.maxNumSeqs | quote }}
{{- end }}
{{- if or .Values.voicePresets.configMap .Values.voicePresets.volume }}
- "--voice-presets-dir"
- {{ .Values.voicePresets.mountPath | quote }}
{{- end }}
{{- if .Values.apiKey.existingSecret }}
- "--api-key"
- "$(HIGGS_API_KEY)"
{{- end }}
{{- range .Values.extraArgs }}
- {{ toString . | quote }}
{{- end }}
{{- end }}

{{/* Environment that sends every cache of the server and its libraries to the writable /tmp. */}}
{{- define "higgs-audio.scratchEnv" -}}
- name: HOME
  value: /tmp
- name: XDG_CACHE_HOME
  value: /tmp/.cache
- name: HF_HOME
  value: /tmp/.cache/huggingface
- name: VLLM_CACHE_ROOT
  value: /tmp/.cache/vllm
- name: TRITON_CACHE_DIR
  value: /tmp/.cache/triton
- name: TORCHINDUCTOR_CACHE_DIR
  value: /tmp/.cache/torchinductor
- name: NUMBA_CACHE_DIR
  value: /tmp/.cache/numba
- name: OUTLINES_CACHE_DIR
  value: /tmp/.cache/outlines
- name: MPLCONFIGDIR
  value: /tmp/.cache/matplotlib
{{- end }}

{{/* Checks the schema cannot express (they compare two values, or refuse a removed value with the
reason); each message names the values. */}}
{{- define "higgs-audio.validate" -}}
{{- /* --set serverGeneration=null (the way to drop it from reused values) leaves a null: accepted. */}}
{{- if and (hasKey .Values "serverGeneration") (not (kindIs "invalid" .Values.serverGeneration)) }}
{{- fail "serverGeneration was removed: only Boson's vLLM fork (bosonai/higgs-audio-vllm) serves this API; vLLM-Omni serves Higgs Audio v2 with another command line and API, see docs/server-contract-omni.md" }}
{{- end }}
{{- $mount := trimSuffix "/" .Values.modelCache.mountPath }}
{{- range $what, $path := dict "model.path" .Values.model.path "audioTokenizer.path" .Values.audioTokenizer.path }}
{{- if and $path (not (hasPrefix (printf "%s/" $mount) $path)) }}
{{- fail (printf "%s (%s) must be under modelCache.mountPath (%s): the weights are read from the cache volume" $what $path $mount) }}
{{- end }}
{{- end }}
{{- if and (gt (int .Values.lifecycle.preStopSleepSeconds) 0) (le (int .Values.terminationGracePeriodSeconds) (int .Values.lifecycle.preStopSleepSeconds)) }}
{{- fail (printf "terminationGracePeriodSeconds (%d) must exceed lifecycle.preStopSleepSeconds (%d), or in-flight streams are cut" (int .Values.terminationGracePeriodSeconds) (int .Values.lifecycle.preStopSleepSeconds)) }}
{{- end }}
{{- if and .Values.autoscaling.enabled (lt (int .Values.autoscaling.maxReplicas) (int .Values.autoscaling.minReplicas)) }}
{{- fail (printf "autoscaling.maxReplicas (%d) must be >= autoscaling.minReplicas (%d)" (int .Values.autoscaling.maxReplicas) (int .Values.autoscaling.minReplicas)) }}
{{- end }}
{{- if and .Values.voicePresets.configMap .Values.voicePresets.volume }}
{{- fail "voicePresets: set configMap or volume, not both" }}
{{- end }}
{{- if and .Values.hfToken.value .Values.hfToken.existingSecret (ne .Values.hfToken.existingSecret "hf-token") }}
{{- fail "hfToken: set existingSecret or value, not both" }}
{{- end }}
{{- if and (eq .Values.strategy.type "RollingUpdate") (eq (toString .Values.strategy.rollingUpdate.maxUnavailable) "0") (eq (toString .Values.strategy.rollingUpdate.maxSurge) "0") }}
{{- fail "strategy.rollingUpdate: maxUnavailable and maxSurge cannot both be 0" }}
{{- end }}
{{- end }}
