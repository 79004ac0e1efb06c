"""Delivery to a cluster: hydrating a deploy branch for ArgoCD (hydrate), server-side
apply without ArgoCD (kube, kubeapply), and the health words of what runs there."""
