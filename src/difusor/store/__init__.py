"""Store: content-addressed objects, manifests per corte, release folders of hard links."""
