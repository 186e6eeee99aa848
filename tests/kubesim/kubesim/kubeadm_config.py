# Copyright: baremetal.kubernetes contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Strict validation of kubeadm config files, the way `kubeadm init/join --config` decodes them.

Sources:
- kubeadm.k8s.io/v1beta4: https://kubernetes.io/docs/reference/config-api/kubeadm-config.v1beta4/
  (transcribed field by field; plus externalEtcd.httpEndpoints added in v1.35 per the same page's changelog).
- kubeadm.k8s.io/v1beta3: https://kubernetes.io/docs/reference/config-api/kubeadm-config.v1beta3/, i.e.
  v1beta4 minus the changes listed under "A list of changes since v1beta3" (map-form extraArgs,
  no extraEnvs/timeouts/dryRun/encryptionAlgorithm/validity periods/dns.disabled/proxy/imagePullSerial,
  plus v1beta3's apiServer.timeoutForControlPlane and discovery.timeout).
- kubelet.config.k8s.io/v1beta1 KubeletConfiguration: https://kubernetes.io/docs/reference/config-api/kubelet-config.v1beta1/
- kubeproxy.config.k8s.io/v1alpha1 KubeProxyConfiguration:
  https://kubernetes.io/docs/reference/config-api/kube-proxy-config.v1alpha1/
Like kubeadm (sigs.k8s.io/yaml strict decoding), an unknown or duplicate field, or a value of the wrong
JSON type, is an error naming the GroupVersionKind and the field.
"""

from __future__ import annotations

import copy
import ipaddress
import re

import yaml

STR, BOOL, INT, DURATION, TIME, ANY = "string", "bool", "int", "duration", "time", "any"


def lst(item):
    return ("list", item)


def dct(item):
    return ("map", item)


DURATION_RE = re.compile(r"^-?((\d+(\.\d+)?)(ns|us|µs|ms|s|m|h))+$|^0$")

# --- kubeadm.k8s.io/v1beta4 ------------------------------------------------------------------------
ARG = {"name": STR, "value": STR}
ENV_VAR = {"name": STR, "value": STR, "valueFrom": ANY}
HOST_PATH_MOUNT = {"name": STR, "hostPath": STR, "mountPath": STR, "readOnly": BOOL, "pathType": STR}
TAINT = {"key": STR, "value": STR, "effect": STR, "timeAdded": TIME}
IMAGE_META = {"imageRepository": STR, "imageTag": STR}
CONTROL_PLANE_COMPONENT = {"extraArgs": lst(ARG), "extraVolumes": lst(HOST_PATH_MOUNT), "extraEnvs": lst(ENV_VAR)}
API_SERVER = dict(CONTROL_PLANE_COMPONENT, certSANs=lst(STR))
LOCAL_ETCD = dict(IMAGE_META, dataDir=STR, extraArgs=lst(ARG), extraEnvs=lst(ENV_VAR), serverCertSANs=lst(STR),
                  peerCertSANs=lst(STR))
EXTERNAL_ETCD = {"endpoints": lst(STR), "httpEndpoints": lst(STR), "caFile": STR, "certFile": STR, "keyFile": STR}
ETCD = {"local": LOCAL_ETCD, "external": EXTERNAL_ETCD}
NETWORKING = {"serviceSubnet": STR, "podSubnet": STR, "dnsDomain": STR}
DNS = dict(IMAGE_META, disabled=BOOL)
PROXY = {"disabled": BOOL}
API_ENDPOINT = {"advertiseAddress": STR, "bindPort": INT}
NODE_REGISTRATION = {"name": STR, "criSocket": STR, "taints": lst(TAINT), "kubeletExtraArgs": lst(ARG),
                     "ignorePreflightErrors": lst(STR), "imagePullPolicy": STR, "imagePullSerial": BOOL}
BOOTSTRAP_TOKEN = {"token": STR, "description": STR, "ttl": DURATION, "expires": TIME, "usages": lst(STR),
                   "groups": lst(STR)}
PATCHES = {"directory": STR}
TIMEOUTS = {"controlPlaneComponentHealthCheck": DURATION, "kubeletHealthCheck": DURATION,
            "kubernetesAPICall": DURATION, "etcdAPICall": DURATION, "tlsBootstrap": DURATION, "discovery": DURATION,
            "upgradeManifests": DURATION}
BOOTSTRAP_TOKEN_DISCOVERY = {"token": STR, "apiServerEndpoint": STR, "caCertHashes": lst(STR),
                             "unsafeSkipCAVerification": BOOL}
DISCOVERY = {"bootstrapToken": BOOTSTRAP_TOKEN_DISCOVERY, "file": {"kubeConfigPath": STR}, "tlsBootstrapToken": STR}
JOIN_CONTROL_PLANE = {"localAPIEndpoint": API_ENDPOINT, "certificateKey": STR}
TYPE_META = {"apiVersion": STR, "kind": STR}

V1BETA4 = {
    "ClusterConfiguration": dict(
        TYPE_META, etcd=ETCD, networking=NETWORKING, kubernetesVersion=STR, controlPlaneEndpoint=STR,
        apiServer=API_SERVER, controllerManager=CONTROL_PLANE_COMPONENT, scheduler=CONTROL_PLANE_COMPONENT, dns=DNS,
        proxy=PROXY, certificatesDir=STR, imageRepository=STR, featureGates=dct(BOOL), clusterName=STR,
        encryptionAlgorithm=STR, certificateValidityPeriod=DURATION, caCertificateValidityPeriod=DURATION),
    "InitConfiguration": dict(
        TYPE_META, bootstrapTokens=lst(BOOTSTRAP_TOKEN), dryRun=BOOL, nodeRegistration=NODE_REGISTRATION,
        localAPIEndpoint=API_ENDPOINT, certificateKey=STR, skipPhases=lst(STR), patches=PATCHES, timeouts=TIMEOUTS),
    "JoinConfiguration": dict(
        TYPE_META, dryRun=BOOL, nodeRegistration=NODE_REGISTRATION, caCertPath=STR, discovery=DISCOVERY,
        controlPlane=JOIN_CONTROL_PLANE, skipPhases=lst(STR), patches=PATCHES, timeouts=TIMEOUTS),
    "ResetConfiguration": dict(
        TYPE_META, cleanupTmpDir=BOOL, certificatesDir=STR, criSocket=STR, dryRun=BOOL, force=BOOL,
        ignorePreflightErrors=lst(STR), skipPhases=lst(STR), unmountFlags=lst(STR), timeouts=TIMEOUTS),
    "UpgradeConfiguration": dict(
        TYPE_META,
        apply={"kubernetesVersion": STR, "allowExperimentalUpgrades": BOOL, "allowRCUpgrades": BOOL,
               "certificateRenewal": BOOL, "dryRun": BOOL, "etcdUpgrade": BOOL, "forceUpgrade": BOOL,
               "ignorePreflightErrors": lst(STR), "patches": PATCHES, "printConfig": BOOL, "skipPhases": lst(STR),
               "imagePullPolicy": STR, "imagePullSerial": BOOL},
        diff={"kubernetesVersion": STR, "contextLines": INT},
        node={"certificateRenewal": BOOL, "dryRun": BOOL, "etcdUpgrade": BOOL, "ignorePreflightErrors": lst(STR),
              "skipPhases": lst(STR), "patches": PATCHES, "imagePullPolicy": STR, "imagePullSerial": BOOL},
        plan={"kubernetesVersion": STR, "allowExperimentalUpgrades": BOOL, "allowRCUpgrades": BOOL, "dryRun": BOOL,
              "ignorePreflightErrors": lst(STR), "printConfig": BOOL, "etcdUpgrade": BOOL},
        timeouts=TIMEOUTS),
}


def _v1beta3():
    """v1beta4 minus its documented changes since v1beta3."""
    schema = copy.deepcopy(V1BETA4)
    component = {"extraArgs": dct(STR), "extraVolumes": lst(HOST_PATH_MOUNT)}
    cluster = schema["ClusterConfiguration"]
    for dropped in ("proxy", "encryptionAlgorithm", "certificateValidityPeriod", "caCertificateValidityPeriod"):
        cluster.pop(dropped)
    cluster["apiServer"] = dict(component, certSANs=lst(STR), timeoutForControlPlane=DURATION)
    cluster["controllerManager"] = dict(component)
    cluster["scheduler"] = dict(component)
    cluster["dns"] = dict(IMAGE_META)
    cluster["etcd"] = {"local": dict(IMAGE_META, dataDir=STR, extraArgs=dct(STR), serverCertSANs=lst(STR),
                                     peerCertSANs=lst(STR)),
                       "external": {"endpoints": lst(STR), "caFile": STR, "certFile": STR, "keyFile": STR}}
    registration = {"name": STR, "criSocket": STR, "taints": lst(TAINT), "kubeletExtraArgs": dct(STR),
                    "ignorePreflightErrors": lst(STR), "imagePullPolicy": STR}
    init = schema["InitConfiguration"]
    for dropped in ("dryRun", "timeouts"):
        init.pop(dropped)
    init["nodeRegistration"] = registration
    join = schema["JoinConfiguration"]
    for dropped in ("dryRun", "timeouts"):
        join.pop(dropped)
    join["nodeRegistration"] = registration
    join["discovery"] = dict(DISCOVERY, timeout=DURATION)
    schema.pop("ResetConfiguration")
    schema.pop("UpgradeConfiguration")
    return schema


V1BETA3 = _v1beta3()

# --- kubelet.config.k8s.io/v1beta1 -----------------------------------------------------------------
KUBELET = dict(
    TYPE_META,
    enableServer=BOOL, staticPodPath=STR, podLogsDir=STR, syncFrequency=DURATION, fileCheckFrequency=DURATION,
    httpCheckFrequency=DURATION, staticPodURL=STR, staticPodURLHeader=dct(lst(STR)), address=STR, port=INT,
    readOnlyPort=INT, tlsCertFile=STR, tlsPrivateKeyFile=STR, tlsCipherSuites=lst(STR), tlsMinVersion=STR,
    rotateCertificates=BOOL, serverTLSBootstrap=BOOL,
    authentication={"x509": {"clientCAFile": STR},
                    "webhook": {"enabled": BOOL, "cacheTTL": DURATION},
                    "anonymous": {"enabled": BOOL}},
    authorization={"mode": STR, "webhook": {"cacheAuthorizedTTL": DURATION, "cacheUnauthorizedTTL": DURATION}},
    registryPullQPS=INT, registryBurst=INT, imagePullCredentialsVerificationPolicy=STR,
    preloadedImagesVerificationAllowlist=lst(STR), eventRecordQPS=INT, eventBurst=INT, enableDebuggingHandlers=BOOL,
    enableContentionProfiling=BOOL, healthzPort=INT, healthzBindAddress=STR, oomScoreAdj=INT, clusterDomain=STR,
    clusterDNS=lst(STR), streamingConnectionIdleTimeout=DURATION, nodeStatusUpdateFrequency=DURATION,
    nodeStatusReportFrequency=DURATION, nodeLeaseDurationSeconds=INT, imageMinimumGCAge=DURATION,
    imageMaximumGCAge=DURATION, imageGCHighThresholdPercent=INT, imageGCLowThresholdPercent=INT,
    volumeStatsAggPeriod=DURATION, kubeletCgroups=STR, systemCgroups=STR, cgroupRoot=STR, cgroupsPerQOS=BOOL,
    cgroupDriver=STR, cpuManagerPolicy=STR, singleProcessOOMKill=BOOL, cpuManagerPolicyOptions=dct(STR),
    cpuManagerReconcilePeriod=DURATION, memoryManagerPolicy=STR, topologyManagerPolicy=STR,
    topologyManagerScope=STR, topologyManagerPolicyOptions=dct(STR), qosReserved=dct(STR),
    runtimeRequestTimeout=DURATION, hairpinMode=STR, maxPods=INT, podCIDR=STR, podPidsLimit=INT, resolvConf=STR,
    runOnce=BOOL, cpuCFSQuota=BOOL, cpuCFSQuotaPeriod=DURATION, nodeStatusMaxImages=INT, maxOpenFiles=INT,
    contentType=STR, kubeAPIQPS=INT, kubeAPIBurst=INT, serializeImagePulls=BOOL, maxParallelImagePulls=INT,
    evictionHard=dct(STR), evictionSoft=dct(STR), evictionSoftGracePeriod=dct(STR),
    evictionPressureTransitionPeriod=DURATION, evictionMaxPodGracePeriod=INT, evictionMinimumReclaim=dct(STR),
    mergeDefaultEvictionSettings=BOOL, podsPerCore=INT, enableControllerAttachDetach=BOOL, protectKernelDefaults=BOOL,
    makeIPTablesUtilChains=BOOL, iptablesMasqueradeBit=INT, iptablesDropBit=INT, featureGates=dct(BOOL),
    failSwapOn=BOOL, memorySwap={"swapBehavior": STR}, containerLogMaxSize=STR, containerLogMaxFiles=INT,
    containerLogMaxWorkers=INT, containerLogMonitorInterval=DURATION, configMapAndSecretChangeDetectionStrategy=STR,
    systemReserved=dct(STR), kubeReserved=dct(STR), reservedSystemCPUs=STR, showHiddenMetricsForVersion=STR,
    systemReservedCgroup=STR, kubeReservedCgroup=STR, enforceNodeAllocatable=lst(STR), allowedUnsafeSysctls=lst(STR),
    volumePluginDir=STR, providerID=STR, kernelMemcgNotification=BOOL, logging=ANY, enableSystemLogHandler=BOOL,
    enableSystemLogQuery=BOOL, shutdownGracePeriod=DURATION, shutdownGracePeriodCriticalPods=DURATION,
    shutdownGracePeriodByPodPriority=lst({"priority": INT, "shutdownGracePeriodSeconds": INT}),
    crashLoopBackOff={"maxContainerRestartPeriod": DURATION}, reservedMemory=lst({"numaNode": INT, "limits": dct(STR)}),
    enableProfilingHandler=BOOL, enableDebugFlagsHandler=BOOL, seccompDefault=BOOL, memoryThrottlingFactor=ANY,
    registerWithTaints=lst(TAINT), registerNode=BOOL, tracing=ANY, localStorageCapacityIsolation=BOOL,
    containerRuntimeEndpoint=STR, imageServiceEndpoint=STR, failCgroupV1=BOOL, userNamespaces={"idsPerPod": INT},
)

# --- kubeproxy.config.k8s.io/v1alpha1 --------------------------------------------------------------
CONNECTION = {"acceptContentTypes": STR, "contentType": STR, "qps": ANY, "burst": INT, "kubeconfig": STR}
KUBE_PROXY = dict(
    TYPE_META,
    featureGates=dct(BOOL), clientConnection=CONNECTION, hostnameOverride=STR, bindAddress=STR,
    healthzBindAddress=STR, metricsBindAddress=STR, bindAddressHardFail=BOOL, enableProfiling=BOOL,
    showHiddenMetricsForVersion=STR, mode=STR,
    iptables={"masqueradeBit": INT, "masqueradeAll": BOOL, "localhostNodePorts": BOOL, "syncPeriod": DURATION,
              "minSyncPeriod": DURATION},
    ipvs={"syncPeriod": DURATION, "minSyncPeriod": DURATION, "scheduler": STR, "excludeCIDRs": lst(STR),
          "strictARP": BOOL, "tcpTimeout": DURATION, "tcpFinTimeout": DURATION, "udpTimeout": DURATION},
    nftables={"masqueradeBit": INT, "masqueradeAll": BOOL, "syncPeriod": DURATION, "minSyncPeriod": DURATION},
    winkernel=ANY, detectLocalMode=STR,
    detectLocal={"bridgeInterface": STR, "clusterCIDRs": lst(STR), "interfaceNamePrefix": STR},
    clusterCIDR=STR, nodePortAddresses=lst(STR), oomScoreAdj=INT,
    conntrack={"maxPerCore": INT, "min": INT, "tcpEstablishedTimeout": DURATION, "tcpCloseWaitTimeout": DURATION,
               "tcpBeLiberal": BOOL, "udpTimeout": DURATION, "udpStreamTimeout": DURATION},
    configSyncPeriod=DURATION, portRange=STR, windowsRunAsService=BOOL, logging=ANY,
)

SCHEMAS = {("kubeadm.k8s.io/v1beta4", k): v for k, v in V1BETA4.items()}
SCHEMAS.update({("kubeadm.k8s.io/v1beta3", k): v for k, v in V1BETA3.items()})
SCHEMAS[("kubelet.config.k8s.io/v1beta1", "KubeletConfiguration")] = KUBELET
SCHEMAS[("kubeproxy.config.k8s.io/v1alpha1", "KubeProxyConfiguration")] = KUBE_PROXY

TOKEN_RE = re.compile(r"^[a-z0-9]{6}\.[a-z0-9]{16}$")
VERSION_RE = re.compile(r"^v?(\d+)\.(\d+)\.(\d+)$")


class ConfigError(ValueError):
    """What kubeadm prints before exiting 1."""


def _gvk(api_version, kind):
    group, _dummy, version = api_version.rpartition("/")
    return 'schema.GroupVersionKind{Group:"%s", Version:"%s", Kind:"%s"}' % (group, version, kind)


def _type_name(value):
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return "null"


def _check(value, schema, path, errors):
    if value is None:
        return  # null decodes to the zero value
    if schema == ANY:
        return
    expected = None
    if schema in (STR, DURATION, TIME):
        if not isinstance(value, str):
            expected = "string"
        elif schema == DURATION and not DURATION_RE.match(value):
            errors.append('%s: invalid duration "%s"' % (path, value))
        elif schema == TIME and not re.match(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$",
                                             value):
            errors.append('%s: parsing time "%s" as RFC3339 failed' % (path, value))
    elif schema == BOOL:
        if not isinstance(value, bool):
            expected = "bool"
    elif schema == INT:
        if isinstance(value, bool) or not isinstance(value, int):
            expected = "int"
    elif isinstance(schema, tuple) and schema[0] == "list":
        if not isinstance(value, list):
            expected = "array"
        else:
            for index, item in enumerate(value):
                _check(item, schema[1], "%s[%d]" % (path, index), errors)
    elif isinstance(schema, tuple) and schema[0] == "map":
        if not isinstance(value, dict):
            expected = "map"
        else:
            for key, item in value.items():
                _check(item, schema[1], "%s.%s" % (path, key), errors)
    elif isinstance(schema, dict):
        if not isinstance(value, dict):
            expected = "object"
        else:
            for key, item in value.items():
                if key not in schema:
                    errors.append('unknown field "%s"' % ("%s.%s" % (path, key) if path else key))
                else:
                    _check(item, schema[key], "%s.%s" % (path, key) if path else key, errors)
    if expected:
        errors.append("json: cannot unmarshal %s into Go struct field %s of type %s"
                      % (_type_name(value), path, expected))


class _UniqueKeyLoader(yaml.SafeLoader):
    """sigs.k8s.io/yaml strict mode rejects duplicate keys."""


def _construct_mapping(loader, node, deep=False):
    seen = set()
    for key_node, _dummy in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise ConfigError('yaml: unmarshal errors:\n  line %d: key "%s" already set in map'
                              % (key_node.start_mark.line + 1, key))
        seen.add(key)
    return loader.construct_mapping(node, deep=deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def _semantic(kind, doc, errors):
    """The kubeadm validation (cmd/kubeadm/app/apis/kubeadm/validation) checks our templates could trip."""
    if kind == "ClusterConfiguration":
        version = doc.get("kubernetesVersion")
        if version is not None and not VERSION_RE.match(str(version)):
            errors.append('kubernetesVersion: Invalid value: "%s": must be a version like v1.33.1' % version)
        for field in ("podSubnet", "serviceSubnet"):
            value = (doc.get("networking") or {}).get(field)
            for cidr in str(value).split(",") if value else []:
                try:
                    ipaddress.ip_network(cidr.strip(), strict=True)
                except ValueError:
                    errors.append('networking.%s: Invalid value: "%s": couldn\'t parse subnet' % (field, value))
        etcd = doc.get("etcd") or {}
        if etcd.get("local") is not None and etcd.get("external") is not None:
            errors.append("etcd: Invalid value: \"\": etcd.local and etcd.external are mutually exclusive")
        external = etcd.get("external")
        if external is not None:
            if not external.get("endpoints"):
                errors.append("etcd.external.endpoints: Required value: empty etcd.external.endpoints")
            for endpoint in external.get("endpoints") or []:
                if not re.match(r"^https?://[^/]+$", str(endpoint)):
                    errors.append('etcd.external.endpoints: Invalid value: "%s": URL parse error' % endpoint)
            tls = [bool(external.get(k)) for k in ("caFile", "certFile", "keyFile")]
            if any(tls) and not all(tls):
                errors.append("etcd.external: caFile, certFile and keyFile must be set together")
    if kind == "InitConfiguration":
        for index, token in enumerate(doc.get("bootstrapTokens") or []):
            if not TOKEN_RE.match(str(token.get("token", ""))):
                errors.append('bootstrapTokens[%d].token: Invalid value: "%s": the bootstrap token is invalid'
                              % (index, token.get("token")))
        endpoint = doc.get("localAPIEndpoint") or {}
        if endpoint.get("advertiseAddress"):
            try:
                ipaddress.ip_address(endpoint["advertiseAddress"])
            except ValueError:
                errors.append('localAPIEndpoint.advertiseAddress: Invalid value: "%s": is not a valid IP address'
                              % endpoint["advertiseAddress"])
    if kind == "JoinConfiguration":
        discovery = doc.get("discovery") or {}
        if not discovery.get("bootstrapToken") and not discovery.get("file"):
            errors.append("discovery: Invalid value: \"\": bootstrapToken or file must be set")
        if discovery.get("bootstrapToken") and discovery.get("file"):
            errors.append("discovery: Invalid value: \"\": bootstrapToken and file cannot both be set")


def load(text):
    """Parse and strictly validate a kubeadm config file; returns {kind: document}."""
    try:
        documents = [d for d in yaml.load_all(text, Loader=_UniqueKeyLoader) if d is not None]
    except yaml.YAMLError as exc:
        raise ConfigError("error converting YAML to JSON: %s" % exc) from exc
    result = {}
    for doc in documents:
        if not isinstance(doc, dict):
            raise ConfigError("error unmarshaling JSON: while decoding JSON: json: cannot unmarshal %s into Go value "
                              "of type struct" % _type_name(doc))
        api_version, kind = doc.get("apiVersion"), doc.get("kind")
        if not api_version or not kind:
            raise ConfigError("Object 'Kind' is missing in '%s'" % yaml.safe_dump(doc, default_flow_style=True).strip())
        schema = SCHEMAS.get((api_version, kind))
        if schema is None:
            if api_version.startswith("kubeadm.k8s.io/"):
                raise ConfigError('no kind "%s" is registered for version "%s" in scheme '
                                  '"k8s.io/kubernetes/cmd/kubeadm/app/apis/kubeadm/scheme/scheme.go:31"'
                                  % (kind, api_version))
            # kubeadm warns and skips unknown component config documents.
            continue
        errors = []
        _check(doc, schema, "", errors)
        if not errors:
            _semantic(kind, doc, errors)
        if errors:
            raise ConfigError("error unmarshaling configuration %s: strict decoding error: %s"
                              % (_gvk(api_version, kind), ", ".join(errors)))
        if kind in result:
            raise ConfigError("duplicate %s found in the config file" % kind)
        result[kind] = doc
    return result
