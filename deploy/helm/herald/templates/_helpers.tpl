{{/* The release's base name: <release>-herald, unless the release is named herald. */}}
{{- define "herald.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "herald.labels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "herald.selector" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "herald.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{- define "herald.secretName" -}}
{{- default (include "herald.fullname" .) .Values.existingSecret -}}
{{- end -}}

{{- define "herald.systemTaskQueue" -}}
{{- default (printf "herald-system-%s" .Release.Name) .Values.systemTaskQueue -}}
{{- end -}}

{{/* Environment shared by herald serve and herald migrate. */}}
{{- define "herald.env" -}}
- name: HERALD_DATABASE_URL
  valueFrom:
    secretKeyRef:
      name: {{ include "herald.secretName" . }}
      key: database-url
- name: HERALD_EVENT_KEYS
  valueFrom:
    secretKeyRef:
      name: {{ include "herald.secretName" . }}
      key: event-keys
- name: HERALD_SIGNING_KEY
  valueFrom:
    secretKeyRef:
      name: {{ include "herald.secretName" . }}
      key: signing-key
- name: HERALD_TEMPORAL_ADDRESS
  value: {{ .Values.temporal.address | quote }}
- name: HERALD_TEMPORAL_NAMESPACE
  value: {{ .Values.temporal.namespace | quote }}
- name: HERALD_SYSTEM_TASK_QUEUE
  value: {{ include "herald.systemTaskQueue" . | quote }}
{{- range $name, $value := .Values.env }}
- name: {{ $name }}
  value: {{ $value | quote }}
{{- end }}
{{- end -}}
