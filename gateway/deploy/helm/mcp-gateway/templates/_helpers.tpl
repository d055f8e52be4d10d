{{/*
Ports come from the gateway's own config (gateway.config), so the config stays the one source of truth:
listen_addr (default ":8080") and admin.listen (the gateway's default is 127.0.0.1:9090, which nothing outside
the pod can reach).
*/}}
{{- define "mcp-gateway.gatewayPort" -}}
{{- $listen := toString (.Values.gateway.config.listen_addr | default ":8080") -}}
{{- splitList ":" $listen | last -}}
{{- end -}}

{{/* The admin listener's port when it listens on the pod's addresses; empty when disabled or on loopback. */}}
{{- define "mcp-gateway.adminPort" -}}
{{- $admin := .Values.gateway.config.admin | default dict -}}
{{- if and (not $admin.disabled) $admin.listen -}}
{{- $listen := toString $admin.listen -}}
{{- if not (or (hasPrefix "127." $listen) (hasPrefix "localhost:" $listen) (hasPrefix "[::1]:" $listen)) -}}
{{- splitList ":" $listen | last -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "mcp-gateway.selectorLabels" -}}
app.kubernetes.io/name: mcp-gateway
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "mcp-gateway.labels" -}}
{{ include "mcp-gateway.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | quote }}
{{- end -}}

{{/*
Refuses values that would install but never start: the config and the chart must agree on where the
approvals database's connection string is mounted.
*/}}
{{- define "mcp-gateway.checks" -}}
{{- $urlFile := dig "approvals" "postgres" "url_file" "" .Values.gateway.config -}}
{{- if and .Values.approvals.postgres.enabled (ne $urlFile "/etc/mcp-gateway/approvals-db/url") -}}
{{- fail "approvals.postgres.enabled mounts the connection string at /etc/mcp-gateway/approvals-db/url: set gateway.config.approvals.postgres.url_file to that path" -}}
{{- end -}}
{{- if and (not .Values.approvals.postgres.enabled) (eq $urlFile "/etc/mcp-gateway/approvals-db/url") -}}
{{- fail "gateway.config.approvals.postgres.url_file names /etc/mcp-gateway/approvals-db/url, which only approvals.postgres.enabled mounts: set approvals.postgres.enabled=true" -}}
{{- end -}}
{{- if and .Values.cloudflared.enabled (eq (include "mcp-gateway.gatewayPort" .) "") -}}
{{- fail "gateway.config.listen_addr must end in :PORT" -}}
{{- end -}}
{{- end -}}
