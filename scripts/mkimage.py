#!/usr/bin/env python3
"""crius test images, built offline from the host's static busybox with the stdlib only.

Digests are reproducible: every tar header has mtime 0 and owner root (or the
uid/gid the image needs), JSON is written with sorted keys and no whitespace,
gzip headers carry mtime 0, and the "large" payload comes from SHAKE-256 of a
fixed seed. The same mkimage.py + /bin/busybox + Python give the same bytes.

usage:
  mkimage.py OUT.tar [--image KIND] [--format oci|docker|both] [--ref NAME:TAG]...
                     [--cmd JSON] [--entrypoint JSON] [--user U] [--workdir DIR] [--env K=V]...
  mkimage.py --all DIR [--format oci|docker|both]   # every KIND into DIR/<kind>.tar + DIR/images.json
  mkimage.py --list                                   # the kinds and their default refs

KIND (default busybox):
  busybox    1 layer; every applet of `/bin/busybox --list` as /bin/<applet>; CMD ["sh"]
             refs localhost/crius/busybox:1, :latest, :2
  user       2 layers (busybox + /etc/passwd, /etc/group, /home/crius); USER crius
             (uid 1234, gid 1234, supplementary group extra 5678), ENTRYPOINT ["/bin/echo","entrypoint"],
             CMD ["cmd-default"], WORKDIR /home/crius, ENV HOME, CRIUS_IMAGE=user,
             GREETING=hello from image.  refs localhost/crius/user:1 (USER crius) and
             localhost/crius/user:uid (same layers, USER 1234)
  layers     5 layers (4 uncompressed, the last gzip) with overwrite, whiteout and opaque dir;
             final /layers: a="a from layer 3", c="c from layer 3", d="d from layer 5",
             dir/ holds only y="y from layer 4"; b and dir/x are deleted.
             ref localhost/crius/layers:1
  large      2 layers: busybox + one uncompressed layer holding /large/blob.bin (50 MiB of
             SHAKE-256 output, incompressible) and /large/blob.bin.sha256 (sha256sum format)
             ref localhost/crius/large:1
  multiarch  OCI image index: linux/amd64 + linux/arm64/v8 manifests sharing the busybox layer;
             ENV CRIUS_ARCH=<arch>.  ref localhost/crius/multiarch:1
  pause      busybox layer; ENTRYPOINT /bin/sh -c "trap 'exit 0' TERM INT; while :; do sleep 3600 &
             wait $!; done" (exits on SIGTERM, reaps orphans).  ref localhost/crius/pause:1

Formats:
  oci    OCI image layout tar (oci-layout, index.json, blobs/sha256/...): `ctr image import`,
         `skopeo copy oci-archive:OUT.tar:<ref-name>` (<ref-name> is the tag, see images.json)
  docker `docker save` layout (manifest.json, repositories, <id>/layer.tar, <cfg>.json)
  both   one tar holding both (what docker >= 25 `save` writes): ctr, skopeo and `docker load`.
         `docker load` sees only the linux/amd64 manifest of a multi-arch image.
"""
import argparse
import gzip
import hashlib
import io
import json
import os
import subprocess
import sys
import tarfile

BUSYBOX = "/bin/busybox"  # from Debian's busybox-static (statically linked)
PATH_ENV = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
EPOCH = "1970-01-01T00:00:00Z"
LARGE_SIZE = 50 * 1024 * 1024
LARGE_SEED = b"crius large test layer v1"

MT_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MT_INDEX = "application/vnd.oci.image.index.v1+json"
MT_CONFIG = "application/vnd.oci.image.config.v1+json"
MT_LAYER = "application/vnd.oci.image.layer.v1.tar"
MT_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"


def sha(b):
    return "sha256:" + hashlib.sha256(b).hexdigest()


def jdump(obj):
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


# ---------------------------------------------------------------- layers

def _ti(name, uid=0, gid=0, **kw):
    ti = tarfile.TarInfo(name)
    ti.mtime = 0
    ti.uid, ti.gid = uid, gid
    ti.uname = "root" if uid == 0 else ""
    ti.gname = "root" if gid == 0 else ""
    for k, v in kw.items():
        setattr(ti, k, v)
    return ti


class LayerWriter:
    def __init__(self):
        self.buf = io.BytesIO()
        self.t = tarfile.open(fileobj=self.buf, mode="w", format=tarfile.PAX_FORMAT)

    def dir(self, name, mode=0o755, uid=0, gid=0):
        self.t.addfile(_ti(name.rstrip("/") + "/", uid, gid, type=tarfile.DIRTYPE, mode=mode))

    def file(self, name, data, mode=0o644, uid=0, gid=0):
        if isinstance(data, str):
            data = data.encode()
        self.t.addfile(_ti(name, uid, gid, size=len(data), mode=mode), io.BytesIO(data))

    def symlink(self, name, target):
        self.t.addfile(_ti(name, type=tarfile.SYMTYPE, linkname=target, mode=0o777))

    def finish(self, compress=False):
        self.t.close()
        return Layer(self.buf.getvalue(), compress)


class Layer:
    def __init__(self, tar_bytes, compress=False):
        self.diff_id = sha(tar_bytes)
        self.tar = tar_bytes
        if compress:
            self.blob = gzip.compress(tar_bytes, compresslevel=6, mtime=0)
            self.media_type = MT_LAYER_GZIP
        else:
            self.blob = tar_bytes
            self.media_type = MT_LAYER
        self.digest = sha(self.blob)


def applets():
    out = subprocess.run([BUSYBOX, "--list"], check=True, capture_output=True).stdout.decode()
    return sorted({a.strip() for a in out.split() if a.strip() and a.strip() != "busybox"})


PASSWD_BASE = "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"
GROUP_BASE = "root:x:0:\nnogroup:x:65534:\n"

_BASE = None


def base_layer():
    """The busybox root filesystem shared by every image (one blob, deduplicated)."""
    global _BASE
    if _BASE is None:
        w = LayerWriter()
        for d, mode in [("bin", 0o755), ("dev", 0o755), ("etc", 0o755), ("home", 0o755),
                        ("proc", 0o555), ("root", 0o700), ("run", 0o755), ("sbin", 0o755),
                        ("sys", 0o555), ("tmp", 0o1777), ("usr", 0o755), ("usr/bin", 0o755),
                        ("usr/sbin", 0o755), ("var", 0o755), ("var/tmp", 0o1777)]:
            w.dir(d, mode)
        w.file("etc/passwd", PASSWD_BASE)
        w.file("etc/group", GROUP_BASE)
        with open(BUSYBOX, "rb") as f:
            w.file("bin/busybox", f.read(), mode=0o755)
        for a in applets():
            w.symlink("bin/" + a, "busybox")
        _BASE = w.finish()
    return _BASE


def user_layer():
    w = LayerWriter()
    w.dir("etc")
    w.file("etc/passwd", PASSWD_BASE + "crius:x:1234:1234:crius test user:/home/crius:/bin/sh\n")
    w.file("etc/group", GROUP_BASE + "crius:x:1234:\nextra:x:5678:crius\n")
    w.dir("home")
    w.dir("home/crius", 0o755, 1234, 1234)
    w.file("home/crius/hello.txt", "hello from the user image\n", 0o644, 1234, 1234)
    return w.finish()


def layers_layers():
    w2 = LayerWriter()
    w2.dir("layers")
    w2.file("layers/a", "a from layer 2\n")
    w2.file("layers/b", "b from layer 2\n")
    w2.dir("layers/dir")
    w2.file("layers/dir/x", "x from layer 2\n")
    w3 = LayerWriter()
    w3.dir("layers")
    w3.file("layers/a", "a from layer 3\n")
    w3.file("layers/c", "c from layer 3\n")
    w4 = LayerWriter()
    w4.dir("layers")
    w4.file("layers/.wh.b", b"")
    w4.dir("layers/dir")
    w4.file("layers/dir/.wh..wh..opq", b"")
    w4.file("layers/dir/y", "y from layer 4\n")
    w5 = LayerWriter()
    w5.dir("layers")
    w5.file("layers/d", "d from layer 5\n")
    return [w2.finish(), w3.finish(), w4.finish(), w5.finish(compress=True)]


def large_layer():
    data = hashlib.shake_256(LARGE_SEED).digest(LARGE_SIZE)
    w = LayerWriter()
    w.dir("large")
    w.file("large/blob.bin", data)
    w.file("large/blob.bin.sha256", "%s  /large/blob.bin\n" % hashlib.sha256(data).hexdigest())
    return w.finish()


# ---------------------------------------------------------------- images

class Manifest:
    """One single-platform image: config + layers."""

    def __init__(self, layers, cfg, arch="amd64", variant=None, comment="mkimage.py"):
        self.layers = layers
        self.arch, self.variant = arch, variant
        config = {
            "created": EPOCH,
            "architecture": arch,
            "os": "linux",
            "config": cfg,
            "rootfs": {"type": "layers", "diff_ids": [l.diff_id for l in layers]},
            "history": [{"created": EPOCH, "created_by": "%s layer %d" % (comment, i)}
                        for i in range(len(layers))],
        }
        if variant:
            config["variant"] = variant
        self.config = jdump(config)
        manifest = {
            "schemaVersion": 2,
            "mediaType": MT_MANIFEST,
            "config": {"mediaType": MT_CONFIG, "digest": sha(self.config), "size": len(self.config)},
            "layers": [{"mediaType": l.media_type, "digest": l.digest, "size": len(l.blob)}
                       for l in layers],
        }
        self.bytes = jdump(manifest)
        self.digest = sha(self.bytes)

    def platform(self):
        p = {"architecture": self.arch, "os": "linux"}
        if self.variant:
            p["variant"] = self.variant
        return p

    def descriptor(self):
        return {"mediaType": MT_MANIFEST, "digest": self.digest, "size": len(self.bytes),
                "platform": self.platform()}

    def blobs(self):
        return [self.config, self.bytes] + [l.blob for l in self.layers]


class Index:
    """A multi-platform image index."""

    def __init__(self, manifests):
        self.manifests = manifests
        self.bytes = jdump({"schemaVersion": 2, "mediaType": MT_INDEX,
                            "manifests": [m.descriptor() for m in manifests]})
        self.digest = sha(self.bytes)

    def descriptor(self):
        return {"mediaType": MT_INDEX, "digest": self.digest, "size": len(self.bytes)}

    def blobs(self):
        out = [self.bytes]
        for m in self.manifests:
            out += m.blobs()
        return out


def cfg(cmd=None, entrypoint=None, user=None, workdir="/", env=(), labels=None):
    c = {"Env": [PATH_ENV] + list(env), "WorkingDir": workdir}
    if cmd is not None:
        c["Cmd"] = cmd
    if entrypoint is not None:
        c["Entrypoint"] = entrypoint
    if user:
        c["User"] = user
    if labels:
        c["Labels"] = labels
    return c


PAUSE_SCRIPT = "trap 'exit 0' TERM INT; while :; do sleep 3600 & wait $!; done"


def image_busybox(over):
    m = Manifest([base_layer()], over(cfg(cmd=["sh"])), comment="busybox")
    return [("localhost/crius/busybox:1", m), ("localhost/crius/busybox:latest", m),
            ("localhost/crius/busybox:2", m)]


def image_user(over):
    layers = [base_layer(), user_layer()]
    common = dict(entrypoint=["/bin/echo", "entrypoint"], cmd=["cmd-default"],
                  workdir="/home/crius",
                  env=["HOME=/home/crius", "CRIUS_IMAGE=user", "GREETING=hello from image"],
                  labels={"org.crius.test.image": "user"})
    named = Manifest(layers, over(cfg(user="crius", **common)), comment="user")
    numeric = Manifest(layers, over(cfg(user="1234", **common)), comment="user")
    return [("localhost/crius/user:1", named), ("localhost/crius/user:uid", numeric)]


def image_layers(over):
    m = Manifest([base_layer()] + layers_layers(), over(cfg(cmd=["ls", "-R", "/layers"])),
                 comment="layers")
    return [("localhost/crius/layers:1", m)]


def image_large(over):
    m = Manifest([base_layer(), large_layer()], over(cfg(cmd=["sh"])), comment="large")
    return [("localhost/crius/large:1", m)]


def image_multiarch(over):
    ms = [Manifest([base_layer()], over(cfg(cmd=["sh"], env=["CRIUS_ARCH=" + arch])),
                   arch=arch, variant=variant, comment="multiarch")
          for arch, variant in (("amd64", None), ("arm64", "v8"))]
    return [("localhost/crius/multiarch:1", Index(ms))]


def image_pause(over):
    m = Manifest([base_layer()], over(cfg(entrypoint=["/bin/sh", "-c", PAUSE_SCRIPT])),
                 comment="pause")
    return [("localhost/crius/pause:1", m)]


KINDS = {
    "busybox": image_busybox,
    "user": image_user,
    "layers": image_layers,
    "large": image_large,
    "multiarch": image_multiarch,
    "pause": image_pause,
}


# ---------------------------------------------------------------- output

def split_ref(ref):
    last = ref.rsplit("/", 1)[-1]
    if ":" in last:
        repo, tag = ref.rsplit(":", 1)
    else:
        repo, tag = ref, "latest"
    return repo, tag


def add_bytes(t, name, data):
    t.addfile(_ti(name, size=len(data), mode=0o644), io.BytesIO(data))


def ref_names(refs):
    """org.opencontainers.image.ref.name per ref: the tag, or the full ref if tags collide."""
    tags = [split_ref(r)[1] for r in refs]
    return {r: (t if tags.count(t) == 1 else r) for r, t in zip(refs, tags)}


def write_tar(out, entries, fmt):
    """entries: [(ref, Manifest|Index)]. Returns metadata for images.json."""
    refs = [r for r, _ in entries]
    names = ref_names(refs)
    blobs = {}
    for _, obj in entries:
        for b in obj.blobs():
            blobs.setdefault(sha(b), b)
    tmp = out + ".tmp"
    with tarfile.open(tmp, "w", format=tarfile.PAX_FORMAT) as t:
        if fmt in ("oci", "both"):
            add_bytes(t, "oci-layout", b'{"imageLayoutVersion":"1.0.0"}')
            t.addfile(_ti("blobs/", type=tarfile.DIRTYPE, mode=0o755))
            t.addfile(_ti("blobs/sha256/", type=tarfile.DIRTYPE, mode=0o755))
            for d in sorted(blobs):
                add_bytes(t, "blobs/sha256/" + d[7:], blobs[d])
            index = {"schemaVersion": 2, "mediaType": MT_INDEX, "manifests": []}
            for ref, obj in entries:
                desc = obj.descriptor()
                desc["annotations"] = {"io.containerd.image.name": ref,
                                       "org.opencontainers.image.ref.name": names[ref]}
                index["manifests"].append(desc)
            add_bytes(t, "index.json", jdump(index))
        if fmt in ("docker", "both"):
            # docker load knows single-platform images only: use the amd64 one of an index
            by_manifest = {}
            for ref, obj in entries:
                m = obj if isinstance(obj, Manifest) else next(
                    x for x in obj.manifests if x.arch == "amd64")
                by_manifest.setdefault(m.digest, (m, []))[1].append(ref)
            docker_manifest, repositories, written = [], {}, set()
            for m, mrefs in by_manifest.values():
                if fmt == "both":  # reuse the OCI blobs, as docker >= 25 does
                    cfg_name = "blobs/sha256/" + sha(m.config)[7:]
                    layer_paths = ["blobs/sha256/" + l.digest[7:] for l in m.layers]
                else:
                    cfg_name = sha(m.config)[7:] + ".json"
                    if cfg_name not in written:
                        add_bytes(t, cfg_name, m.config)
                        written.add(cfg_name)
                    layer_paths = []
                    for l in m.layers:
                        lid = l.diff_id[7:]
                        if lid not in written:
                            t.addfile(_ti(lid + "/", type=tarfile.DIRTYPE, mode=0o755))
                            add_bytes(t, lid + "/VERSION", b"1.0")
                            add_bytes(t, lid + "/layer.tar", l.tar)
                            written.add(lid)
                        layer_paths.append(lid + "/layer.tar")
                docker_manifest.append({"Config": cfg_name, "RepoTags": mrefs, "Layers": layer_paths})
                for r in mrefs:
                    repo, tag = split_ref(r)
                    repositories.setdefault(repo, {})[tag] = m.layers[-1].diff_id[7:]
            add_bytes(t, "manifest.json", json.dumps(docker_manifest).encode())
            add_bytes(t, "repositories", jdump(repositories))
    os.replace(tmp, out)
    meta = []
    for ref, obj in entries:
        e = {"ref": ref, "ref_name": names[ref], "digest": obj.descriptor()["digest"],
             "media_type": obj.descriptor()["mediaType"], "size": obj.descriptor()["size"]}
        if isinstance(obj, Manifest):
            e["config_digest"] = sha(obj.config)
            e["layers"] = [l.digest for l in obj.layers]
            e["diff_ids"] = [l.diff_id for l in obj.layers]
            e["platforms"] = [obj.platform()]
        else:
            amd = next(x for x in obj.manifests if x.arch == "amd64")
            e["config_digest"] = sha(amd.config)
            e["layers"] = [l.digest for l in amd.layers]
            e["diff_ids"] = [l.diff_id for l in amd.layers]
            e["platforms"] = [dict(x.platform(), digest=x.digest, config_digest=sha(x.config))
                              for x in obj.manifests]
        meta.append(e)
    return meta


def overrides(a):
    def over(c):
        if a is None:
            return c
        c = dict(c)
        if a.cmd is not None:
            c["Cmd"] = json.loads(a.cmd)
        if a.entrypoint is not None:
            c["Entrypoint"] = json.loads(a.entrypoint)
        if a.user is not None:
            c["User"] = a.user
        if a.workdir is not None:
            c["WorkingDir"] = a.workdir
        if a.env:
            c["Env"] = list(c.get("Env", [])) + a.env
        return c
    return over


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("out", nargs="?", help="output tar")
    ap.add_argument("--image", choices=sorted(KINDS), default="busybox")
    ap.add_argument("--format", choices=["oci", "docker", "both"], default=None)
    ap.add_argument("--ref", action="append", help="image name (repeatable; default: the kind's refs)")
    ap.add_argument("--cmd", help="JSON list for CMD")
    ap.add_argument("--entrypoint", help="JSON list for ENTRYPOINT")
    ap.add_argument("--user")
    ap.add_argument("--workdir")
    ap.add_argument("--env", action="append", default=[], help="K=V (repeatable)")
    ap.add_argument("--all", metavar="DIR", help="build every kind into DIR, write DIR/images.json")
    ap.add_argument("--list", action="store_true")
    a = ap.parse_args()

    if a.list:
        for k in sorted(KINDS):
            print(k, " ".join(r for r, _ in KINDS[k](overrides(None))))
        return 0
    if a.all:
        fmt = a.format or "both"
        os.makedirs(a.all, exist_ok=True)
        result = {"format": fmt, "images": {}}
        for kind in sorted(KINDS):
            tar = os.path.join(a.all, kind + ".tar")
            result["images"][kind] = {"tar": kind + ".tar",
                                     "refs": write_tar(tar, KINDS[kind](overrides(None)), fmt)}
        tmp = os.path.join(a.all, "images.json.tmp")
        with open(tmp, "w") as f:
            json.dump(result, f, indent=1, sort_keys=True)
        os.replace(tmp, os.path.join(a.all, "images.json"))
        print(os.path.join(a.all, "images.json"))
        return 0
    if not a.out:
        ap.error("OUT.tar or --all DIR is required")
    entries = KINDS[a.image](overrides(a))
    if a.ref:
        obj = entries[0][1]
        entries = [(r, obj) for r in a.ref]
    for e in write_tar(a.out, entries, a.format or "oci"):
        print(a.out, e["ref"], "digest", e["digest"], "config", e["config_digest"],
              "layers", ",".join(e["layers"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
