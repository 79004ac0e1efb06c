"""A lab loaded and checked: its files -> merged data -> the catalog model -> every rule of
every layer (tailnet, Kubernetes, hosts) against every other. Sits above the catalog and
the technologies whose rules it runs."""
