"""Everything Kubernetes, in one place: the objects and ArgoCD Applications rendered from
the catalog (render.py, argocd.py), CRD schemas (crds.py), its catalog rules (rules.py),
manifests and health (manifests.py), server-side apply (apply.py), the deploy branch
ArgoCD follows (hydrate.py, hook.py), `blumeops deliver` (deliver.py) and the engine's
k8s/argocd driver (driver.py)."""
