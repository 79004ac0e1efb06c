"""JSON schemas of the custom resources blumeops renders or a lab commonly passes through.

Kubernetes' own kinds are checked by kubernetes-validate; custom resources are not in
its schema set. These schemas were written by hand from each project's documented CRD
fields (no network where this was built, so the CRDs' own OpenAPI schemas could not be
downloaded): External Secrets `external-secrets.io/v1` (ExternalSecret,
ClusterSecretStore, SecretStore; ESO 0.17), ArgoCD `argoproj.io/v1alpha1` Application
(ArgoCD 2.13) and CloudNativePG `postgresql.cnpg.io/v1` Cluster (CNPG 1.25). They cover
the fields those docs describe and refuse keys they do not know at the levels written
out (`additionalProperties: false`), so a misspelt field fails `validate` rather than
being pruned silently by the API server. Deeper structures (pod affinity, Helm values)
are left open.

`problems(obj)` returns messages for one object; objects of other kinds are not checked.
"""

from __future__ import annotations

from functools import cache
from typing import Any

Schema = dict[str, Any]

_STR: Schema = {"type": "string"}
_INT: Schema = {"type": "integer"}
_BOOL: Schema = {"type": "boolean"}
_OPEN: Schema = {"type": "object"}
_STRMAP: Schema = {"type": "object", "additionalProperties": {"type": "string"}}
_LIST_OPEN: Schema = {"type": "array", "items": {"type": "object"}}
_LIST_STR: Schema = {"type": "array", "items": {"type": "string"}}
_DNS_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
_DURATION = r"^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$"


def _obj(props: Schema, required: tuple[str, ...] = ()) -> Schema:
    """A closed object: only `props`, `required` present."""
    out: Schema = {"type": "object", "properties": props, "additionalProperties": False}
    if required:
        out["required"] = list(required)
    return out


def _resource(api_version: str, kind: str, spec: Schema, namespaced: bool = True) -> Schema:
    meta: Schema = {
        "type": "object",
        "required": ["name"],
        "properties": {
            "name": {"type": "string", "pattern": _DNS_SUBDOMAIN, "maxLength": 253},
            "namespace": {"type": "string"},
            "labels": _STRMAP,
            "annotations": _STRMAP,
            "finalizers": _LIST_STR,
        },
    }
    if not namespaced:
        meta["not"] = {"required": ["namespace"]}
    return _obj({"apiVersion": {"const": api_version}, "kind": {"const": kind},
                 "metadata": meta, "spec": spec}, ("apiVersion", "kind", "metadata", "spec"))


# --- External Secrets (external-secrets.io/v1) --------------------------------------

_REMOTE_REF = _obj({
    "key": _STR, "property": _STR, "version": _STR,
    "conversionStrategy": {"enum": ["Default", "Unicode"]},
    "decodingStrategy": {"enum": ["Auto", "Base64", "Base64URL", "None"]},
    "metadataPolicy": {"enum": ["None", "Fetch"]},
}, ("key",))
_STORE_REF = _obj({"name": _STR, "kind": {"enum": ["SecretStore", "ClusterSecretStore"]}},
                  ("name",))
_EXTERNAL_SECRET_SPEC = _obj({
    "secretStoreRef": _STORE_REF,
    "refreshInterval": {"type": "string", "pattern": _DURATION},
    "refreshPolicy": {"enum": ["CreatedOnce", "Periodic", "OnChange"]},
    "target": _obj({
        "name": _STR,
        "creationPolicy": {"enum": ["Owner", "Orphan", "Merge", "None"]},
        "deletionPolicy": {"enum": ["Delete", "Merge", "Retain"]},
        "template": _OPEN,
        "immutable": _BOOL,
    }),
    "data": {"type": "array", "items": _obj({
        "secretKey": _STR, "remoteRef": _REMOTE_REF, "sourceRef": _OPEN,
    }, ("secretKey", "remoteRef"))},
    "dataFrom": _LIST_OPEN,
})
_ONEPASSWORD = _obj({
    "connectHost": {"type": "string", "pattern": r"^https?://"},
    "vaults": {"type": "object", "minProperties": 1,
               "additionalProperties": {"type": "integer", "minimum": 1}},
    "auth": _obj({"secretRef": _obj({"connectTokenSecretRef": _obj({
        "name": _STR, "namespace": _STR, "key": _STR}, ("name",))},
        ("connectTokenSecretRef",))}, ("secretRef",)),
}, ("connectHost", "vaults", "auth"))
_STORE_SPEC = _obj({
    # Providers other than 1Password are accepted unchecked.
    "provider": {"type": "object", "minProperties": 1, "maxProperties": 1,
                 "properties": {"onepassword": _ONEPASSWORD}},
    "controller": _STR,
    "refreshInterval": _INT,
    "retrySettings": _OPEN,
    "conditions": _LIST_OPEN,
}, ("provider",))

# --- ArgoCD (argoproj.io/v1alpha1) --------------------------------------------------

_APP_SOURCE = _obj({
    "repoURL": _STR, "path": _STR, "targetRevision": _STR, "chart": _STR, "ref": _STR,
    "name": _STR,
    "helm": _obj({
        "releaseName": _STR, "values": _STR, "valuesObject": _OPEN, "valueFiles": _LIST_STR,
        "parameters": _LIST_OPEN, "fileParameters": _LIST_OPEN, "passCredentials": _BOOL,
        "ignoreMissingValueFiles": _BOOL, "skipCrds": _BOOL, "skipSchemaValidation": _BOOL,
        "version": _STR, "kubeVersion": _STR, "apiVersions": _LIST_STR, "namespace": _STR,
    }),
    "kustomize": _OPEN,
    "directory": _obj({"recurse": _BOOL, "exclude": _STR, "include": _STR, "jsonnet": _OPEN}),
    "plugin": _OPEN,
}, ("repoURL",))
_APPLICATION_SPEC: Schema = {
    **_obj({
        "project": _STR,
        "source": _APP_SOURCE,
        "sources": {"type": "array", "minItems": 1, "items": _APP_SOURCE},
        "destination": _obj({"server": _STR, "name": _STR, "namespace": _STR}),
        "syncPolicy": _obj({
            "automated": _obj({"prune": _BOOL, "selfHeal": _BOOL, "allowEmpty": _BOOL}),
            "syncOptions": _LIST_STR,
            "retry": _OPEN,
            "managedNamespaceMetadata": _OPEN,
        }),
        "ignoreDifferences": _LIST_OPEN,
        "info": _LIST_OPEN,
        "revisionHistoryLimit": _INT,
    }, ("project", "destination")),
    # One source or several, never both.
    "oneOf": [{"required": ["source"], "not": {"required": ["sources"]}},
              {"required": ["sources"], "not": {"required": ["source"]}}],
}

# --- CloudNativePG (postgresql.cnpg.io/v1) ------------------------------------------

_QUANTITY = {"type": "string", "pattern": r"^[0-9]+(\.[0-9]+)?(m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei)?$"}
_CNPG_STORAGE = _obj({"size": _QUANTITY, "storageClass": _STR, "resizeInUseVolumes": _BOOL,
                      "pvcTemplate": _OPEN})
_CNPG_SPEC = _obj({
    "description": _STR, "inheritedMetadata": _OPEN, "imageName": _STR,
    "imageCatalogRef": _OPEN, "imagePullPolicy": {"enum": ["Always", "Never", "IfNotPresent"]},
    "schedulerName": _STR, "postgresUID": _INT, "postgresGID": _INT,
    "instances": {"type": "integer", "minimum": 1},
    "minSyncReplicas": {"type": "integer", "minimum": 0},
    "maxSyncReplicas": {"type": "integer", "minimum": 0},
    "postgresql": _obj({
        "parameters": _STRMAP, "pg_hba": _LIST_STR, "pg_ident": _LIST_STR,
        "shared_preload_libraries": _LIST_STR, "ldap": _OPEN, "promotionTimeout": _INT,
        "enableAlterSystem": _BOOL, "syncReplicaElectionConstraint": _OPEN,
        "synchronous": _OPEN, "extensions": _LIST_OPEN,
    }),
    "replicationSlots": _OPEN,
    "bootstrap": _obj({
        "initdb": _obj({
            "database": _STR, "owner": _STR, "secret": _obj({"name": _STR}, ("name",)),
            "options": _LIST_STR, "dataChecksums": _BOOL, "encoding": _STR,
            "localeCollate": _STR, "localeCType": _STR, "locale": _STR,
            "localeProvider": _STR, "icuLocale": _STR, "icuRules": _STR,
            "walSegmentSize": _INT, "postInitSQL": _LIST_STR,
            "postInitApplicationSQL": _LIST_STR, "postInitTemplateSQL": _LIST_STR,
            "postInitSQLRefs": _OPEN, "postInitApplicationSQLRefs": _OPEN,
            "postInitTemplateSQLRefs": _OPEN, "import": _OPEN,
        }),
        "recovery": _OPEN,
        "pg_basebackup": _OPEN,
    }),
    "replica": _OPEN,
    "superuserSecret": _obj({"name": _STR}, ("name",)),
    "enableSuperuserAccess": _BOOL,
    "certificates": _OPEN,
    "imagePullSecrets": _LIST_OPEN,
    "storage": _CNPG_STORAGE,
    "walStorage": _CNPG_STORAGE,
    "serviceAccountTemplate": _OPEN,
    "ephemeralVolumeSource": _OPEN,
    "startDelay": _INT, "stopDelay": _INT, "smartShutdownTimeout": _INT,
    "switchoverDelay": _INT, "failoverDelay": _INT, "livenessProbeTimeout": _INT,
    "affinity": _OPEN,
    "topologySpreadConstraints": _LIST_OPEN,
    "resources": _OPEN,
    "ephemeralVolumesSizeLimit": _OPEN,
    "priorityClassName": _STR,
    "primaryUpdateStrategy": {"enum": ["unsupervised", "supervised"]},
    "primaryUpdateMethod": {"enum": ["switchover", "restart"]},
    "backup": _OPEN,
    "nodeMaintenanceWindow": _OPEN,
    "monitoring": _OPEN,
    "externalClusters": _LIST_OPEN,
    "logLevel": {"enum": ["error", "warning", "info", "debug", "trace"]},
    "projectedVolumeTemplate": _OPEN,
    "env": _LIST_OPEN,
    "envFrom": _LIST_OPEN,
    "managed": _OPEN,
    "seccompProfile": _OPEN,
    "tablespaces": _LIST_OPEN,
    "enablePDB": _BOOL,
    "plugins": _LIST_OPEN,
    "probes": _OPEN,
}, ("instances",))

SCHEMAS: dict[tuple[str, str], Schema] = {
    ("external-secrets.io/v1", "ExternalSecret"):
        _resource("external-secrets.io/v1", "ExternalSecret", _EXTERNAL_SECRET_SPEC),
    ("external-secrets.io/v1", "ClusterSecretStore"):
        _resource("external-secrets.io/v1", "ClusterSecretStore", _STORE_SPEC, False),
    ("external-secrets.io/v1", "SecretStore"):
        _resource("external-secrets.io/v1", "SecretStore", _STORE_SPEC),
    ("argoproj.io/v1alpha1", "Application"):
        _resource("argoproj.io/v1alpha1", "Application", _APPLICATION_SPEC),
    ("postgresql.cnpg.io/v1", "Cluster"):
        _resource("postgresql.cnpg.io/v1", "Cluster", _CNPG_SPEC),
}
# API versions no current operator serves: refused with the version to use instead.
RETIRED: dict[str, str] = {
    "external-secrets.io/v1beta1": "external-secrets.io/v1 (v1beta1 is not served since "
                                   "External Secrets 0.17)",
    "external-secrets.io/v1alpha1": "external-secrets.io/v1",
}


def known(obj: dict[str, Any]) -> bool:
    return (obj.get("apiVersion"), obj.get("kind")) in SCHEMAS


@cache
def _validator(api_version: str, kind: str) -> Any:
    import jsonschema  # type: ignore[import-untyped]

    schema = SCHEMAS[(api_version, kind)]
    cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)
    return cls(schema)


def problems(obj: dict[str, Any]) -> list[str]:
    """Why `obj` is not a valid object of its kind, one message each; [] when valid or
    when its kind has no schema here."""
    api = obj.get("apiVersion")
    if isinstance(api, str) and api in RETIRED:
        return [f"apiVersion {api} is no longer served; use {RETIRED[api]}"]
    if not known(obj):
        return []
    validator = _validator(obj["apiVersion"], obj["kind"])
    out = []
    for err in sorted(validator.iter_errors(obj), key=lambda e: list(e.absolute_path)):
        where = ".".join(str(p) for p in err.absolute_path) or "(top)"
        out.append(f"{where}: {err.message}")
    return out
