"""Turn the components tests/harness/components.py built into what production receives (test harness only).

    packages.py build [WHAT ...]            build what is missing (all by default), one line per output
    packages.py path WHAT                   print the directory of a built output
    packages.py list                        every output, whether it is built, and its directory
    packages.py serve NETWORK IP NAME [LABEL=VALUE ...]
                                            serve the site and the registry from container NAME
    packages.py prune                       remove outputs of older recipes no container mounts
    packages.py smoke                       end-to-end check on a throwaway podman network: a node installs
                                            the pinned packages from the served repository (then kubeadm of
                                            the next minor), fetches and checks the release tarballs and
                                            flannel's manifest, pulls images with containerd through the
                                            registry as registry.k8s.io and ghcr.io mirror; another container
                                            lists a tag; all removed afterwards

Outputs (WHAT), each in ``$BAREMETAL_CACHE/packages/<what>-<hash>/`` (default cache /var/cache/baremetal-kubernetes):
  apt         a signed pkgs.k8s.io-style flat repository per Kubernetes minor of components.yml,
              core:/stable:/v<minor>/deb/{Release,InRelease,Release.gpg,Release.key,Packages,Packages.gz,amd64/*.deb}
              with kubeadm, kubelet, kubectl (<version>-1.1), cri-tools and kubernetes-cni built from the real binaries
  etcd        etcd-io/etcd/releases/download/v<v>/etcd-v<v>-linux-amd64.tar.gz and SHA256SUMS (GitHub's layout), for
              every etcd version components.yml builds
  containerd  containerd/containerd/releases/download/v<v>/containerd-<v>-linux-amd64.tar.gz(.sha256sum) and
              opencontainers/runc/releases/download/v<v>/runc.amd64 (+ runc.sha256sum)
  manifests   flannel-io/flannel/v<v>/Documentation/kube-flannel.yml (raw.githubusercontent.com's layout), the
              manifest of the flannel module at the tag
  images      registry/ (a distribution registry's filesystem storage holding the control-plane, kube-proxy,
              pause and CoreDNS images under their registry.k8s.io paths, and the flannel and
              flannel-cni-plugin images the manifest names under their ghcr.io paths), images.json
              (full image name -> digest), registry.yml (the read-only serving configuration)
  site        the HTTP root: apt + etcd + containerd + manifests hard-linked into one tree, and checksums.json (the
              role variables etcd_release_checksums, node_containerd_release_checksums,
              node_runc_release_checksums)

The hash of each output covers its inputs: the names of the component build directories it packages (their
names carry version and recipe hash), the source of the functions and constants that build it, and for images
the node image's id. An output is built in a temporary directory next to its place and renamed into place;
a lock per output lets two clones build at once; build.json records the inputs and how long it took.

serve: the site over HTTP at http://IP:8080/ (python3 -m http.server) and the registry at http://IP:5000
(plain HTTP, storage mounted read-only, registry in read-only maintenance mode), both from one container of
the node image. Nodes reach the registry as a registry.k8s.io and a ghcr.io mirror through containerd's hosts.toml
(a repository is stored without its registry host: kube-proxy, flannel-io/flannel). The URLs production uses map
by swapping the host: https://pkgs.k8s.io, https://github.com and https://raw.githubusercontent.com ->
http://IP:8080.
"""

import fcntl
import gzip
import hashlib
import inspect
import io
import ipaddress
import json
import os
import shutil
import socket
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import components  # noqa: E402  (tests/harness/components.py, next to this file)

CACHE = components.CACHE
OUT = CACHE / "packages"
NODE_IMAGE = os.environ.get("NODE_IMAGE", "localhost/baremetal-node:debian12")
os.environ.setdefault("CONTAINERS_CONF", str(HERE / "containers.conf"))
ARCH = "amd64"
REVISION = "1.1"  # pkgs.k8s.io's Debian revision: 1.36.3-1.1
EPOCH = 1767225600  # 2026-01-01T00:00:00Z, components.BUILD_DATE: fixed mtimes in packages and tarballs
HTTP_PORT = 8080
REGISTRY_PORT = 5000
REGISTRY_HOST = "registry.k8s.io"
# Flannel's images live on GitHub's registry; the same local registry serves them as its mirror.
GHCR_HOST = "ghcr.io"
FLANNEL_MODULE = "github.com/flannel-io/flannel"
# Where raw.githubusercontent.com serves the manifest at the tag, and the same path on the site.
FLANNEL_MANIFEST = "flannel-io/flannel/v{version}/Documentation/kube-flannel.yml"

# --- the apt repository ----------------------------------------------------------------------------------------

# As pkgs.k8s.io ships them (kubernetes/release: cmd/krel/templates/latest/{kubelet,kubeadm}).
KUBELET_SERVICE = """[Unit]
Description=kubelet: The Kubernetes Node Agent
Documentation=https://kubernetes.io/docs/
Wants=network-online.target
After=network-online.target

[Service]
ExecStart=/usr/bin/kubelet
Restart=always
StartLimitInterval=0
RestartSec=10

[Install]
WantedBy=multi-user.target
"""

KUBEADM_DROPIN = """# Note: This dropin only works with kubeadm and kubelet v1.11+
[Service]
Environment="KUBELET_KUBECONFIG_ARGS=--bootstrap-kubeconfig=/etc/kubernetes/bootstrap-kubelet.conf \
--kubeconfig=/etc/kubernetes/kubelet.conf"
Environment="KUBELET_CONFIG_ARGS=--config=/var/lib/kubelet/config.yaml"
# This is a file that "kubeadm init" and "kubeadm join" generates at runtime, populating the KUBELET_KUBEADM_ARGS \
variable dynamically
EnvironmentFile=-/var/lib/kubelet/kubeadm-flags.env
# This is a file that the user can use for overrides of the kubelet args as a last resort. Preferably, the user \
should use
# the .NodeRegistration.KubeletExtraArgs object in the configuration files instead. KUBELET_EXTRA_ARGS should be \
sourced from this file.
EnvironmentFile=-/etc/default/kubelet
ExecStart=
ExecStart=/usr/bin/kubelet $KUBELET_KUBECONFIG_ARGS $KUBELET_CONFIG_ARGS $KUBELET_KUBEADM_ARGS $KUBELET_EXTRA_ARGS
"""

# Debian's dh_installsystemd behaviour for the kubelet: enabled and started on install (it restarts every few
# seconds until kubeadm configures it, as the upstream install guide says); systemd reloaded for the drop-in.
KUBELET_POSTINST = """#!/bin/sh
set -e
if [ "$1" = configure ] && [ -d /run/systemd/system ]; then
  systemctl daemon-reload >/dev/null || true
  systemctl enable kubelet.service >/dev/null 2>&1 || true
  systemctl restart kubelet.service >/dev/null 2>&1 || true
fi
"""
RELOAD_POSTINST = """#!/bin/sh
set -e
if [ "$1" = configure ] && [ -d /run/systemd/system ]; then
  systemctl daemon-reload >/dev/null || true
fi
"""

# name -> (Depends, Description). Dependencies as upstream's, all satisfiable from Debian 12.
DEB_META = {
    "kubeadm": ("cri-tools (>= 1.30.0)", "Command-line utility for administering a Kubernetes cluster"),
    "kubelet": ("iptables (>= 1.4.21), kubernetes-cni (>= 1.1.1), iproute2, socat, util-linux, mount, ethtool, "
                "ebtables, conntrack", "Node agent for Kubernetes clusters"),
    "kubectl": ("", "Command-line utility for interacting with a Kubernetes cluster"),
    "cri-tools": ("", "Command-line utility for interacting with a container runtime"),
    "kubernetes-cni": ("", "Binaries required to provision kubernetes container networking"),
}


def write(path, data, mode=0o644):
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    path.write_bytes(data)
    path.chmod(mode)


def run(argv, **kwargs):
    kwargs.setdefault("capture_output", True)
    kwargs.setdefault("text", True)
    kwargs.setdefault("timeout", 1800)  # nothing here takes minutes; a hang must not stall a CI job for hours
    proc = subprocess.run(argv, check=False, **kwargs)
    if proc.returncode != 0:
        raise SystemExit("packages: `%s` failed (exit %d):\n%s%s" % (
            " ".join(str(a) for a in argv), proc.returncode, (proc.stdout or "")[-3000:], (proc.stderr or "")[-3000:]))
    return proc.stdout


def control_text(name, version, depends=None, description=None):
    meta_depends, meta_description = DEB_META[name]
    depends = meta_depends if depends is None else depends
    lines = ["Package: " + name, "Version: " + version, "Architecture: " + ARCH,
             "Maintainer: Kubernetes Authors <dev@kubernetes.io>", "Section: admin", "Priority: optional",
             "Homepage: https://kubernetes.io"]
    if depends:
        lines.append("Depends: " + depends)
    lines.append("Description: %s\n %s (built from source for the baremetal.kubernetes test harness)." % (
        description or meta_description, name))
    return "\n".join(lines) + "\n"


def build_deb(work, pool, name, version, files, scripts=None):
    """files: {absolute path in the package: (bytes | str | Path of a file to copy, mode)}. Returns the .deb."""
    root = Path(work) / ("%s_%s" % (name, version))
    shutil.rmtree(root, ignore_errors=True)
    for target, (content, mode) in files.items():
        dest = root / target.lstrip("/")
        dest.parent.mkdir(parents=True, exist_ok=True)
        if content is None:  # a directory
            dest.mkdir(mode=mode, exist_ok=True)
        elif isinstance(content, Path):
            shutil.copyfile(content, dest)
            dest.chmod(mode)
        else:
            write(dest, content, mode)
    size_kib = sum((p.stat().st_size + 1023) // 1024 for p in root.rglob("*") if p.is_file())
    write(root / "DEBIAN" / "control", control_text(name, version).replace(
        "\nSection:", "\nInstalled-Size: %d\nSection:" % size_kib, 1))
    for script, text in (scripts or {}).items():
        write(root / "DEBIAN" / script, text, 0o755)
    deb = Path(pool) / ("%s_%s_%s.deb" % (name, version, ARCH))
    deb.parent.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, SOURCE_DATE_EPOCH=str(EPOCH))
    run(["dpkg-deb", "--root-owner-group", "-Zgzip", "-z6", "--build", str(root), str(deb)], env=env)
    shutil.rmtree(root)
    return deb


def write_index(repo):
    """Packages, Packages.gz and Release of the flat repository ``repo``, as pkgs.k8s.io lays them out."""
    entries = []
    for deb in sorted(Path(repo).rglob("*.deb")):
        data = deb.read_bytes()
        fields = run(["dpkg-deb", "-f", str(deb)]).strip()
        entries.append("%s\nFilename: %s\nSize: %d\nMD5sum: %s\nSHA256: %s\n" % (
            fields, deb.relative_to(repo), len(data), hashlib.md5(data, usedforsecurity=False).hexdigest(),
            hashlib.sha256(data).hexdigest()))
    packages = "\n".join(entries).encode()
    write(Path(repo) / "Packages", packages)
    write(Path(repo) / "Packages.gz", gzip.compress(packages, mtime=0))
    date = time.strftime("%a, %d %b %Y %H:%M:%S UTC", time.gmtime())
    lines = ["Origin: baremetal-kubernetes test harness", "Label: pkgs.k8s.io mirror (built from source)",
             "Architectures: " + ARCH, "Date: " + date]
    for algo, label in (("md5", "MD5Sum"), ("sha256", "SHA256")):
        lines.append(label + ":")
        for name in ("Packages", "Packages.gz"):
            data = (Path(repo) / name).read_bytes()
            digest = hashlib.new(algo, data, usedforsecurity=False) if algo == "md5" else hashlib.new(algo, data)
            lines.append(" %s %d %s" % (digest.hexdigest(), len(data), name))
    write(Path(repo) / "Release", "\n".join(lines) + "\n")


def make_key(gnupghome):
    """A throwaway signing key, generated per build; returns its fingerprint."""
    os.makedirs(gnupghome, mode=0o700, exist_ok=True)
    env = dict(os.environ, GNUPGHOME=str(gnupghome))
    run(["gpg", "--batch", "--passphrase", "", "--quick-gen-key",
         "baremetal-kubernetes test mirror (throwaway key) <harness@invalid>", "ed25519", "sign", "2y"], env=env)
    listing = run(["gpg", "--batch", "--with-colons", "--list-secret-keys"], env=env)
    return next(line.split(":")[9] for line in listing.splitlines() if line.startswith("fpr:"))


def sign(repo, gnupghome, fingerprint):
    env = dict(os.environ, GNUPGHOME=str(gnupghome))
    release = str(Path(repo) / "Release")
    for args, out in ((["--clearsign"], "InRelease"), (["--armor", "--detach-sign"], "Release.gpg")):
        run(["gpg", "--batch", "--yes", "--local-user", fingerprint, "--digest-algo", "SHA256", *args,
             "--output", str(Path(repo) / out), release], env=env)
    key = run(["gpg", "--batch", "--armor", "--export", fingerprint], env=env)
    write(Path(repo) / "Release.key", key)


def build_apt(out, work, comps, versions):
    fingerprint = make_key(work / "gnupg")
    cni_version = versions["cni_plugins"]
    cni_bin = comps["cni-plugins"][cni_version] / "bin"
    by_minor = {}
    for version in versions["kubernetes"]:
        by_minor.setdefault(version.rsplit(".", 1)[0], []).append(version)
    for minor, k8s_versions in sorted(by_minor.items()):
        repo = out / "core:" / "stable:" / ("v" + minor) / "deb"
        pool = repo / ARCH
        crictl = versions["cri_tools"][minor]
        build_deb(work, pool, "cri-tools", "%s-%s" % (crictl, REVISION),
                  {"/usr/bin/crictl": (comps["cri-tools"][crictl] / "bin" / "crictl", 0o755)})
        build_deb(work, pool, "kubernetes-cni", "%s-%s" % (cni_version, REVISION),
                  {"/opt/cni/bin/" + p.name: (p, 0o755) for p in sorted(cni_bin.iterdir())})
        for version in k8s_versions:
            full = "%s-%s" % (version, REVISION)
            kbin = comps["kubernetes"][version] / "bin"
            build_deb(work, pool, "kubeadm", full, {
                "/usr/bin/kubeadm": (kbin / "kubeadm", 0o755),
                "/usr/lib/systemd/system/kubelet.service.d/10-kubeadm.conf": (KUBEADM_DROPIN, 0o644)},
                {"postinst": RELOAD_POSTINST})
            build_deb(work, pool, "kubelet", full, {
                "/usr/bin/kubelet": (kbin / "kubelet", 0o755),
                "/usr/lib/systemd/system/kubelet.service": (KUBELET_SERVICE, 0o644),
                "/etc/kubernetes/manifests": (None, 0o755)},
                {"postinst": KUBELET_POSTINST})
            build_deb(work, pool, "kubectl", full, {"/usr/bin/kubectl": (kbin / "kubectl", 0o755)})
        write_index(repo)
        sign(repo, work / "gnupg", fingerprint)


# --- release tarballs ------------------------------------------------------------------------------------------

def tar_gz(path, entries):
    """entries: [(name in the archive, Path of a file | None for a directory | bytes, mode)], deterministic."""
    with open(path, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=6, mtime=0, filename="") as gz, \
            tarfile.open(fileobj=gz, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for name, content, mode in entries:
            info = tarfile.TarInfo(name)
            info.mtime, info.mode, info.uid, info.gid, info.uname, info.gname = EPOCH, mode, 0, 0, "root", "root"
            if content is None:
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
                continue
            data = content.read_bytes() if isinstance(content, Path) else content
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def sha256_file(path):
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


ETCD_README = """# etcd v%(version)s (linux/%(arch)s)

etcd, etcdctl and etcdutl built from go.etcd.io/etcd v%(version)s by the baremetal.kubernetes test harness
(tests/harness/components.py), laid out as the official release tarball. See https://etcd.io/docs/.
"""


def build_etcd(out, work, comps, versions):
    """Every etcd version built (the clusters' and the previous minor molecule/etcd upgrades from)."""
    checksums = {}
    for version, built in sorted(comps["etcd"].items()):
        top = "etcd-v%s-linux-%s" % (version, ARCH)
        rel = out / "etcd-io" / "etcd" / "releases" / "download" / ("v" + version)
        rel.mkdir(parents=True)
        ebin = built / "bin"
        tarball = rel / (top + ".tar.gz")
        tar_gz(tarball, [(top, None, 0o755)] + [("%s/%s" % (top, b), ebin / b, 0o755)
                                                for b in ("etcd", "etcdctl", "etcdutl")]
               + [(top + "/README.md", (ETCD_README % {"version": version, "arch": ARCH}).encode(), 0o644)])
        digest = sha256_file(tarball)
        write(rel / "SHA256SUMS", "%s  %s\n" % (digest, tarball.name))
        checksums[version] = {ARCH: "sha256:" + digest}
    write(out / "checksums.json", json.dumps({"etcd_release_checksums": checksums}, indent=2, sort_keys=True) + "\n")


def build_containerd(out, work, comps, versions):
    version, runc_version = versions["containerd"], versions["runc"]
    rel = out / "containerd" / "containerd" / "releases" / "download" / ("v" + version)
    rel.mkdir(parents=True)
    cbin = comps["containerd"][version] / "bin"
    tarball = rel / ("containerd-%s-linux-%s.tar.gz" % (version, ARCH))
    tar_gz(tarball, [("bin", None, 0o755)] + [("bin/" + b, cbin / b, 0o755) for b in
                                              ("containerd", "containerd-shim-runc-v2", "ctr")])
    ctd_digest = sha256_file(tarball)
    write(rel / (tarball.name + ".sha256sum"), "%s  %s\n" % (ctd_digest, tarball.name))
    runc_rel = out / "opencontainers" / "runc" / "releases" / "download" / ("v" + runc_version)
    runc_rel.mkdir(parents=True)
    runc = runc_rel / ("runc." + ARCH)
    shutil.copyfile(comps["runc"][runc_version] / "bin" / "runc", runc)
    runc.chmod(0o755)
    runc_digest = sha256_file(runc)
    write(runc_rel / "runc.sha256sum", "%s  %s\n" % (runc_digest, runc.name))
    write(out / "checksums.json", json.dumps({
        "node_containerd_release_checksums": {version: {ARCH: "sha256:" + ctd_digest}},
        "node_runc_release_checksums": {runc_version: {ARCH: "sha256:" + runc_digest}}},
        indent=2, sort_keys=True) + "\n")


# --- images ----------------------------------------------------------------------------------------------------

# The distroless/static essentials the control-plane binaries expect (upstream bases them on distroless via
# go-runner): root and nobody/nonroot users, /tmp, a resolver order.
STATIC_PASSWD = "root:x:0:0:root:/root:/sbin/nologin\nnobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\n" \
                "nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n"
STATIC_GROUP = "root:x:0:\nnobody:x:65534:\nnonroot:x:65532:\n"
STATIC_NSSWITCH = "hosts: files dns\n"
PATH_ENV = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

SERVER_CONTAINERFILE = """FROM scratch
COPY rootfs/ /
COPY --chmod=755 {binary} /usr/local/bin/{binary}
ENV PATH={path}
ENTRYPOINT ["/usr/local/bin/{binary}"]
"""
# kube-proxy needs iptables, ip6tables, nft and conntrack (upstream: distroless-iptables). The package layer is
# the same for every version, so podman's layer cache builds it once.
KUBE_PROXY_CONTAINERFILE = """FROM {node_image}
RUN apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \\
      iptables nftables conntrack ipset kmod ebtables >/dev/null \\
    && apt-get clean && rm -rf /var/lib/apt/lists/* /var/cache/apt/archives/*.deb
COPY --chmod=755 kube-proxy /usr/local/bin/kube-proxy
ENTRYPOINT ["/usr/local/bin/kube-proxy"]
CMD []
"""
# As flannel's images/Dockerfile: flanneld, install-conf and mk-docker-opts.sh in /opt/bin, with iproute2, iptables
# (nft and legacy), nftables and CA certificates; Debian's instead of Alpine's, and Debian's default iptables-nft
# (the kube-proxy image's too) where upstream installs iptables-wrapper to pick one at start.
FLANNEL_CONTAINERFILE = """FROM {node_image}
RUN apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \\
      iproute2 iptables nftables ca-certificates >/dev/null \\
    && apt-get clean && rm -rf /var/lib/apt/lists/* /var/cache/apt/archives/*.deb
COPY --chmod=755 flanneld install-conf mk-docker-opts.sh /opt/bin/
ENTRYPOINT ["/opt/bin/flanneld"]
"""
# The flannel-cni-plugin image: /flannel, and the `cp` the manifest's init container runs (upstream's image is
# Alpine for it); here a static busybox from Debian on an empty image.
FLANNEL_CNI_PLUGIN_CONTAINERFILE = """FROM {node_image} AS busybox
RUN apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \\
      busybox-static >/dev/null
FROM scratch
COPY --from=busybox /bin/busybox /bin/busybox
RUN ["/bin/busybox", "--install", "-s", "/bin"]
ENV PATH={path}
COPY --chmod=755 flannel /flannel
"""
PAUSE_CONTAINERFILE = """FROM scratch
COPY --chmod=755 pause /pause
USER 65535:65535
ENTRYPOINT ["/pause"]
"""
# As CoreDNS's own Dockerfile: nonroot, the binary with cap_net_bind_service (setcap in the context; COPY keeps
# the file capability) so it binds :53 with only NET_BIND_SERVICE, which kubeadm's Deployment adds.
COREDNS_CONTAINERFILE = """FROM scratch
COPY rootfs/ /
COPY coredns /coredns
USER 65532:65532
WORKDIR /
EXPOSE 53 53/udp
ENTRYPOINT ["/coredns"]
"""

REGISTRY_BUILD_CONFIG = """version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: {root}
  maintenance:
    uploadpurging:
      enabled: false
http:
  addr: 127.0.0.1:{port}
"""
# Serving: the storage mounted read-only, the registry in read-only maintenance mode (pushes refused).
REGISTRY_SERVE_CONFIG = """version: 0.1
log:
  level: info
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: /var/lib/registry
  maintenance:
    uploadpurging:
      enabled: false
    readonly:
      enabled: true
http:
  addr: :%d
""" % REGISTRY_PORT


def node_image_id():
    proc = subprocess.run(["podman", "image", "inspect", "--format", "{{.Id}}", NODE_IMAGE],
                          capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise SystemExit("packages: the node image %s is missing (tests/harness/build-node-image.sh)" % NODE_IMAGE)
    return proc.stdout.strip()


def module_source(module, version):
    """The module's source in the Go module cache (downloaded and checked against go.sum's database if missing)."""
    env = components.go_env({})
    info = json.loads(run(["go", "mod", "download", "-json", "%s@v%s" % (module, version)], env=env,
                          cwd=tempfile.gettempdir()))
    return Path(info["Dir"])


def k8s_source(version):
    return module_source("k8s.io/kubernetes", version)


def flannel_manifest(version):
    """Documentation/kube-flannel.yml of the flannel module at the tag: the file raw.githubusercontent.com serves."""
    return module_source(FLANNEL_MODULE, version) / "Documentation" / "kube-flannel.yml"


def flannel_images(manifest, version):
    """(flannel image, flannel-cni-plugin image) as the manifest names them; anything else there is an error."""
    import yaml  # the venv's PyYAML, as components.load_versions

    named = set()
    for doc in yaml.safe_load_all(Path(manifest).read_text()):
        spec = ((doc or {}).get("spec") or {}).get("template", {}).get("spec", {})
        for container in spec.get("initContainers", []) + spec.get("containers", []):
            named.add(container["image"])
    flannel = "%s/flannel-io/flannel:v%s" % (GHCR_HOST, version)
    plugins = sorted(i for i in named if i.startswith(GHCR_HOST + "/flannel-io/flannel-cni-plugin:"))
    if flannel not in named or len(plugins) != 1 or named != {flannel, *plugins}:
        raise SystemExit("packages: %s names the images %s; this recipe builds %s and one flannel-cni-plugin" % (
            manifest, ", ".join(sorted(named)), flannel))
    return flannel, plugins[0]


def image_list(kubeadm, version):
    """What `kubeadm config images list` prints for ``version``, minus etcd (the collection runs etcd itself)."""
    listing = run([str(kubeadm), "config", "images", "list", "--kubernetes-version", "v" + version])
    images = [line.strip() for line in listing.splitlines() if line.strip()]
    return [i for i in images if not i.startswith(REGISTRY_HOST + "/etcd:")]


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_http(url, seconds):
    import urllib.request
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2):
                return True
        except OSError:
            time.sleep(0.3)
    return False


def build_images(out, work, comps, versions):
    pause_version = versions["pause"]
    first = versions["kubernetes"][0]
    wanted = {}  # full image name -> (context dir, Containerfile text)
    rootfs = work / "rootfs"
    write(rootfs / "etc" / "passwd", STATIC_PASSWD)
    write(rootfs / "etc" / "group", STATIC_GROUP)
    write(rootfs / "etc" / "nsswitch.conf", STATIC_NSSWITCH)
    (rootfs / "tmp").mkdir(parents=True)
    (rootfs / "tmp").chmod(0o1777)
    (rootfs / "etc" / "ssl" / "certs").mkdir(parents=True)
    if Path("/etc/ssl/certs/ca-certificates.crt").exists():
        shutil.copyfile("/etc/ssl/certs/ca-certificates.crt", rootfs / "etc" / "ssl" / "certs" / "ca-certificates.crt")

    def context(name, files):
        ctx = work / "ctx" / name
        ctx.mkdir(parents=True)
        for dest, src in files.items():
            if src.is_dir():
                shutil.copytree(src, ctx / dest, symlinks=True)
            else:
                shutil.copyfile(src, ctx / dest)
        return ctx

    expected = []
    for version in versions["kubernetes"]:
        minor = version.rsplit(".", 1)[0]
        kbin = comps["kubernetes"][version] / "bin"
        listed = image_list(kbin / "kubeadm", version)
        expected += listed
        tag = "v" + version
        for binary in ("kube-apiserver", "kube-controller-manager", "kube-scheduler"):
            wanted["%s/%s:%s" % (REGISTRY_HOST, binary, tag)] = (
                context("%s-%s" % (binary, version), {binary: kbin / binary, "rootfs": rootfs}),
                SERVER_CONTAINERFILE.format(binary=binary, path=PATH_ENV))
        wanted["%s/kube-proxy:%s" % (REGISTRY_HOST, tag)] = (
            context("kube-proxy-%s" % version, {"kube-proxy": kbin / "kube-proxy"}),
            KUBE_PROXY_CONTAINERFILE.format(node_image=NODE_IMAGE))
        coredns = versions["coredns"][minor]
        name = "%s/coredns/coredns:v%s" % (REGISTRY_HOST, coredns)
        if name not in wanted:  # two minors may share a CoreDNS version
            ctx = context("coredns-%s" % coredns, {"coredns": comps["coredns"][coredns] / "bin" / "coredns",
                                                   "rootfs": rootfs})
            (ctx / "coredns").chmod(0o755)
            run(["setcap", "cap_net_bind_service=+ep", str(ctx / "coredns")])
            wanted[name] = (ctx, COREDNS_CONTAINERFILE)
    # pause: build/pause/linux/pause.c of the first Kubernetes version, static, as build/pause/Makefile does.
    pause_dir = work / "ctx" / "pause"
    pause_dir.mkdir(parents=True)
    run(["gcc", "-Os", "-Wall", "-Werror", "-static", "-DVERSION=v%s-baremetal" % pause_version, "-o",
         str(pause_dir / "pause"), str(k8s_source(first) / "build" / "pause" / "linux" / "pause.c")])
    run(["strip", str(pause_dir / "pause")])
    wanted["%s/pause:%s" % (REGISTRY_HOST, pause_version)] = (pause_dir, PAUSE_CONTAINERFILE)
    # Flannel: the two images its manifest names, under their ghcr.io paths.
    flannel = versions["flannel"]
    flannel_image, plugin_image = flannel_images(flannel_manifest(flannel), flannel)
    fbin = comps["flannel"][flannel] / "bin"
    wanted[flannel_image] = (
        context("flannel-%s" % flannel, {"flanneld": fbin / "flanneld", "install-conf": fbin / "install-conf",
                                         "mk-docker-opts.sh": module_source(FLANNEL_MODULE, flannel) / "dist"
                                         / "mk-docker-opts.sh"}),
        FLANNEL_CONTAINERFILE.format(node_image=NODE_IMAGE))
    plugin_bin = comps["flannel-cni-plugin"][versions["flannel_cni_plugin"]] / "bin" / "flannel"
    wanted[plugin_image] = (context("flannel-cni-plugin", {"flannel": plugin_bin}),
                            FLANNEL_CNI_PLUGIN_CONTAINERFILE.format(node_image=NODE_IMAGE, path=PATH_ENV))
    missing = sorted(set(expected) - set(wanted))
    if missing:
        raise SystemExit("packages: kubeadm lists images this recipe does not build: %s" % ", ".join(missing))

    storage = out / "registry"
    storage.mkdir()
    port = free_port()
    write(work / "registry-build.yml", REGISTRY_BUILD_CONFIG.format(root=storage, port=port))
    registry_bin = comps["registry"][versions["registry"]] / "bin" / "registry"
    log = open(work / "registry.log", "w")  # noqa: SIM115 (closed in finally)
    env = dict(os.environ, OTEL_TRACES_EXPORTER="none", OTEL_SDK_DISABLED="true")
    server = subprocess.Popen([str(registry_bin), "serve", str(work / "registry-build.yml")], stdout=log,
                              stderr=subprocess.STDOUT, env=env)
    digests = {}
    try:
        if not wait_http("http://127.0.0.1:%d/v2/" % port, 20):
            raise SystemExit("packages: the build registry did not answer on 127.0.0.1:%d in 20 s:\n%s" % (
                port, (work / "registry.log").read_text()[-2000:]))
        for name, (ctx, containerfile) in sorted(wanted.items()):
            started = time.monotonic()
            write(ctx / "Containerfile", containerfile)
            iidfile = work / "iid"
            run(["podman", "build", "-q", "--pull=never", "--timestamp", str(EPOCH), "-f", str(ctx / "Containerfile"),
                 "--iidfile", str(iidfile), "-t", name, str(ctx)])
            path = name.split("/", 1)[1]  # the repository without the registry host, as a mirror is asked
            digestfile = work / "digest"
            # By image id: another clone building other versions may move the local tag meanwhile.
            run(["podman", "push", "-q", "--tls-verify=false", "--format", "oci", "--digestfile", str(digestfile),
                 iidfile.read_text().strip(), "127.0.0.1:%d/%s" % (port, path)])
            digests[name] = digestfile.read_text().strip()
            print("    image %-50s %s (%.0f s)" % (name, digests[name], time.monotonic() - started), flush=True)
    finally:
        server.terminate()
        try:
            server.wait(10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        log.close()
    write(out / "images.json", json.dumps(digests, indent=2, sort_keys=True) + "\n")
    write(out / "registry.yml", REGISTRY_SERVE_CONFIG)


# --- manifests ---------------------------------------------------------------------------------------------------

def build_manifests(out, work, comps, versions):
    """Flannel's manifest at the path raw.githubusercontent.com serves it, from the module (the repository at the
    tag, checked against the Go checksum database when it was downloaded)."""
    version = versions["flannel"]
    dest = out / FLANNEL_MANIFEST.format(version=version)
    dest.parent.mkdir(parents=True)
    shutil.copyfile(flannel_manifest(version), dest)
    dest.chmod(0o644)


# --- the site: one HTTP root -------------------------------------------------------------------------------------

def build_site(out, work, comps, versions, parts):
    checksums = {}
    for part in parts:
        for src in sorted(part.rglob("*")):
            rel = src.relative_to(part)
            if rel.parts[0] == "build.json":
                continue
            if rel == Path("checksums.json"):
                checksums.update(json.loads(src.read_text()))
                continue
            dest = out / rel
            if src.is_dir():
                dest.mkdir(parents=True, exist_ok=True)
            else:
                dest.parent.mkdir(parents=True, exist_ok=True)
                os.link(src, dest)
    write(out / "checksums.json", json.dumps(checksums, indent=2, sort_keys=True) + "\n")


# --- outputs, hashes, cache --------------------------------------------------------------------------------------

COMMON_RECIPE = [write, run, tar_gz, sha256_file, "ARCH=" + ARCH, "EPOCH=%d" % EPOCH]
OUTPUTS = {
    # name: (builder, components it packages, recipe parts hashed besides the builder's source, depends on)
    "apt": (build_apt, ["kubernetes", "cri-tools", "cni-plugins"],
            [control_text, build_deb, write_index, make_key, sign, KUBELET_SERVICE, KUBEADM_DROPIN,
             KUBELET_POSTINST, RELOAD_POSTINST, json.dumps(DEB_META, sort_keys=True), REVISION], []),
    "etcd": (build_etcd, ["etcd"], [ETCD_README], []),
    "containerd": (build_containerd, ["containerd", "runc"], [], []),
    "images": (build_images, ["kubernetes", "coredns", "registry", "flannel", "flannel-cni-plugin"],
               [SERVER_CONTAINERFILE, KUBE_PROXY_CONTAINERFILE, PAUSE_CONTAINERFILE, COREDNS_CONTAINERFILE,
                FLANNEL_CONTAINERFILE, FLANNEL_CNI_PLUGIN_CONTAINERFILE, STATIC_PASSWD, STATIC_GROUP,
                STATIC_NSSWITCH, PATH_ENV, REGISTRY_BUILD_CONFIG, REGISTRY_SERVE_CONFIG, image_list, module_source,
                k8s_source, flannel_manifest, flannel_images, REGISTRY_HOST, GHCR_HOST, FLANNEL_MODULE], []),
    "manifests": (build_manifests, ["flannel"], [module_source, flannel_manifest, FLANNEL_MODULE, FLANNEL_MANIFEST],
                  []),
    "site": (build_site, [], [], ["apt", "etcd", "containerd", "manifests"]),
}


def component_dirs(names):
    """{component: {version: Path}} for the named components, whether built or not."""
    versions = components.load_versions()
    gover = components.go_version()
    every = components.recipes(versions)
    return {name: {r["version"]: components.target_dir(name, r, gover) for r in every[name]} for name in names}


_MEMO = {}  # output name -> its directory, "<name>/inputs" -> what its hash covers (per process)


def output_dir(what):
    _memo = _MEMO
    if what in _memo:
        return _memo[what]
    builder, comp_names, recipe, deps = OUTPUTS[what]
    parts = [inspect.getsource(p) if callable(p) else str(p) for p in [builder, *COMMON_RECIPE, *recipe]]
    dirs = component_dirs(comp_names)
    inputs = {"components": sorted(d.name for per in dirs.values() for d in per.values()),
              "recipe": hashlib.sha256("\0".join(parts).encode()).hexdigest(),
              "outputs": [output_dir(d).name for d in deps]}
    if what == "images":
        inputs["node_image"] = node_image_id()
    digest = hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()[:12]
    _memo[what] = OUT / ("%s-%s" % (what, digest))
    _memo[what + "/inputs"] = inputs
    return _memo[what]


def build_output(what):
    """Build ``what`` (and what it depends on) unless cached. Returns (dir, seconds or None when cached)."""
    builder, comp_names, _recipe, deps = OUTPUTS[what]
    dep_dirs = [build_output(d)[0] for d in deps]
    target = output_dir(what)
    if (target / "build.json").exists():
        return target, None
    dirs = component_dirs(comp_names)
    absent = sorted(str(d) for per in dirs.values() for d in per.values() if not (d / "build.json").exists())
    if absent:
        raise SystemExit("packages: %s needs components that are not built yet:\n  %s\n(make components)" % (
            what, "\n  ".join(absent)))
    OUT.mkdir(parents=True, exist_ok=True)
    with open(OUT / (".%s.lock" % what), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (target / "build.json").exists():
            return target, None
        started = time.monotonic()
        with tempfile.TemporaryDirectory(prefix=".%s-" % what, dir=OUT) as tmp:
            tmp = Path(tmp)
            out, work = tmp / "out", tmp / "work"
            out.mkdir()
            work.mkdir()
            versions = components.load_versions()
            if what == "site":
                builder(out, work, dirs, versions, dep_dirs)
            else:
                builder(out, work, dirs, versions)
            seconds = round(time.monotonic() - started, 1)
            record = {"output": what, "inputs": _MEMO[what + "/inputs"], "seconds": seconds}
            write(out / "build.json", json.dumps(record, indent=2, sort_keys=True) + "\n")
            out.chmod(0o755)
            out.rename(target)
        return target, seconds


# --- serve -------------------------------------------------------------------------------------------------------

SERVE_SCRIPT = """set -u
trap 'kill $(jobs -p) 2>/dev/null; exit 0' TERM INT
registry serve /etc/baremetal-registry.yml &
python3 -m http.server {http} --bind {ip} --directory /srv >/dev/null 2>&1 &
wait -n
echo "packages serve: a server exited" >&2
exit 1
"""


def podman(*argv, check=True):
    proc = subprocess.run(["podman", *argv], capture_output=True, text=True, check=False, timeout=600)
    if check and proc.returncode != 0:
        raise SystemExit("packages: `podman %s` failed (exit %d): %s"
                         % (" ".join(argv), proc.returncode, proc.stderr.strip()[-2000:]))
    return proc


def serve(network, ip, name, labels):
    site = build_output("site")[0]
    images = build_output("images")[0]
    registry_bin = component_dirs(["registry"])["registry"][components.load_versions()["registry"]] / "bin" / "registry"
    served = "%s+%s" % (site.name, images.name)
    state = "started"
    if podman("container", "exists", name, check=False).returncode == 0:
        current = podman("container", "inspect", "--format",
                         '{{.State.Running}} {{index .Config.Labels "baremetal.packages"}}', name).stdout.strip()
        if current == "true " + served:
            state = "already running"
        else:
            podman("rm", "-f", "-t", "2", name)
    if state == "started":
        argv = ["run", "-d", "--name", name, "--network", network, "--ip", ip, "--stop-signal", "TERM",
                "--label", "baremetal.packages=" + served,
                "-e", "OTEL_TRACES_EXPORTER=none", "-e", "OTEL_SDK_DISABLED=true",
                "-v", "%s:/srv:ro" % site,
                "-v", "%s:/var/lib/registry:ro" % (images / "registry"),
                "-v", "%s:/etc/baremetal-registry.yml:ro" % (images / "registry.yml"),
                "-v", "%s:/usr/local/bin/registry:ro" % registry_bin]
        for label in labels:
            argv += ["--label", label]
        argv += [NODE_IMAGE, "bash", "-c", SERVE_SCRIPT.format(http=HTTP_PORT, ip=ip)]
        podman(*argv)
    probe = "http://%s:%d/%s" % (ip, HTTP_PORT, next(iter(sorted(
        str(p.relative_to(site)) for p in site.glob("core:/stable:/*/deb/InRelease")))))
    for _attempt in range(30):
        ok = podman("exec", name, "sh", "-c", "curl -sf -o /dev/null '%s' && curl -sf -o /dev/null http://%s:%d/v2/"
                    % (probe, ip, REGISTRY_PORT), check=False).returncode == 0
        if ok:
            print("serving %s at http://%s:%d and %s at http://%s:%d from %s (%s)" % (
                site, ip, HTTP_PORT, images / "registry", ip, REGISTRY_PORT, name, state), flush=True)
            return 0
        time.sleep(1)
    logs = podman("logs", "--tail", "20", name, check=False)
    raise SystemExit("packages: %s does not serve %s and http://%s:%d/v2/ after 30 s\n%s%s" % (
        name, probe, ip, REGISTRY_PORT, logs.stdout, logs.stderr))


# --- smoke test --------------------------------------------------------------------------------------------------

# As roles/node/tasks/repository_Debian.yml and install.yml do it: the armoured key dearmoured under
# /etc/apt/keyrings, a deb822 source with Signed-By, the packages pinned.
SMOKE_INSTALL = """set -eu
mkdir -p -m 0755 /etc/apt/keyrings
curl -fsSL '%(repo)sRelease.key' -o /etc/apt/keyrings/kubernetes-apt-keyring.asc
cd /etc/apt/keyrings
gpg --batch --yes --dearmor -o kubernetes-apt-keyring.gpg kubernetes-apt-keyring.asc
printf 'Types: deb\\nURIs: %(repo)s\\nSuites: /\\nSigned-By: /etc/apt/keyrings/kubernetes-apt-keyring.gpg\\n' \
  > /etc/apt/sources.list.d/kubernetes.sources
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq kubeadm=%(full)s kubelet=%(full)s kubectl=%(full)s \
  cri-tools=%(crictl)s-%(rev)s >/dev/null
kubeadm version -o short
kubelet --version
kubectl version --client | head -n 1
crictl --version
ls /opt/cni/bin | tr '\\n' ' '; echo
dpkg-query -W -f='${Package} ${Version}\\n' kubeadm kubelet kubectl cri-tools kubernetes-cni
systemctl is-enabled kubelet
test -f /usr/lib/systemd/system/kubelet.service.d/10-kubeadm.conf
"""


# As roles/node/tasks/upgrade_Debian.yml moves kubeadm first: the source switched to the next minor.
SMOKE_UPGRADE = """set -eu
sed -i 's|/v%(minor)s/|/v%(next_minor)s/|' /etc/apt/sources.list.d/kubernetes.sources
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --allow-change-held-packages kubeadm=%(full)s >/dev/null
kubeadm version -o short
"""

# The release artefacts as roles/etcd and roles/node (containerd_release.yml) fetch them, checked against
# checksums.json; then containerd pulls through the registry as a registry.k8s.io mirror (hosts.toml).
SMOKE_RELEASES = """set -eu
base=http://%(ip)s:%(http)d
cd /tmp
curl -fsSO "$base/etcd-io/etcd/releases/download/v%(etcd)s/etcd-v%(etcd)s-linux-amd64.tar.gz"
echo "%(etcd_sum)s  etcd-v%(etcd)s-linux-amd64.tar.gz" | sha256sum -c --quiet
tar -xzf etcd-v%(etcd)s-linux-amd64.tar.gz
./etcd-v%(etcd)s-linux-amd64/etcd --version | head -n 1
curl -fsSO "$base/containerd/containerd/releases/download/v%(ctd)s/containerd-%(ctd)s-linux-amd64.tar.gz"
echo "%(ctd_sum)s  containerd-%(ctd)s-linux-amd64.tar.gz" | sha256sum -c --quiet
tar -C /usr/local -xzf containerd-%(ctd)s-linux-amd64.tar.gz
curl -fsS -o /usr/local/sbin/runc "$base/opencontainers/runc/releases/download/v%(runc)s/runc.amd64"
echo "%(runc_sum)s  /usr/local/sbin/runc" | sha256sum -c --quiet
chmod 0755 /usr/local/sbin/runc
runc --version | head -n 1
curl -fsS -o kube-flannel.yml "$base/%(manifest)s"
echo "%(manifest_sum)s  kube-flannel.yml" | sha256sum -c --quiet
for host in %(hosts)s; do
  mkdir -p "/etc/containerd/certs.d/$host"
  printf 'server = "https://%%s"\n\n[host."http://%(ip)s:%(reg)d"]\n  capabilities = ["pull", "resolve"]\n' "$host" \
    > "/etc/containerd/certs.d/$host/hosts.toml"
done
(containerd >/tmp/containerd.log 2>&1 &)
for _ in $(seq 1 40); do ctr version >/dev/null 2>&1 && break; sleep 0.5; done
ctr version | sed -n 2p
for image in %(images)s; do
  ctr -n k8s.io images pull --hosts-dir /etc/containerd/certs.d "$image" >/dev/null
done
ctr -n k8s.io images ls | awk '$1 ~ /^(%(hosts_re)s)\\// {print $1, $3}'
"""


def smoke():
    """Serve everything on a throwaway network, install the pinned packages in a node, list a registry tag."""
    versions = components.load_versions()
    version = versions["kubernetes"][0]
    minor = version.rsplit(".", 1)[0]
    crictl = versions["cri_tools"][minor]
    tag = "%d" % os.getpid()
    network, server, node = "bm-pkgsmoke-" + tag, "bm-pkgsmoke-srv-" + tag, "bm-pkgsmoke-node-" + tag
    started = time.monotonic()
    try:
        podman("network", "create", network)  # podman picks a free subnet
        subnet = podman("network", "inspect", "--format", "{{range .Subnets}}{{.Subnet}} {{end}}",
                        network).stdout.split()[0]
        ip = str(ipaddress.ip_network(subnet)[10])
        t0 = time.monotonic()
        serve(network, ip, server, ["baremetal.test=packages-smoke"])
        print("  serve: %.1f s" % (time.monotonic() - t0), flush=True)
        t0 = time.monotonic()
        podman("run", "-d", "--name", node, "--network", network, "--privileged", "--systemd=always",
               "--label", "baremetal.test=packages-smoke", NODE_IMAGE, "/sbin/init")
        repo = "http://%s:%d/core:/stable:/v%s/deb/" % (ip, HTTP_PORT, minor)
        full = "%s-%s" % (version, REVISION)
        script = SMOKE_INSTALL % {"repo": repo, "full": full, "crictl": crictl, "rev": REVISION}
        # Boot first: apt racing systemd's early mounts (/tmp) fails signature checks ("error executing apt-key").
        state = ""
        for _attempt in range(60):
            state = podman("exec", node, "systemctl", "is-system-running", check=False).stdout.strip()
            if state in ("running", "degraded"):
                break
            time.sleep(1)
        else:
            raise SystemExit("packages smoke: %s did not finish booting in 60 s (state %r)" % (node, state))
        out = podman("exec", node, "bash", "-c", script).stdout
        print("  node install: %.1f s\n    %s" % (time.monotonic() - t0, out.strip().replace("\n", "\n    ")),
              flush=True)
        if out.splitlines()[0].strip() != "v" + version:
            raise SystemExit("packages smoke: kubeadm version -o short says %r, want v%s" % (
                out.splitlines()[0], version))
        if len(versions["kubernetes"]) > 1:  # the upgrade path: the next minor's repository, same key
            t0 = time.monotonic()
            nxt = versions["kubernetes"][1]
            out = podman("exec", node, "bash", "-c", SMOKE_UPGRADE % {
                "minor": minor, "next_minor": nxt.rsplit(".", 1)[0], "full": "%s-%s" % (nxt, REVISION)}).stdout
            print("  upgrade kubeadm to the next minor: %.1f s\n    %s" % (
                time.monotonic() - t0, out.strip().replace("\n", "\n    ")), flush=True)
            if out.splitlines()[0].strip() != "v" + nxt:
                raise SystemExit("packages smoke: after the upgrade kubeadm says %r, want v%s" % (out, nxt))
        t0 = time.monotonic()
        site = output_dir("site")
        sums = json.loads((site / "checksums.json").read_text())
        digests = json.loads((output_dir("images") / "images.json").read_text())
        manifest = FLANNEL_MANIFEST.format(version=versions["flannel"])
        pulled = ["%s/pause:%s" % (REGISTRY_HOST, versions["pause"]),
                  "%s/kube-apiserver:v%s" % (REGISTRY_HOST, version),
                  *flannel_images(site / manifest, versions["flannel"])]
        hosts = (REGISTRY_HOST, GHCR_HOST)
        script = SMOKE_RELEASES % {
            "ip": ip, "http": HTTP_PORT, "reg": REGISTRY_PORT, "images": " ".join(pulled),
            "hosts": " ".join(hosts), "hosts_re": "|".join(h.replace(".", "\\.") for h in hosts),
            "manifest": manifest, "manifest_sum": sha256_file(flannel_manifest(versions["flannel"])),
            "etcd": versions["etcd"], "ctd": versions["containerd"], "runc": versions["runc"],
            "etcd_sum": sums["etcd_release_checksums"][versions["etcd"]][ARCH].split(":")[1],
            "ctd_sum": sums["node_containerd_release_checksums"][versions["containerd"]][ARCH].split(":")[1],
            "runc_sum": sums["node_runc_release_checksums"][versions["runc"]][ARCH].split(":")[1]}
        out = podman("exec", node, "bash", "-c", script).stdout
        print("  releases, flannel's manifest + containerd pulls through the mirrors: %.1f s\n    %s" % (
            time.monotonic() - t0, out.strip().replace("\n", "\n    ")), flush=True)
        for image in pulled:
            if "%s %s" % (image, digests[image]) not in out:
                raise SystemExit("packages smoke: containerd did not pull %s at %s" % (image, digests[image]))
        tags = podman("run", "--rm", "--network", network, NODE_IMAGE, "curl", "-sf",
                      "http://%s:%d/v2/kube-apiserver/tags/list" % (ip, REGISTRY_PORT)).stdout
        print("  registry: %s" % tags.strip(), flush=True)
        if "v" + version not in json.loads(tags).get("tags", []):
            raise SystemExit("packages smoke: the registry does not list kube-apiserver v%s" % version)
        # The registry is read-only: a push must be refused.
        pushed = podman("run", "--rm", "--network", network, NODE_IMAGE, "curl", "-s", "-o", "/dev/null", "-w",
                        "%{http_code}", "-X", "POST", "http://%s:%d/v2/kube-apiserver/blobs/uploads/" % (
                            ip, REGISTRY_PORT)).stdout
        print("  registry upload attempt answered HTTP %s (read-only)" % pushed, flush=True)
        if pushed.startswith("2"):
            raise SystemExit("packages smoke: the served registry accepted an upload")
        print("smoke passed in %.1f s" % (time.monotonic() - started), flush=True)
        return 0
    finally:
        for container in (node, server):
            podman("rm", "-f", "-t", "2", container, check=False)
        podman("network", "rm", "-f", network, check=False)


def prune():
    """Remove outputs this checkout's recipe no longer names, unless a container (running or not) mounts them."""
    current = {output_dir(what).name for what in ORDER}
    listing = podman("ps", "-a", "--format", "{{range .Mounts}}{{.Source}} {{end}}").stdout.split()
    for old in sorted(OUT.iterdir()) if OUT.is_dir() else []:
        if old.name.startswith(".") or old.name in current or not old.is_dir():
            continue
        if any(src == str(old) or src.startswith(str(old) + "/") for src in listing):
            print("  kept    %s (mounted by a container)" % old, flush=True)
            continue
        shutil.rmtree(old)
        print("  removed %s" % old, flush=True)
    return 0


# --- CLI ---------------------------------------------------------------------------------------------------------

ORDER = ["apt", "etcd", "containerd", "manifests", "site", "images"]


def main(argv):
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__)
        return 0
    cmd, args = argv[0], argv[1:]
    if cmd == "path":
        if len(args) != 1 or args[0] not in OUTPUTS:
            raise SystemExit("usage: packages.py path {%s}" % ",".join(ORDER))
        target = output_dir(args[0])
        if not (target / "build.json").exists():
            raise SystemExit("packages: %s is not built (packages.py build %s)" % (target, args[0]))
        print(target)
        return 0
    if cmd == "list":
        for what in ORDER:
            try:
                target = output_dir(what)
            except SystemExit as exc:
                print("%-10s absent %s" % (what, exc))
                continue
            print("%-10s %s %s" % (what, "built " if (target / "build.json").exists() else "absent", target))
        return 0
    if cmd == "build":
        names = args or ORDER
        unknown = sorted(set(names) - set(OUTPUTS))
        if unknown:
            raise SystemExit("packages: unknown output(s) %s (known: %s)" % (", ".join(unknown), ", ".join(ORDER)))
        total = time.monotonic()
        print("== packages (cache %s)" % OUT, flush=True)
        for what in names:
            target, seconds = build_output(what)
            print("  %-10s %s %s" % (what, "cached" if seconds is None else "built in %.0f s" % seconds, target),
                  flush=True)
        print("== packages ready in %.0f s" % (time.monotonic() - total), flush=True)
        return 0
    if cmd == "serve":
        if len(args) < 3:
            raise SystemExit("usage: packages.py serve NETWORK IP NAME [LABEL=VALUE ...]")
        return serve(args[0], args[1], args[2], args[3:])
    if cmd == "smoke":
        return smoke()
    if cmd == "prune":
        return prune()
    raise SystemExit("packages: unknown command %r (build, path, list, serve, smoke, prune)" % cmd)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
