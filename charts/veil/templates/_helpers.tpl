{{/*
Labels on every object: the one artifacts/base gives (part-of), plus Helm's
own. The chart's equivalence test (hack/charttest) ignores exactly the Helm
ones when it compares the chart with `kubectl kustomize artifacts/deploy`.
*/}}
{{- define "veil.labels" -}}
app.kubernetes.io/part-of: veil
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end }}

{{/* image REPOSITORY TAG: the tag defaults to v + appVersion (v + VERSION). */}}
{{- define "veil.image" -}}
{{- $tag := .image.tag | default (printf "v%s" .root.Chart.AppVersion) -}}
{{- printf "%s:%s" .image.repository $tag -}}
{{- end }}

{{/* The Secret holding tls.crt and tls.key for veil-apiserver. */}}
{{- define "veil.tlsSecretName" -}}
{{- if .Values.tls.existingSecret -}}
{{- .Values.tls.existingSecret -}}
{{- else if .Values.tls.certManager.enabled -}}
veil-apiserver-tls
{{- else -}}
{{- fail "veil: set tls.existingSecret (a kubernetes.io/tls Secret in the release namespace, with ca.crt or with tls.caBundle set) or tls.certManager.enabled=true; kube-apiserver must verify veil-apiserver, TLS is never skipped" -}}
{{- end -}}
{{- end }}

{{/*
The CA bundle kube-apiserver verifies veil-apiserver with, base64 as
APIService.spec.caBundle wants it: tls.caBundle (PEM or base64 of PEM), else
ca.crt of the existing Secret, read from the cluster at install time. Empty
with cert-manager, whose cainjector fills it in.
*/}}
{{- define "veil.caBundle" -}}
{{- if .Values.tls.certManager.enabled -}}
{{- else if .Values.tls.caBundle -}}
{{- if contains "-----BEGIN" .Values.tls.caBundle -}}
{{- .Values.tls.caBundle | b64enc -}}
{{- else -}}
{{- .Values.tls.caBundle | nospace -}}
{{- end -}}
{{- else -}}
{{- $s := lookup "v1" "Secret" .Release.Namespace (include "veil.tlsSecretName" .) -}}
{{- if and $s $s.data (index $s.data "ca.crt") -}}
{{- index $s.data "ca.crt" -}}
{{- else -}}
{{- fail (printf "veil: no CA bundle for the APIService: set tls.caBundle, or put ca.crt in Secret %s/%s before installing (helm template and lint cannot read the cluster: pass tls.caBundle there)" .Release.Namespace (include "veil.tlsSecretName" .)) -}}
{{- end -}}
{{- end -}}
{{- end }}

{{/* The audit policy: auditPolicy, or the shipped files/audit-policy.yaml. */}}
{{- define "veil.auditPolicy" -}}
{{- .Values.auditPolicy | default (.Files.Get "files/audit-policy.yaml") -}}
{{- end }}

{{/*
Providers run out of process (providers.*): their namespace,
providers.namespace or the release's.
*/}}
{{- define "veil.providersNamespace" -}}
{{- .Values.providers.namespace | default .Release.Namespace -}}
{{- end }}

{{/*
The providers the chart runs, as a list of dicts: kind, the values p of
providers.<kind>, name (veil-provider-<kind>), ns, and root. Fails when a
provider is on without what it cannot run without.
*/}}
{{- define "veil.providers" -}}
{{- $out := list -}}
{{- range $kind := list "vault" "aws" -}}
{{- $p := index $.Values.providers $kind -}}
{{- if $p.enabled -}}
{{- if not $p.caBundle -}}
{{- fail (printf "veil: providers.%s.enabled needs providers.%s.caBundle, the CA that signs its serving certificate (veil-apiserver verifies the provider with it)" $kind $kind) -}}
{{- end -}}
{{- if not $.Values.providers.clientCA -}}
{{- fail (printf "veil: providers.%s.enabled needs providers.clientCA, the CA that signs veil-apiserver's client certificate (apiserver.providerClientSecret)" $kind) -}}
{{- end -}}
{{- $out = append $out (dict "kind" $kind "p" $p "name" (printf "veil-provider-%s" $kind) "ns" (include "veil.providersNamespace" $)) -}}
{{- end -}}
{{- end -}}
{{- toJson $out -}}
{{- end }}

{{/* The Secret holding a provider's serving certificate. */}}
{{- define "veil.providerTLSSecret" -}}
{{- .p.tlsSecret | default (printf "%s-tls" .name) -}}
{{- end }}
