# Copyright: baremetal.kubernetes contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Encryption at rest, as kube-apiserver does it (EncryptionConfiguration, apiserver.config.k8s.io/v1).

Wire format (k8s.io/apiserver/pkg/storage/value/encrypt/..., pkg/server/options/encryptionconfig):
  stored = b"k8s:enc:<provider>:v1:<keyname>:" + ciphertext
  aescbc    ciphertext = IV(16) + AES-CBC(data + PKCS#7 padding)          (aes/aes.go, cbcTransformer)
  aesgcm    ciphertext = nonce(12) + AES-GCM(data, AAD = etcd key) + tag  (aes/aes.go, gcm transformer)
  secretbox ciphertext = nonce(24) + NaCl secretbox(data)                 (secretbox/secretbox.go)
  identity  stored = data, no prefix
The first provider of a resource writes; on read every provider is tried by its prefix. A value read by any
provider or key but the first is "stale": an update writes it again even when the object is unchanged.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os

from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

try:
    import nacl.secret
except ImportError:  # pragma: no cover - only when PyNaCl is missing
    nacl = None

ENC_PREFIX = b"k8s:enc:"
KIND = "EncryptionConfiguration"
API_VERSIONS = ("apiserver.config.k8s.io/v1",)


class TransformerError(Exception):
    """Stored data could not be decrypted, or the configuration is invalid."""


class Identity:
    name = "identity"
    prefix = b""

    def encrypt(self, data, context):
        return data

    def decrypt(self, stored, context):
        if stored.startswith(ENC_PREFIX):
            raise TransformerError("identity transformer tried to read encrypted data")
        return stored


class _Keyed:
    name = ""
    key_sizes = (16, 24, 32)

    def __init__(self, key_name, secret_b64):
        try:
            self.key = base64.b64decode(secret_b64, validate=True)
        except ValueError as exc:
            raise TransformerError("%s key %r: secret is not valid base64" % (self.name, key_name)) from exc
        if len(self.key) not in self.key_sizes:
            raise TransformerError("%s key %r: %d bytes, must be one of %s"
                                   % (self.name, key_name, len(self.key), self.key_sizes))
        self.key_name = key_name
        self.prefix = b"k8s:enc:%s:v1:%s:" % (self.name.encode(), key_name.encode())

    def encrypt(self, data, context):
        return self.prefix + self.seal(data, context)

    def decrypt(self, stored, context):
        return self.open(stored[len(self.prefix):], context)


class AESCBC(_Keyed):
    name = "aescbc"

    def seal(self, data, context):
        iv = os.urandom(16)
        padder = padding.PKCS7(128).padder()
        padded = padder.update(data) + padder.finalize()
        encryptor = Cipher(algorithms.AES(self.key), modes.CBC(iv)).encryptor()
        return iv + encryptor.update(padded) + encryptor.finalize()

    def open(self, blob, context):
        if len(blob) < 32 or len(blob) % 16:
            raise TransformerError("the stored data is not a multiple of the block size")
        decryptor = Cipher(algorithms.AES(self.key), modes.CBC(blob[:16])).decryptor()
        padded = decryptor.update(blob[16:]) + decryptor.finalize()
        unpadder = padding.PKCS7(128).unpadder()
        try:
            return unpadder.update(padded) + unpadder.finalize()
        except ValueError as exc:
            raise TransformerError("invalid PKCS#7 padding in stored data") from exc


class AESGCM_(_Keyed):
    name = "aesgcm"

    def seal(self, data, context):
        nonce = os.urandom(12)
        return nonce + AESGCM(self.key).encrypt(nonce, data, context)

    def open(self, blob, context):
        try:
            return AESGCM(self.key).decrypt(blob[:12], blob[12:], context)
        except Exception as exc:
            raise TransformerError("aesgcm: authentication failed: %s" % exc) from exc


class SecretBox(_Keyed):
    name = "secretbox"
    key_sizes = (32,)

    def seal(self, data, context):
        if nacl is None:
            raise TransformerError("secretbox needs PyNaCl")
        nonce = os.urandom(24)
        return bytes(nacl.secret.SecretBox(self.key).encrypt(data, nonce))  # nonce + box

    def open(self, blob, context):
        if nacl is None:
            raise TransformerError("secretbox needs PyNaCl")
        try:
            return nacl.secret.SecretBox(self.key).decrypt(blob[24:], blob[:24])
        except Exception as exc:
            raise TransformerError("secretbox: decryption failed: %s" % exc) from exc


PROVIDERS = {"aescbc": AESCBC, "aesgcm": AESGCM_, "secretbox": SecretBox}


class ResourceTransformer:
    """The provider chain for one resource."""

    def __init__(self, providers):
        self.providers = providers

    def to_storage(self, data, key):
        return self.providers[0].encrypt(data, key.encode())

    def from_storage(self, stored, key):
        return self.read(stored, key)[0]

    def read(self, stored, key):
        """Return (data, stale). The providers are tried in order, by prefix; ``stale`` is true when the one
        that could read the value is not the first (the current write key), so the value should be written
        again even if the object did not change (the prefix transformer's rule in the apiserver)."""
        errors = []
        for index, provider in enumerate(self.providers):
            if provider.prefix and not stored.startswith(provider.prefix):
                continue
            try:
                return provider.decrypt(stored, key.encode()), index != 0
            except TransformerError as exc:
                errors.append(str(exc))
        raise TransformerError("no provider could read %s: %s" % (key, "; ".join(errors) or "no matching prefix"))


IDENTITY = ResourceTransformer([Identity()])


def parse_config(document):
    """Map resource patterns ('secrets', '*.apps', '*.*') to ResourceTransformer; strict like the apiserver."""
    if not isinstance(document, dict) or document.get("kind") != KIND:
        raise TransformerError("encryption provider config: kind must be %s" % KIND)
    if document.get("apiVersion") not in API_VERSIONS:
        raise TransformerError("encryption provider config: apiVersion must be one of %s" % (API_VERSIONS,))
    mapping = {}
    for index, entry in enumerate(document.get("resources") or []):
        resources = entry.get("resources") or []
        providers = []
        for pindex, provider in enumerate(entry.get("providers") or []):
            if not isinstance(provider, dict) or len(provider) != 1:
                raise TransformerError("resources[%d].providers[%d]: exactly one provider type" % (index, pindex))
            (ptype, spec), = provider.items()
            if ptype == "identity":
                providers.append(Identity())
            elif ptype in PROVIDERS:
                keys = (spec or {}).get("keys") or []
                if not keys:
                    raise TransformerError("resources[%d].providers[%d].%s.keys: at least one key"
                                           % (index, pindex, ptype))
                # Every key of a provider can decrypt; the first one encrypts.
                providers.extend(PROVIDERS[ptype](k["name"], k["secret"]) for k in keys)
            else:
                raise TransformerError("resources[%d].providers[%d]: provider %r not modelled by kubesim"
                                       % (index, pindex, ptype))
        if not providers:
            raise TransformerError("resources[%d].providers: at least one provider" % index)
        for resource in resources:
            # The first entry naming a resource wins, as in the apiserver.
            mapping.setdefault(resource, ResourceTransformer(providers))
    return mapping


def read_config(path):
    """The raw bytes of the config file; an empty file is an error, as in the apiserver's loadDataAndHash."""
    with open(path, "rb") as handle:
        raw = handle.read()
    if not raw:
        raise TransformerError("encryption provider configuration file %r is empty" % path)
    return raw


def parse_raw(path, raw):
    try:
        document = parse_yaml(raw.decode())
    except Exception as exc:  # yaml.YAMLError or a decode error: the file is not a config
        raise TransformerError("encryption provider config %s does not parse: %s" % (path, exc)) from exc
    return parse_config(document)


def load_config(path):
    """Parse an EncryptionConfiguration file (YAML or JSON); returns (mapping, content hash)."""
    raw = read_config(path)
    return parse_raw(path, raw), hashlib.sha256(raw).hexdigest()


def parse_yaml(text):
    try:
        import yaml  # PyYAML ships with ansible-core
    except ImportError:  # pragma: no cover
        return json.loads(text)
    return yaml.safe_load(text)


class Transformers:
    """Resource -> transformer lookup with the apiserver's automatic reload of the config file.

    ``metrics`` (kubesim.metrics.EncryptionConfigMetrics) observes loads and reload attempts the way the
    apiserver's encryption-config controller records them.
    """

    def __init__(self, path=None, reload=False, metrics=None):
        self.path = path
        self.reload = reload
        self.metrics = metrics
        self.mapping = {}
        self.digest = None
        if path:
            self.mapping, self.digest = load_config(path)
            if metrics:
                metrics.loaded("sha256:" + self.digest)

    @property
    def config_hash(self):
        """``sha256:<hex>`` of the file as last loaded (the last_config_info ``hash`` label), or None."""
        return "sha256:" + self.digest if self.digest else None

    def maybe_reload(self):
        """One poll of the controller: re-read the file; reload when its content changed.

        Unchanged content records nothing. A file that cannot be read or does not load keeps the running
        configuration and records a failure, on every poll until it is fixed (as the apiserver does).
        """
        if not (self.path and self.reload):
            return False
        try:
            raw = read_config(self.path)
            digest = hashlib.sha256(raw).hexdigest()
            if digest == self.digest:
                return False
            mapping = parse_raw(self.path, raw)
        except (OSError, TransformerError, ValueError, KeyError, TypeError, AttributeError):
            if self.metrics:
                self.metrics.reload_failed()
            return False
        self.mapping, self.digest = mapping, digest
        if self.metrics:
            self.metrics.reload_succeeded(self.config_hash)
        return True

    def for_resource(self, resource, group=""):
        """Lookup order: 'secrets' / 'deployments.apps', then '*.<group>' ('*.' = core), then '*.*'."""
        exact = resource if not group else "%s.%s" % (resource, group)
        for pattern in (exact, "*.%s" % group, "*.*"):
            if pattern in self.mapping:
                return self.mapping[pattern]
        return IDENTITY
