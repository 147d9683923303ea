"""A stored corte made whole on disk: loose objects, compressed variants, the tree of hard links.

Publication can make a corte live from its pack and manifest alone; this is the work that can
wait until then (or, with remote origins, must come first: they copy from the tree).
"""

from __future__ import annotations

from dataclasses import dataclass

from difusor.config import StoreSettings
from difusor.store.layout import StoreLayout
from difusor.store.manifest import Manifest, ManifestStore
from difusor.store.mediatypes import compressible
from difusor.store.objects import ObjectStore
from difusor.store.releases import ReleaseDirs


@dataclass(frozen=True)
class Materialised:
    unpacked: int  # objects moved out of packs
    variants: int  # compressed variants made
    links: int  # variant links added to a tree built before


def materialise(manifest: Manifest, *, layout: StoreLayout, objects: ObjectStore,
                manifests: ManifestStore, dirs: ReleaseDirs, settings: StoreSettings,
                tree: str | None, rebuild: bool = False, variants: bool = True) -> Materialised:
    """Loose objects, compressed variants (unless told not to) and the release's tree.

    ``tree``: the release whose tree nginx serves now (the new tree shares its links where the
    files are the same). ``rebuild``: a tree already there is made again (it may be left by an
    interrupted publication of another package for the same corte)."""
    unpacked = objects.unpack(layout.tmp)
    shas = [
        e.sha256 for e in manifest.files.values()
        if compressible(e.media_type) and e.size >= settings.compress_min_bytes
    ] if variants else []
    made = objects.make_variants(
        shas, gzip_level=settings.gzip_level, brotli_quality=settings.brotli_quality,
        tmp_root=layout.tmp,
    )
    links = 0
    if dirs.exists(manifest.release_id) and not rebuild:
        links = dirs.add_variant_links(manifest)  # built before: variants may be new
    else:
        base = manifests.load(tree) if tree and manifests.exists(tree) else None
        dirs.build(manifest, base=base)
    return Materialised(unpacked, made, links)
