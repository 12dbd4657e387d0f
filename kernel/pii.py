"""Protection of personal data at rest: per-campaign data keys and keyed digests.

* Every campaign has its own 256-bit data key. Personal values are sealed with AES-GCM under
  that key; the key itself is stored only wrapped (AES-GCM) under the master key derived from
  ``data_key_secret``. Destroying a campaign's wrapped key makes every copy of its personal
  data unreadable, including copies left in backups or free database pages (crypto-shredding).
* Lookups that must work without decrypting (a phone number calling in, a 宛名番号 on the
  exclusion list, the do-not-call list) use HMAC-SHA256 digests under a purpose-specific key.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives import hmac as crypto_hmac
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from kernel.errors import IntegrityViolation

NONCE_BYTES = 12
KEY_BYTES = 32
FORMAT_VERSION = b"\x01"


def _derive(secret: str, purpose: str) -> bytes:
    return HKDF(
        algorithm=hashes.SHA256(),
        length=KEY_BYTES,
        salt=b"municipal-dunning",
        info=purpose.encode(),
    ).derive(secret.encode())


def _seal(key: bytes, plaintext: bytes, context: str) -> bytes:
    nonce = os.urandom(NONCE_BYTES)
    return FORMAT_VERSION + nonce + AESGCM(key).encrypt(nonce, plaintext, context.encode())


def _open(key: bytes, sealed: bytes, context: str) -> bytes:
    if not sealed or sealed[:1] != FORMAT_VERSION:
        raise IntegrityViolation(f"sealed value for {context} has an unknown format")
    nonce, body = sealed[1 : 1 + NONCE_BYTES], sealed[1 + NONCE_BYTES :]
    try:
        return AESGCM(key).decrypt(nonce, body, context.encode())
    except InvalidTag as error:
        raise IntegrityViolation(f"sealed value for {context} failed authentication") from error


@dataclass(frozen=True)
class KeyRing:
    """Keys derived from the configured ``data_key_secret``."""

    master_secret: str

    def new_wrapped_data_key(self, campaign_id: int) -> bytes:
        return self.wrap(os.urandom(KEY_BYTES), campaign_id)

    def wrap(self, data_key: bytes, campaign_id: int) -> bytes:
        return _seal(self._kek(), data_key, f"campaign-key:{campaign_id}")

    def unwrap(self, wrapped: bytes, campaign_id: int) -> bytes:
        return _open(self._kek(), wrapped, f"campaign-key:{campaign_id}")

    def cipher(self, wrapped: bytes, campaign_id: int) -> PiiCipher:
        return PiiCipher(self.unwrap(wrapped, campaign_id), campaign_id)

    def service_cipher(self, purpose: str) -> PiiCipher:
        """A cipher bound to no campaign, for platform secrets such as users' TOTP seeds."""
        return PiiCipher(_derive(self.master_secret, f"service:{purpose}"), 0)

    def digest(self, purpose: str, value: str) -> str:
        """A keyed, stable digest for equality lookups (hex, 64 chars)."""
        key = _derive(self.master_secret, f"digest:{purpose}")
        return hmac.new(key, value.encode(), hashlib.sha256).hexdigest()

    def digester(self, purpose: str) -> Callable[[str], str]:
        """:meth:`digest` for many values of one purpose: the key is derived and the HMAC
        keyed only once (each value continues a copy of the keyed state)."""
        keyed = crypto_hmac.HMAC(_derive(self.master_secret, f"digest:{purpose}"), hashes.SHA256())

        def digest(value: str) -> str:
            state = keyed.copy()
            state.update(value.encode())
            return state.finalize().hex()

        return digest

    def _kek(self) -> bytes:
        return _derive(self.master_secret, "key-encryption-key")


def _record_text(record: dict[str, Any]) -> str:
    return json.dumps(record, ensure_ascii=False, sort_keys=True, default=str)


@dataclass(frozen=True)
class PiiCipher:
    """Seals and opens the personal values of one campaign."""

    data_key: bytes
    campaign_id: int

    def seal_text(self, value: str, field: str) -> bytes:
        return _seal(self.data_key, value.encode(), self._context(field))

    def open_text(self, sealed: bytes, field: str) -> str:
        return _open(self.data_key, sealed, self._context(field)).decode()

    def seal_record(self, record: dict[str, Any], field: str) -> bytes:
        return self.seal_text(_record_text(record), field)

    def sealer(self, field: str) -> Callable[[str], bytes]:
        """:meth:`seal_text` for many values of one field (bulk imports): the AES-GCM key
        schedule and the context are prepared once."""
        aead, context = AESGCM(self.data_key), self._context(field).encode()

        def seal(value: str) -> bytes:
            nonce = os.urandom(NONCE_BYTES)
            return FORMAT_VERSION + nonce + aead.encrypt(nonce, value.encode(), context)

        return seal

    def seal_many(self, values: Sequence[bytes], field: str) -> list[bytes]:
        """:meth:`seal_text` of many values of one field, given encoded (UTF-8): the key
        schedule and the context are prepared once and the nonces drawn from the OS in one
        call. The format is :meth:`seal_text`'s, so :meth:`open_text` opens every value."""
        encrypt, context = AESGCM(self.data_key).encrypt, self._context(field).encode()
        nonces = os.urandom(NONCE_BYTES * len(values))
        sealed = []
        for start, value in zip(range(0, len(nonces), NONCE_BYTES), values, strict=True):
            nonce = nonces[start : start + NONCE_BYTES]
            sealed.append(b"".join((FORMAT_VERSION, nonce, encrypt(nonce, value, context))))
        return sealed

    def record_sealer(self, field: str) -> Callable[[dict[str, Any]], bytes]:
        """:meth:`seal_record` for many records of one field."""
        seal = self.sealer(field)
        return lambda record: seal(_record_text(record))

    def open_record(self, sealed: bytes, field: str) -> dict[str, Any]:
        loaded = json.loads(self.open_text(sealed, field))
        if not isinstance(loaded, dict):
            raise IntegrityViolation(f"sealed record {field} is not an object")
        return loaded

    def _context(self, field: str) -> str:
        return f"campaign:{self.campaign_id}:{field}"


def seal_batches(
    data_key: bytes, campaign_id: int, batches: Sequence[tuple[str, Sequence[bytes]]]
) -> list[list[bytes]]:
    """:meth:`PiiCipher.seal_many` of each (field, values) batch: a picklable entry point for
    a worker process that seals a bulk import's values while the importer inserts."""
    cipher = PiiCipher(data_key, campaign_id)
    return [cipher.seal_many(values, field) for field, values in batches]


def digest_batch(keyring: KeyRing, purpose: str, values: Sequence[str]) -> list[str]:
    """:meth:`KeyRing.digester` over many values: a picklable entry point for a worker."""
    digest = keyring.digester(purpose)
    return [digest(value) for value in values]
