"""Build the real Kubernetes, etcd, containerd and friends from the Go module proxy (test harness only).

    components.py build [NAME ...]   build what is missing (all by default), one line per component
    components.py path NAME [VERSION] print the directory of a built component (bin/ inside it)
    components.py list               every component, version and whether it is built

Versions come from tests/harness/components.yml, the one file that pins them. Each build goes to
``$BAREMETAL_CACHE/components/<name>-<version>-<recipe hash>/`` (default cache: /var/cache/baremetal-kubernetes),
outside the work tree, so every clone on the machine reuses it. The hash covers what decides the bytes:
the module and version, the packages, build flags and environment, and the Go version. A build goes to a
temporary directory first and is renamed into place when it succeeded; a lock per component lets two
clones build at once. ``build.json`` in each directory records how long the build took.

Nothing here is shipped: roles install whatever packages, tarballs and images they are pointed at. This
only makes real ones available on machines that reach no release server.
"""

import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
VERSIONS_FILE = HERE / "components.yml"
CACHE = Path(os.environ.get("BAREMETAL_CACHE", "/var/cache/baremetal-kubernetes"))
# Upstream release builds stamp a build date; a fixed one keeps our builds reproducible.
BUILD_DATE = "2026-01-01T00:00:00Z"


def load_versions():
    import yaml  # the venv's PyYAML (make venv); imported here so `--help` works without it

    return yaml.safe_load(VERSIONS_FILE.read_text())


def go_version():
    return subprocess.run(["go", "env", "GOVERSION"], check=True, capture_output=True, text=True).stdout.strip()


def k8s_ldflags(version):
    """-X flags that make every Kubernetes binary report its real version (upstream: hack/lib/version.sh)."""
    major, minor = version.split(".")[:2]
    flags = []
    for pkg in ("k8s.io/component-base/version", "k8s.io/client-go/pkg/version"):
        flags += ["-X %s.%s=%s" % (pkg, key, value) for key, value in (
            ("gitVersion", "v" + version), ("gitMajor", major), ("gitMinor", minor),
            ("gitTreeState", "clean"), ("buildDate", BUILD_DATE))]
    return flags


def recipes(versions):
    """Every component: name -> list of recipes (one per version)."""
    out = {}
    out["kubernetes"] = [{
        "version": v,
        "require": {"k8s.io/kubernetes": "v" + v},
        # k8s.io/kubernetes requires its staging modules at v0.0.0 and replaces them with local paths;
        # the wrapper replaces each with its published v0.<minor>.<patch> instead.
        "staging_replace": "v0." + v.split(".", 1)[1],
        "packages": ["k8s.io/kubernetes/cmd/" + c for c in (
            "kubeadm", "kubelet", "kubectl", "kube-apiserver", "kube-controller-manager", "kube-scheduler",
            "kube-proxy")],
        # Upstream links all but the kubelet statically with CGO_ENABLED=0; a static kubelet behaves the
        # same on our nodes (no cgo-only code path is used by it on Linux).
        "env": {"CGO_ENABLED": "0"},
        "ldflags": ["-s", "-w", *k8s_ldflags(v)],
    } for v in versions["kubernetes"]]
    out["etcd"] = [{
        "version": etcd,
        "require": {"go.etcd.io/etcd/server/v3": "v" + etcd, "go.etcd.io/etcd/etcdctl/v3": "v" + etcd,
                    "go.etcd.io/etcd/etcdutl/v3": "v" + etcd},
        "packages": ["go.etcd.io/etcd/server/v3", "go.etcd.io/etcd/etcdctl/v3", "go.etcd.io/etcd/etcdutl/v3"],
        "rename": {"server": "etcd"},
        "env": {"CGO_ENABLED": "0"},
        "ldflags": ["-s", "-w", "-X go.etcd.io/etcd/api/v3/version.GitSHA=v" + etcd],
    } for etcd in (versions["etcd"], versions["etcd_previous_minor"])]
    ctd = versions["containerd"]
    out["containerd"] = [{
        "version": ctd,
        "require": {"github.com/containerd/containerd/v2": "v" + ctd},
        "packages": ["github.com/containerd/containerd/v2/cmd/" + c for c in
                     ("containerd", "containerd-shim-runc-v2", "ctr")],
        # The release's static build: no btrfs or devmapper snapshotters (they need C libraries).
        "tags": ["no_btrfs", "no_devmapper", "no_zfs"],
        "env": {"CGO_ENABLED": "0"},
        "ldflags": ["-s", "-w", "-X github.com/containerd/containerd/v2/version.Version=v" + ctd,
                    "-X github.com/containerd/containerd/v2/version.Revision=v" + ctd,
                    "-X github.com/containerd/containerd/v2/version.Package=github.com/containerd/containerd/v2"],
    }]
    runc = versions["runc"]
    out["runc"] = [{
        "version": runc,
        "require": {"github.com/opencontainers/runc": "v" + runc},
        "packages": ["github.com/opencontainers/runc"],
        # runc's nsenter is C (cgo); seccomp support links libseccomp statically, as the release does.
        "tags": ["seccomp", "netgo", "osusergo"],
        "env": {"CGO_ENABLED": "1"},
        "ldflags": ["-s", "-w", "-X main.version=" + runc, "-X main.gitCommit=v" + runc,
                    "-linkmode external", "-extldflags -static-pie"],
        "buildmode": "pie",
    }]
    out["cri-tools"] = [{
        "version": v,
        "require": {"sigs.k8s.io/cri-tools": "v" + v},
        "packages": ["sigs.k8s.io/cri-tools/cmd/crictl"],
        "env": {"CGO_ENABLED": "0"},
        "ldflags": ["-s", "-w", "-X sigs.k8s.io/cri-tools/pkg/version.Version=v" + v],
    } for v in sorted(set(versions["cri_tools"].values()))]
    cni = versions["cni_plugins"]
    out["cni-plugins"] = [{
        "version": cni,
        "require": {"github.com/containernetworking/plugins": "v" + cni},
        # What the kubernetes-cni package ships and a bridge pod network uses.
        "packages": ["github.com/containernetworking/plugins/plugins/" + p for p in (
            "main/bridge", "main/loopback", "main/host-device", "main/ptp", "main/vlan", "main/macvlan",
            "main/ipvlan", "ipam/host-local", "ipam/static", "ipam/dhcp", "meta/portmap", "meta/bandwidth",
            "meta/firewall", "meta/tuning", "meta/sbr", "meta/vrf")],
        "env": {"CGO_ENABLED": "0"},
        "ldflags": ["-s", "-w",
                    "-X github.com/containernetworking/plugins/pkg/utils/buildversion.BuildVersion=v" + cni],
    }]
    out["coredns"] = [{
        "version": v,
        "require": {"github.com/coredns/coredns": "v" + v},
        "packages": ["github.com/coredns/coredns"],
        "env": {"CGO_ENABLED": "0"},
        "ldflags": ["-s", "-w", "-X github.com/coredns/coredns/coremain.GitCommit=v" + v],
    } for v in sorted(set(versions["coredns"].values()))]
    flannel = versions["flannel"]
    out["flannel"] = [{
        "version": flannel,
        "require": {"github.com/flannel-io/flannel": "v" + flannel},
        # flanneld as upstream's Makefile builds it for amd64 (dist/flanneld): cgo on for the UDP backend,
        # linked statically, the version stamped.
        "packages": ["github.com/flannel-io/flannel"],
        "env": {"CGO_ENABLED": "1"},
        # Upstream links against musl; with glibc, Go's own resolver and user lookups keep the static binary
        # free of glibc's NSS (as runc's netgo,osusergo).
        "tags": ["netgo", "osusergo"],
        "ldflags": ["-s", "-w", "-X github.com/flannel-io/flannel/pkg/version.Version=v" + flannel,
                    "-extldflags -static"],
        # The Tencent Cloud VPC backend's SDK module at the version flannel requires (v1.3.208) is withheld by
        # the module proxy we reach (403 on its zip); the backend compiles against v1.1.0, which is served. Only
        # that backend uses it (Backend "tencent-vpc"); vxlan and host-gw do not.
        "replace": {"github.com/tencentcloud/tencentcloud-sdk-go/tencentcloud/vpc": "v1.1.0"},
        # install-conf (the manifest's install-cni init container) as images/Dockerfile builds it: its own
        # `go build`, cgo off, no flags.
        "more": [{"packages": ["github.com/flannel-io/flannel/cmd/install_conf"], "env": {"CGO_ENABLED": "0"},
                  "ldflags": []}],
        "rename": {"flannel": "flanneld", "install_conf": "install-conf"},
    }]
    # flannel-io/cni-plugin is not on the Go module proxy: the flannel meta plugin it was forked from, at the last
    # containernetworking/plugins release that has it, stands in for the flannel-cni-plugin image's binary.
    fcni = versions["flannel_cni_plugin"]
    out["flannel-cni-plugin"] = [{
        "version": fcni,
        "require": {"github.com/containernetworking/plugins": "v" + fcni},
        "packages": ["github.com/containernetworking/plugins/plugins/meta/flannel"],
        "env": {"CGO_ENABLED": "0"},
        "ldflags": ["-s", "-w",
                    "-X github.com/containernetworking/plugins/pkg/utils/buildversion.BuildVersion=v" + fcni],
    }]
    reg = versions["registry"]
    out["registry"] = [{
        "version": reg,
        "require": {"github.com/distribution/distribution/v3": "v" + reg},
        "packages": ["github.com/distribution/distribution/v3/cmd/registry"],
        "env": {"CGO_ENABLED": "0"},
        "ldflags": ["-s", "-w", "-X github.com/distribution/distribution/v3/version.version=v" + reg],
    }]
    return out


def recipe_hash(recipe, gover):
    data = json.dumps({"recipe": recipe, "go": gover}, sort_keys=True).encode()
    return hashlib.sha256(data).hexdigest()[:12]


def target_dir(name, recipe, gover):
    return CACHE / "components" / ("%s-%s-%s" % (name, recipe["version"], recipe_hash(recipe, gover)))


def run(argv, cwd, env):
    proc = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise SystemExit("components: `%s` failed in %s (exit %d):\n%s%s" % (
            " ".join(argv), cwd, proc.returncode, proc.stdout[-4000:], proc.stderr[-4000:]))
    return proc.stdout


def go_env(recipe):
    env = dict(os.environ)
    # Never switch to another toolchain behind our back; the one installed is the one recorded.
    env.update({"GOTOOLCHAIN": "local", "GOFLAGS": "-buildvcs=false -mod=mod", "GOWORK": "off"})
    env.update(recipe.get("env", {}))
    return env


def write_wrapper(work, recipe, env):
    """A throwaway main module that requires the component at its pinned version."""
    lines = ["module example.invalid/baremetal-build", "", "go 1.26.0", "", "require ("]
    lines += ["\t%s %s" % (mod, ver) for mod, ver in sorted(recipe["require"].items())]
    lines.append(")")
    (work / "go.mod").write_text("\n".join(lines) + "\n")
    if recipe.get("replace"):
        with open(work / "go.mod", "a") as fh:
            fh.write("\nreplace (\n")
            fh.writelines("\t%s => %s %s\n" % (m, m, v) for m, v in sorted(recipe["replace"].items()))
            fh.write(")\n")
    if "staging_replace" in recipe:
        (mod, ver), = recipe["require"].items()
        info = json.loads(run(["go", "mod", "download", "-json", "%s@%s" % (mod, ver)], work, env))
        staging = []
        for line in Path(info["GoMod"]).read_text().splitlines():
            parts = line.split()
            if len(parts) >= 3 and parts[1] == "=>" and parts[2].startswith("./staging/"):
                staging.append(parts[0])
        if not staging:
            raise SystemExit("components: %s@%s lists no staging modules in its go.mod" % (mod, ver))
        with open(work / "go.mod", "a") as fh:
            fh.write("\nreplace (\n")
            fh.writelines("\t%s => %s %s\n" % (s, s, recipe["staging_replace"]) for s in sorted(staging))
            fh.write(")\n")
    imports = "".join('\t_ "%s"\n' % p for build in builds(recipe) for p in build["packages"])
    (work / "tools.go").write_text("//go:build tools\n\npackage tools\n\nimport (\n%s)\n" % imports)
    run(["go", "mod", "tidy"], work, env)


def builds(recipe):
    """The `go build` runs of a recipe: its own packages, then each entry of "more" (packages built with their own
    env, ldflags and tags, as upstream builds some binaries of one module differently)."""
    return [recipe, *recipe.get("more", [])]


def go_build(work, bin_dir, build, env):
    argv = ["go", "build", "-trimpath", "-o", str(bin_dir) + "/"]
    if build.get("tags"):
        argv += ["-tags", ",".join(build["tags"])]
    if build.get("buildmode"):
        argv += ["-buildmode", build["buildmode"]]
    argv += ["-ldflags", " ".join(build["ldflags"])] + build["packages"]
    run(argv, work, dict(env, **build.get("env", {})))


def build_one(name, recipe, gover):
    target = target_dir(name, recipe, gover)
    if (target / "build.json").exists():
        return target, None
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.parent / (".%s.lock" % name), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (target / "build.json").exists():  # another clone built it while we waited
            return target, None
        started = time.monotonic()
        env = go_env(recipe)
        with tempfile.TemporaryDirectory(prefix=".%s-" % name, dir=target.parent) as tmp:
            tmp = Path(tmp)
            work, out = tmp / "src", tmp / "out"
            (out / "bin").mkdir(parents=True)
            work.mkdir()
            write_wrapper(work, recipe, env)
            for build in builds(recipe):
                go_build(work, out / "bin", build, env)
            for old, new in recipe.get("rename", {}).items():
                (out / "bin" / old).rename(out / "bin" / new)
            shutil.copy(work / "go.mod", out / "go.mod")
            shutil.copy(work / "go.sum", out / "go.sum")
            seconds = round(time.monotonic() - started, 1)
            (out / "build.json").write_text(json.dumps(
                {"name": name, "recipe": recipe, "go": gover, "seconds": seconds}, indent=2, sort_keys=True) + "\n")
            out.rename(target)
        return target, seconds


def find(name, version=None):
    versions = load_versions()
    gover = go_version()
    all_recipes = recipes(versions)
    if name not in all_recipes:
        raise SystemExit("components: unknown component %r (known: %s)" % (name, ", ".join(sorted(all_recipes))))
    # A component listed with one version in components.yml (etcd) and built at others too: that one, by default.
    if version is None and isinstance(versions.get(name), str):
        version = versions[name]
    matches = [r for r in all_recipes[name] if version in (None, r["version"])]
    if len(matches) != 1:
        raise SystemExit("components: %s has versions %s; name one" % (
            name, ", ".join(r["version"] for r in all_recipes[name])))
    return target_dir(name, matches[0], gover)


def main(argv):
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__)
        return 0
    cmd, args = argv[0], argv[1:]
    if cmd == "path":
        target = find(*args[:2])
        if not (target / "build.json").exists():
            raise SystemExit("components: %s is not built (make components)" % target)
        print(target)
        return 0
    versions = load_versions()
    gover = go_version()
    all_recipes = recipes(versions)
    if cmd == "list":
        for name, items in all_recipes.items():
            for recipe in items:
                target = target_dir(name, recipe, gover)
                print("%-12s %-8s %s %s" % (name, recipe["version"],
                                            "built " if (target / "build.json").exists() else "absent", target))
        return 0
    if cmd == "build":
        names = args or list(all_recipes)
        unknown = sorted(set(names) - set(all_recipes))
        if unknown:
            raise SystemExit("components: unknown component(s) %s" % ", ".join(unknown))
        total = time.monotonic()
        print("== components (%s, cache %s)" % (gover, CACHE / "components"), flush=True)
        for name in names:
            for recipe in all_recipes[name]:
                target, seconds = build_one(name, recipe, gover)
                print("  %-12s %-8s %s" % (name, recipe["version"], "cached" if seconds is None else
                                           "built in %.0f s" % seconds), flush=True)
        print("== components ready in %.0f s" % (time.monotonic() - total), flush=True)
        return 0
    raise SystemExit("components: unknown command %r (build, path, list)" % cmd)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
