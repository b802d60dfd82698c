{{/* The API's public paths, shared by the Ingress and the HTTPRoute (pathType as in an Ingress;
the HTTPRoute maps Prefix to PathPrefix). "/" is Exact on purpose: a "/" prefix would route
everything, the webhook included. /livez and /readyz stay internal. */}}
{{- define "imgproc.publicApiPaths" -}}
- {path: /, pathType: Exact}
- {path: /api, pathType: Prefix}
- {path: /docs, pathType: Prefix}
- {path: /openapi.json, pathType: Exact}
- {path: /frontend, pathType: Prefix}
{{- end }}
