{{/* The controller's names: fixed, as in manifests/ (a second release goes in another namespace). */}}
{{- define "mj.name" -}}mediajob-controller{{- end -}}

{{- define "mj.labels" -}}
app.kubernetes.io/name: mediajob-controller
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{- define "mj.image" -}}
{{- if .Values.image.digest -}}
{{ .Values.image.repository }}@{{ .Values.image.digest }}
{{- else -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}
{{- end -}}

{{- define "mj.secretName" -}}
{{ .Values.existingSecret | default "mediajob-controller-secrets" }}
{{- end -}}

{{- define "mj.config" -}}
{{- $lease := .Values.leaderElection -}}
{{- $config := merge (dict
  "LEASE_DURATION_SECONDS" (toString $lease.leaseDurationSeconds)
  "LEASE_RENEW_DEADLINE_SECONDS" (toString $lease.renewDeadlineSeconds)
  "LEASE_RETRY_PERIOD_SECONDS" (toString $lease.retryPeriodSeconds)) .Values.config -}}
{{- range $key, $value := $config }}
{{ $key }}: {{ toString $value | quote }}
{{- end }}
{{- end -}}
