{{/*
sluice.name is the chart name, or nameOverride.
*/}}
{{- define "sluice.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 40 | trimSuffix "-" -}}
{{- end -}}

{{/*
sluice.fullname prefixes every object: fullnameOverride, else the release
name when it already contains the chart name (release "sluice" gives
"sluice"), else <release>-<chart>.
*/}}
{{- define "sluice.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 52 | trimSuffix "-" -}}
{{- else -}}
{{- $name := include "sluice.name" . -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 52 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 52 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/*
sluice.labels go on every object.
*/}}
{{- define "sluice.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{ include "sluice.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{/*
sluice.selectorLabels select the controller's pods.
*/}}
{{- define "sluice.selectorLabels" -}}
app.kubernetes.io/name: {{ include "sluice.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/*
sluice.webhookService is the Service kube-apiserver calls the webhooks at.
*/}}
{{- define "sluice.webhookService" -}}
{{- printf "%s-webhook" (include "sluice.fullname" .) -}}
{{- end -}}

{{/*
sluice.certSecret holds the webhook CA and serving certificate.
*/}}
{{- define "sluice.certSecret" -}}
{{- .Values.certificates.secretName | default (printf "%s-webhook-tls" (include "sluice.fullname" .)) -}}
{{- end -}}

{{/*
sluice.certificate is the cert-manager Certificate's name.
*/}}
{{- define "sluice.certificate" -}}
{{- printf "%s-webhook" (include "sluice.fullname" .) -}}
{{- end -}}

{{/*
sluice.image is the controller image reference.
*/}}
{{- define "sluice.image" -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) -}}
{{- end -}}

{{/*
sluice.namespaceSelector sends the Deployment webhooks every namespace but
Kubernetes' own and Sluice's, narrowed by webhooks.namespaceSelector. The
exclusion list matches webhook.ProtectedNamespaces in the binary.
*/}}
{{- define "sluice.namespaceSelector" -}}
{{- with .Values.webhooks.namespaceSelector.matchLabels }}
matchLabels:
  {{- toYaml . | nindent 2 }}
{{- end }}
matchExpressions:
- key: kubernetes.io/metadata.name
  operator: NotIn
  values:
  - kube-system
  - kube-public
  - kube-node-lease
  - {{ .Release.Namespace }}
{{- with .Values.webhooks.namespaceSelector.matchExpressions }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/*
sluice.checkKubeVersion fails the render for a cluster older than
Kubernetes 1.30. Helm's built-in default version (v1.20.0), which
`helm template` renders for when it has no cluster and no --kube-version,
is let through: offline rendering is for reading and diffing manifests, and
an install against a real cluster reports the real version.
*/}}
{{- define "sluice.checkKubeVersion" -}}
{{- $v := .Capabilities.KubeVersion.Version -}}
{{- if and (ne $v "v1.20.0") (semverCompare "<1.30.0-0" $v) -}}
{{- fail (printf "the sluice chart needs Kubernetes 1.30 or newer; the cluster runs %s" $v) -}}
{{- end -}}
{{- end -}}

{{/*
sluice.certDNSNames are the serving certificate's DNS names, as a YAML
list: the webhook Service (kube-apiserver), the xDS Service (clients verify
it) and the metrics Service (scrapers verify it).
*/}}
{{- define "sluice.certDNSNames" -}}
{{- $fullname := include "sluice.fullname" . -}}
{{- range list (include "sluice.webhookService" .) (printf "%s-xds" $fullname) (printf "%s-metrics" $fullname) }}
- {{ . }}.{{ $.Release.Namespace }}.svc
- {{ . }}.{{ $.Release.Namespace }}.svc.cluster.local
{{- end }}
{{- end -}}

{{/*
sluice.checkTrustFlags fails the render when a value needs a controller
flag that trustFlags leaves out.
*/}}
{{- define "sluice.checkTrustFlags" -}}
{{- if and .Values.xds.legacy.enabled (not .Values.trustFlags) -}}
{{- fail "xds.legacy.enabled needs trustFlags: true (the --xds-legacy-port flag)" -}}
{{- end -}}
{{- end -}}

{{/*
sluice.metricsPortName names the metrics Service port by its scheme.
*/}}
{{- define "sluice.metricsPortName" -}}
{{- if .Values.metrics.secure }}https-metrics{{ else }}http-metrics{{ end -}}
{{- end -}}
