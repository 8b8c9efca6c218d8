"""Fingerprints of the inputs a run was made from.

The data fingerprint hashes every image file's relative path, size and
modification time (no pixels are read, so a 27,000-image folder takes well
under a second once listed); per-class digests let a rerun say *which*
classes changed. Artifact digests (sha256) are kept by the ledger
(`workdir.Workdir.mark_finished`).

Example:
  fp = data_fingerprint("/data/eurosat/2750", ["Forest/Forest_1.jpg", ...])
  describe_data_change(old_fp, fp)   # -> "2 files changed in Forest" or None
"""
import hashlib
import os


def data_fingerprint(root, files):
    """Fingerprint of image files under `root` (paths + sizes + mtimes).

    Args:
      root: the image folder.
      files: relative paths `"<class>/<file>"`.

    Returns:
      `{"files": n, "digest": hex, "classes": {class: {"files": n, "digest": hex}}}`.
    """
    per_class = {}
    for rel in sorted(files):
        path = os.path.join(os.fspath(root), rel)
        try:
            st = os.stat(path)
            stamp = f"{st.st_size}:{st.st_mtime_ns}"
        except OSError:
            stamp = "missing"
        cls = rel.replace("\\", "/").split("/")[0]
        h, n = per_class.get(cls, (hashlib.sha256(), 0))
        h.update(f"{rel}\0{stamp}\n".encode())
        per_class[cls] = (h, n + 1)
    classes = {c: {"files": n, "digest": h.hexdigest()[:16]}
               for c, (h, n) in sorted(per_class.items())}
    total = hashlib.sha256(repr(sorted(
        (c, v["digest"]) for c, v in classes.items())).encode()).hexdigest()[:16]
    return {"files": sum(v["files"] for v in classes.values()),
            "digest": total, "classes": classes}


def describe_data_change(old, new):
    """A short phrase naming what changed between two fingerprints, or None."""
    if not old or not new or old.get("digest") == new.get("digest"):
        return None
    oc, nc = old.get("classes", {}), new.get("classes", {})
    changed = sorted(c for c in set(oc) | set(nc)
                     if (oc.get(c) or {}).get("digest") != (nc.get(c) or {}).get("digest"))
    shown = ", ".join(changed[:5]) + (" ..." if len(changed) > 5 else "")
    return (f"the data files changed ({old.get('files')} -> {new.get('files')} "
            f"files; changed classes: {shown or '-'})")
