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
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* `annotations:` of an object's metadata: its own (arg 1, may be nil) over commonAnnotations, indented by
arg 2; nothing when both are empty. Arg 0: the root context. */}}
{{- define "higgs-audio.metaAnnotations" -}}
{{- $root := index . 0 -}}
{{- $indent := index . 2 -}}
{{- $all := merge (dict) (default dict (index . 1)) (default dict $root.Values.commonAnnotations) -}}
{{- with $all }}
{{ "annotations:" | indent $indent }}
{{- toYaml . | nindent (int (add $indent 2)) }}
{{- end }}
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

{{/* The default of hfToken.existingSecret (values.schema.json `default`, hence values.yaml; a test
keeps the three equal). A template cannot read the chart's default values, only the merged ones. */}}
{{- define "higgs-audio.hfTokenDefaultSecret" -}}
hf-token
{{- end }}

{{/* The Secret hfToken.value makes (secret-hf-token.yaml). */}}
{{- define "higgs-audio.hfTokenGeneratedSecret" -}}
{{- printf "%s-hf-token" (include "higgs-audio.fullname" .) }}
{{- end }}

{{/* The Secret holding the Hugging Face token: the chart-made one when hfToken.value is set. */}}
{{- define "higgs-audio.hfTokenSecretName" -}}
{{- if .Values.hfToken.value }}
{{- include "higgs-audio.hfTokenGeneratedSecret" . }}
{{- else }}
{{- .Values.hfToken.existingSecret }}
{{- end }}
{{- end }}

{{/* Autoscaling ------------------------------------------------------------------------------- */}}

{{/* Who scales with autoscaling.enabled: hpa or keda; absent or null (an upgrade that reuses older
values) is hpa, the only engine before. */}}
{{- define "higgs-audio.autoscalingEngine" -}}
{{- ternary "hpa" (toString .Values.autoscaling.engine) (kindIs "invalid" .Values.autoscaling.engine) -}}
{{- end }}

{{/* The release's total of one server gauge in Prometheus (list $ metricName): its serving pods only,
`<fullname>-<pod-template-hash>-<5 random>`, both parts in the API server's name alphabet
(apimachinery util/rand alphanums), so not another release's `<fullname>-x-...` pods nor the test pod.
The ScaledObject's AverageValue target divides it by the replicas: the per-pod average the HPA uses. */}}
{{- define "higgs-audio.kedaQuery" -}}
{{- $root := index . 0 -}}
{{- $id := "[bcdfghjklmnpqrstvwxz2456789]" -}}
{{- printf "sum(%s{namespace=%q,pod=~%q})" (index . 1) $root.Release.Namespace (printf "%s-%s+-%s{5}" (include "higgs-audio.fullname" $root) $id $id) -}}
{{- end }}

{{/* Server generation ------------------------------------------------------------------------- */}}

{{/* "true" with serverGeneration omni (vLLM-Omni); absent or null is fork. */}}
{{- define "higgs-audio.omni" -}}
{{- if eq (toString .Values.serverGeneration) "omni" }}true{{ end }}
{{- end }}

{{/* The chart's default revisions: the last commits of Boson's original Hub layout, which only the fork
loads (docs/server-contract-omni.md OS8, OS10). serverGeneration omni refuses them. */}}
{{- define "higgs-audio.forkModelRevision" -}}10840182ca4ad5d9d9113b60b9bb3c1ef1ba3f84{{- end }}
{{- define "higgs-audio.forkTokenizerRevision" -}}9d4988fbd4ad07b4cac3a5fa462741a41810dbec{{- end }}

{{/* vLLM-Omni's command line (docs/server-contract-omni.md): `vllm serve <model> --omni` (OS2; the
image's ENTRYPOINT is empty, so the container's command is `vllm serve`, OS5), the deploy YAML (OS3,
OS14: each stage's max_num_seqs, gpu_memory_utilization, max_model_len and sampling come from it, so
none of Boson's flags is rendered: --max-model-len/--max-num-seqs would be ignored and
--gpu-memory-utilization would apply to both stages, XO11), the served name and port (vLLM's),
--trust-remote-code (OS1). The API key goes in as VLLM_API_KEY (OE6), not on the command line. */}}
{{- define "higgs-audio.omniArgs" -}}
- {{ include "higgs-audio.modelPath" . | quote }}
- "--omni"
- "--deploy-config"
- {{ .Values.omni.deployConfig | quote }}
- "--served-model-name"
- {{ .Values.servedModelName | quote }}
- "--port"
- {{ int .Values.port | quote }}
- "--trust-remote-code"
{{- range .Values.extraArgs }}
- {{ toString . | quote }}
{{- end }}
{{- end }}

{{/* Server arguments: the recipe's flags from typed values, in the syntax of Boson's vLLM 0.8 fork
(`--limit-mm-per-prompt audio=50`, `--disable-mm-preprocessor-cache`). No --api-key: the key goes in as
VLLM_API_KEY (docs/server-contract.md L5), so the process list does not show it. ------------------ */}}
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
{{- range .Values.extraArgs }}
- {{ toString . | quote }}
{{- end }}
{{- end }}

{{/* A Kubernetes quantity (the schema's pattern: 40Gi, 12.5G, 500M) in whole MiB, rounded up. */}}
{{- define "higgs-audio.quantityMi" -}}
{{- $q := toString . }}
{{- $num := regexFind "^[0-9]+(\\.[0-9]+)?" $q }}
{{- $units := dict "" 1.0 "m" 0.001 "k" 1e3 "M" 1e6 "G" 1e9 "T" 1e12 "P" 1e15 "E" 1e18 "Ki" 1024.0 "Mi" 1048576.0 "Gi" 1073741824.0 "Ti" 1099511627776.0 "Pi" 1125899906842624.0 "Ei" 1152921504606846976.0 }}
{{- $bytes := mulf (float64 $num) (get $units (trimPrefix $num $q)) }}
{{- ceil (divf $bytes 1048576.0) | int64 }}
{{- end }}

{{/* "true" when the compile caches live on the model cache volume: compileCache.persistent, a persistent
mode (pvc, existing), and an existing volume not marked readOnly. */}}
{{- define "higgs-audio.compileCachePersistent" -}}
{{- $cache := .Values.modelCache }}
{{- $ro := false }}
{{- if and (eq $cache.mode "existing") $cache.existing.volume }}
{{- range $cache.existing.volume }}
{{- if and (kindIs "map" .) .readOnly }}{{ $ro = true }}{{ end }}
{{- end }}
{{- end }}
{{- if and .Values.compileCache.persistent (ne $cache.mode "none") (not $ro) }}true{{ end }}
{{- end }}

{{/* Root of the compile caches: <mountPath>/compile-cache on the model volume, else the scratch /tmp/.cache. */}}
{{- define "higgs-audio.compileCachePath" -}}
{{- if include "higgs-audio.compileCachePersistent" . }}
{{- printf "%s/compile-cache" (trimSuffix "/" .Values.modelCache.mountPath) }}
{{- else -}}
/tmp/.cache
{{- end }}
{{- end }}

{{/* Environment that sends every cache of the server and its libraries to the writable /tmp, the compile
caches (vLLM, torch inductor, Triton) to higgs-audio.compileCachePath. */}}
{{- define "higgs-audio.scratchEnv" -}}
- name: HOME
  value: /tmp
- name: XDG_CACHE_HOME
  value: /tmp/.cache
- name: HF_HOME
  value: /tmp/.cache/huggingface
- name: VLLM_CACHE_ROOT
  value: {{ printf "%s/vllm" (include "higgs-audio.compileCachePath" .) }}
- name: TRITON_CACHE_DIR
  value: {{ printf "%s/triton" (include "higgs-audio.compileCachePath" .) }}
- name: TORCHINDUCTOR_CACHE_DIR
  value: {{ printf "%s/torchinductor" (include "higgs-audio.compileCachePath" .) }}
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
{{- /* The schema's enum says it first; this also covers --skip-schema-validation. Absent or null
(`--set serverGeneration=null`, how an upgrade drops it from reused values) is fork. */}}
{{- $generation := ternary "fork" (toString .Values.serverGeneration) (kindIs "invalid" .Values.serverGeneration) }}
{{- if not (has $generation (list "fork" "omni")) }}
{{- fail (printf "serverGeneration must be fork (Boson's vLLM fork, image bosonai/higgs-audio-vllm) or omni (vLLM-Omni, image vllm/vllm-omni), got %q" $generation) }}
{{- end }}
{{- if include "higgs-audio.omni" . }}
{{- /* OS5: the fork's image has no `vllm serve --omni`; vLLM-Omni ships as vllm/vllm-omni. */}}
{{- if eq (trimPrefix "docker.io/" .Values.image.repository) "bosonai/higgs-audio-vllm" }}
{{- fail "serverGeneration omni needs the vLLM-Omni image: set image.repository=vllm/vllm-omni and image.tag to a release that contains PR #3762" }}
{{- end }}
{{- /* OS8, OS10: vLLM-Omni matches the pipeline by model_type higgs_audio_v2 (the transformers-native
layout Boson published on 2026-04-04); the default pins are Boson's original layout (model_type
higgs_audio), for which it has no pipeline. The new commits are not confirmed here. */}}
{{- $pinned := list }}
{{- if eq .Values.model.revision (include "higgs-audio.forkModelRevision" .) }}
{{- $pinned = append $pinned (printf "model.revision (%s)" .Values.model.revision) }}
{{- end }}
{{- if eq .Values.audioTokenizer.revision (include "higgs-audio.forkTokenizerRevision" .) }}
{{- $pinned = append $pinned (printf "audioTokenizer.revision (%s)" .Values.audioTokenizer.revision) }}
{{- end }}
{{- if $pinned }}
{{- fail (printf "serverGeneration omni: %s %s for Boson's vLLM fork, the last commit of Boson's original Hub layout (model_type higgs_audio), which vLLM-Omni cannot load: it needs the transformers-native layout (model_type higgs_audio_v2) Boson published on 2026-04-04 (docs/server-contract-omni.md OS8, OS10, OS11). Set model.revision and audioTokenizer.revision to commits of %s and %s in that layout that you verified (each repository's commit history since 2026-04-04)" (join " and " $pinned) (ternary "are the chart's pins" "is the chart's pin" (gt (len $pinned) 1)) .Values.model.repository .Values.audioTokenizer.repository) }}
{{- end }}
{{- /* OE2, OE3: no built-in or preset voices; voices are uploaded through the API. */}}
{{- if or .Values.voicePresets.configMap .Values.voicePresets.volume }}
{{- fail "voicePresets: vLLM-Omni has no presets; upload voices with POST /v1/audio/voices (serverGeneration omni; docs/server-contract-omni.md OE3)" }}
{{- end }}
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
{{- /* One engine by construction (autoscaling.engine), so never an HPA beside KEDA's own HPA on the
same Deployment. KEDA's threshold is parsed as a float (pkg/scalers/prometheus_scaler.go), not a quantity. */}}
{{- if .Values.autoscaling.enabled }}
{{- $as := .Values.autoscaling }}
{{- $engine := include "higgs-audio.autoscalingEngine" . }}
{{- if not (has $engine (list "hpa" "keda")) }}
{{- fail (printf "autoscaling.engine must be hpa (a HorizontalPodAutoscaler) or keda (a KEDA ScaledObject), got %q; to let the operator scale, set autoscaling.enabled=false" $engine) }}
{{- end }}
{{- if not (or $as.targetAverageValue $as.targetRunningAverageValue) }}
{{- fail "autoscaling.enabled needs a target: set autoscaling.targetAverageValue (waiting requests per pod) or autoscaling.targetRunningAverageValue (running requests per pod), or both" }}
{{- end }}
{{- if eq $engine "keda" }}
{{- if not $as.keda.serverAddress }}
{{- fail "autoscaling.engine keda needs autoscaling.keda.serverAddress, the Prometheus that KEDA queries for the server's queue (e.g. http://prometheus-operated.monitoring.svc:9090); without a Prometheus use autoscaling.engine=hpa (custom metrics API) or autoscaling.enabled=false (the operator scales on the pods' /metrics)" }}
{{- end }}
{{- range (list (list "targetAverageValue" $as.targetAverageValue) (list "targetRunningAverageValue" $as.targetRunningAverageValue)) }}
{{- if and (index . 1) (not (regexMatch "^[0-9]+(\\.[0-9]+)?$" (toString (index . 1)))) }}
{{- fail (printf "autoscaling.%s (%s) with autoscaling.engine keda must be a plain number such as 2 or 0.5: KEDA's prometheus threshold is a float, not a quantity" (index . 0) (index . 1)) }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}
{{- if and .Values.voicePresets.configMap .Values.voicePresets.volume }}
{{- fail "voicePresets: set configMap or volume, not both" }}
{{- end }}
{{- /* GPU resource: a MIG slice or a time-shared GPU is a fraction of one GPU (values.schema.json
gpuResourceName). Tensor parallelism (--tensor-parallel-size, vLLM's engine flag, passed in extraArgs)
runs one worker per GPU of the pod, so it must equal gpuCount. Fork only: vLLM-Omni's stages take their
parallelism from the deploy YAML. */}}
{{- $gpuRes := .Values.gpuResourceName }}
{{- $shared := hasSuffix ".shared" $gpuRes }}
{{- $fractional := or $shared (contains "/mig-" $gpuRes) }}
{{- $tp := "" }}
{{- $args := .Values.extraArgs | default list }}
{{- range $i, $a := $args }}
{{- $s := toString $a }}
{{- if or (eq $s "--tensor-parallel-size") (eq $s "-tp") }}
{{- $tp = ternary (toString (index $args (add1 $i))) "" (lt (add1 $i) (len $args)) }}
{{- else if hasPrefix "--tensor-parallel-size=" $s }}
{{- $tp = trimPrefix "--tensor-parallel-size=" $s }}
{{- end }}
{{- end }}
{{- if and $tp (not (include "higgs-audio.omni" .)) }}
{{- if and $fractional (gt (int $tp) 1) }}
{{- fail (printf "extraArgs --tensor-parallel-size (%s) needs whole GPUs: gpuResourceName (%s) is a fraction of one GPU (a MIG slice or a time-shared GPU)" $tp $gpuRes) }}
{{- end }}
{{- if ne (toString (int $tp)) (toString (int .Values.gpuCount)) }}
{{- fail (printf "extraArgs --tensor-parallel-size (%s) must equal gpuCount (%d): vLLM runs one tensor-parallel worker per GPU of the pod" $tp (int .Values.gpuCount)) }}
{{- end }}
{{- end }}
{{- if and $fractional (gt (int .Values.gpuCount) 1) }}
{{- fail (printf "gpuCount (%d) with gpuResourceName (%s): a MIG slice or a time-shared GPU is a fraction of one GPU and vLLM uses one device per tensor-parallel worker; set gpuCount 1" (int .Values.gpuCount) $gpuRes) }}
{{- end }}
{{- if and $shared (gt (float64 (toString .Values.gpuMemoryUtilization)) 0.5) }}
{{- fail (printf "gpuMemoryUtilization (%v) with gpuResourceName (%s): vLLM reserves that fraction of the whole GPU's memory, which time-slicing shares with other pods without isolation; set it at most 0.5" .Values.gpuMemoryUtilization $gpuRes) }}
{{- end }}
{{- range $key := keys (default dict .Values.commonLabels) | sortAlpha }}
{{- if or (hasPrefix "app.kubernetes.io/" $key) (eq $key "helm.sh/chart") }}
{{- fail (printf "commonLabels: %s is one of the chart's own labels (app.kubernetes.io/*, helm.sh/chart); set it through the chart's values" $key) }}
{{- end }}
{{- end }}
{{- range .Values.extraVolumes }}
{{- if has .name (list "model-cache" "shm" "scratch" "scripts" "voice-presets") }}
{{- fail (printf "extraVolumes: %s is the name of one of the chart's own volumes (model-cache, shm, scratch, scripts, voice-presets)" .name) }}
{{- end }}
{{- end }}
{{- /* hfToken.value makes its own Secret and wins; an existingSecret left at the chart's default (or
naming that very Secret) is no conflict, any other one is. */}}
{{- if and .Values.hfToken.value .Values.hfToken.existingSecret (not (has .Values.hfToken.existingSecret (list (include "higgs-audio.hfTokenDefaultSecret" .) (include "higgs-audio.hfTokenGeneratedSecret" .)))) }}
{{- fail (printf "hfToken: set existingSecret (%s) or value, not both: value makes the Secret %s" .Values.hfToken.existingSecret (include "higgs-audio.hfTokenGeneratedSecret" .)) }}
{{- end }}
{{- if and (eq .Values.strategy.type "RollingUpdate") (eq (toString .Values.strategy.rollingUpdate.maxUnavailable) "0") (eq (toString .Values.strategy.rollingUpdate.maxSurge) "0") }}
{{- fail "strategy.rollingUpdate: maxUnavailable and maxSurge cannot both be 0" }}
{{- end }}
{{- /* A cache claim one node mounts at a time (no ReadWriteMany/ReadOnlyMany, the attach/detach
controller's test for multi-attach) holds every pod to the node that has the disk: a second replica,
an autoscaled one or a surge pod placed elsewhere waits forever on a Multi-Attach error. A claim that
already exists (pvc.create=false, or mode existing with a persistentVolumeClaim volume) is read from the
cluster at install (`lookup`); under `helm template` (and the operator's render) it cannot be, so
mode pvc falls back to the stated accessModes and mode existing goes unchecked. */}}
{{- $claimModes := dict }}
{{- $cacheClaim := "" }}
{{- if eq .Values.modelCache.mode "pvc" }}
{{- $_ := set $claimModes "modes" (.Values.modelCache.pvc.accessModes | default (list "ReadWriteOnce")) }}
{{- $_ := set $claimModes "values" "modelCache.pvc.accessModes" }}
{{- $_ := set $claimModes "way" "modelCache.pvc.accessModes [ReadWriteMany] (or [ReadOnlyMany] with a claim already filled)" }}
{{- if not .Values.modelCache.pvc.create }}
{{- $_ := set $claimModes "note" " With pvc.create=false, set accessModes to the existing claim's modes: the chart cannot look them up under helm template." }}
{{- end }}
{{- if not .Values.modelCache.pvc.create }}{{ $cacheClaim = .Values.modelCache.pvc.existingClaim }}{{ end }}
{{- else if eq .Values.modelCache.mode "existing" }}
{{- $cacheClaim = dig "persistentVolumeClaim" "claimName" "" (.Values.modelCache.existing.volume | default dict) }}
{{- end }}
{{- with $cacheClaim }}
{{- $live := lookup "v1" "PersistentVolumeClaim" $.Release.Namespace . }}
{{- if $live }}
{{- $_ := set $claimModes "modes" ($live.spec.accessModes | default (list "ReadWriteOnce")) }}
{{- $_ := set $claimModes "values" (printf "the claim %s (its spec.accessModes, read from the cluster)" .) }}
{{- $_ := set $claimModes "way" "a ReadWriteMany claim (or ReadOnlyMany, already filled)" }}
{{- $_ := set $claimModes "note" "" }}
{{- end }}
{{- end }}
{{- if $claimModes.modes }}
{{- $modes := $claimModes.modes }}
{{- if not (or (has "ReadWriteMany" $modes) (has "ReadOnlyMany" $modes)) }}
{{- $why := "" }}
{{- if and .Values.autoscaling.enabled (gt (int .Values.autoscaling.maxReplicas) 1) }}
{{- $why = printf "autoscaling.maxReplicas %d" (int .Values.autoscaling.maxReplicas) }}
{{- else if and (not .Values.autoscaling.enabled) (gt (int .Values.replicaCount) 1) }}
{{- $why = printf "replicaCount %d" (int .Values.replicaCount) }}
{{- else if and (eq .Values.strategy.type "RollingUpdate") (not (regexMatch "^0+%?$" (toString .Values.strategy.rollingUpdate.maxSurge))) }}
{{- $why = printf "strategy.type RollingUpdate with strategy.rollingUpdate.maxSurge %v" .Values.strategy.rollingUpdate.maxSurge }}
{{- end }}
{{- if $why }}
{{- fail (printf "%s %s with %s: a %s claim is mounted by one node at a time, so a pod placed on another node waits forever (Multi-Attach). Use %s, or strategy.type=Recreate with a single replica, or modelCache.mode=none (each pod downloads into an emptyDir).%s" $claimModes.values (toJson $modes) $why (join "/" $modes) $claimModes.way ($claimModes.note | default "")) }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}
