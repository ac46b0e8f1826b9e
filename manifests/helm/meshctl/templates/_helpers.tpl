{{- define "meshctl.labels" -}}
app.kubernetes.io/name: meshctl
app.kubernetes.io/component: controller
{{- end }}

{{- define "meshctl.selector" -}}
{app.kubernetes.io/name: meshctl, app.kubernetes.io/component: controller}
{{- end }}
