{{/* The release's full name: the release name, unless it already contains the chart's. */}}
{{- define "umpire.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "umpire.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: controller
{{- end -}}

{{- define "umpire.labels" -}}
{{ include "umpire.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: umpire
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{- define "umpire.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "umpire.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* repository:tag or repository@digest — the controller passes the same to every worker. */}}
{{- define "umpire.image" -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}
{{- end -}}

{{/* Whether the controller hands NATS credentials or TLS material to workers. */}}
{{- define "umpire.natsMaterial" -}}
{{- if or .Values.nats.auth.secretName .Values.nats.tls.secretName -}}true{{- end -}}
{{- end -}}

{{/* The rules the controller needs in every namespace it watches: the list
     umpire_controller::rbac::WATCHED_NAMESPACES holds (a test compares them). */}}
{{- define "umpire.watchedNamespaceRules" -}}
# Watch the resources; read a policy's project; add and remove the cleanup finalizer.
- apiGroups: [umpire.dev]
  resources: [traceprojects, evalpolicies]
  verbs: [get, list, watch, patch]
# Status is written with server-side apply on the subresource.
- apiGroups: [umpire.dev]
  resources: [traceprojects/status, evalpolicies/status]
  verbs: [patch]
# Children: applied (server-side apply creates or patches), watched (metadata only), listed
# by label and deleted when pruned.
- apiGroups: [""]
  resources: [configmaps, services, serviceaccounts]
  verbs: [list, watch, create, patch, delete]
- apiGroups: [apps]
  resources: [deployments]
  verbs: [list, watch, create, patch, delete]
- apiGroups: [policy]
  resources: [poddisruptionbudgets]
  verbs: [list, watch, create, patch, delete]
- apiGroups: [autoscaling]
  resources: [horizontalpodautoscalers]
  verbs: [list, watch, create, patch, delete]
# Kubernetes Events about the resources.
- apiGroups: [events.k8s.io]
  resources: [events]
  verbs: [create, patch]
# Consent: a Secret a spec names is mounted only if labelled umpire.dev/allow-reference=true.
# Read as metadata only; never listed or watched.
- apiGroups: [""]
  resources: [secrets]
  verbs: [get]
{{- if include "umpire.natsMaterial" . }}
# Each worker's copy of the NATS credentials (owned by its resource): created and patched,
# never listed or watched.
- apiGroups: [""]
  resources: [secrets]
  verbs: [create, patch]
{{- end }}
{{- if .Values.networkPolicy.workers.enabled }}
# Each worker's NetworkPolicy (applied, listed by label and pruned).
- apiGroups: [networking.k8s.io]
  resources: [networkpolicies]
  verbs: [list, create, patch, delete]
{{- end }}
{{- end -}}
