{{/* Chart name, truncated to the 63 characters Kubernetes allows in a label. */}}
{{- define "usync.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Full name of the release's objects. */}}
{{- define "usync.fullname" -}}
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

{{- define "usync.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels that select the operator pod (stable across upgrades). */}}
{{- define "usync.selectorLabels" -}}
app.kubernetes.io/name: {{ include "usync.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end }}

{{/* Standard labels on every object of the chart. */}}
{{- define "usync.labels" -}}
helm.sh/chart: {{ include "usync.chart" . }}
{{ include "usync.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/part-of: unsubscribe-sync
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "usync.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "usync.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The operator image: repository@digest when a digest is set, else repository:tag (tag defaults to appVersion). */}}
{{- define "usync.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{- define "usync.childImage" -}}
{{- default (include "usync.image" .) .Values.childImage }}
{{- end }}

{{/* True ("true") when the operator runs with kopf peering (more than one replica). */}}
{{- define "usync.peering" -}}
{{- if gt (int .Values.replicas) 1 }}true{{ end }}
{{- end }}

{{/* Resources of cluster scope: their RBAC rules always go to a ClusterRole. */}}
{{- define "usync.clusterScopedResources" -}}
customresourcedefinitions namespaces clusterkopfpeerings
{{- end }}
