"""Per-campaign data keys and keyed digests."""

from __future__ import annotations

import pytest

from kernel.errors import IntegrityViolation
from kernel.pii import KeyRing

RING = KeyRing("unit-test-master-secret-0123456789abcdef")


def test_sealed_text_round_trips_and_hides_the_value() -> None:
    cipher = RING.cipher(RING.new_wrapped_data_key(7), 7)
    sealed = cipher.seal_text("山田 太郎", "name")
    assert "山田".encode() not in sealed
    assert cipher.open_text(sealed, "name") == "山田 太郎"


def test_same_value_seals_differently_each_time() -> None:
    cipher = RING.cipher(RING.new_wrapped_data_key(1), 1)
    assert cipher.seal_text("x", "f") != cipher.seal_text("x", "f")


def test_records_round_trip() -> None:
    cipher = RING.cipher(RING.new_wrapped_data_key(1), 1)
    record = {"name": "髙橋 花子", "birth_date": "1980-04-01", "phones": ["+819012345678"]}
    assert cipher.open_record(cipher.seal_record(record, "pii"), "pii") == record


def test_value_sealed_for_one_field_cannot_be_opened_as_another() -> None:
    cipher = RING.cipher(RING.new_wrapped_data_key(1), 1)
    with pytest.raises(IntegrityViolation):
        cipher.open_text(cipher.seal_text("x", "name"), "address")


def test_another_campaigns_key_cannot_open_the_data() -> None:
    first = RING.cipher(RING.new_wrapped_data_key(1), 1)
    second = RING.cipher(RING.new_wrapped_data_key(2), 2)
    with pytest.raises(IntegrityViolation):
        second.open_text(first.seal_text("x", "name"), "name")


def test_wrapped_key_is_bound_to_its_campaign() -> None:
    wrapped = RING.new_wrapped_data_key(1)
    with pytest.raises(IntegrityViolation):
        RING.unwrap(wrapped, 2)


def test_wrong_master_secret_cannot_unwrap() -> None:
    wrapped = RING.new_wrapped_data_key(1)
    with pytest.raises(IntegrityViolation):
        KeyRing("another-master-secret-0123456789abcdef").unwrap(wrapped, 1)


def test_tampered_ciphertext_is_detected() -> None:
    cipher = RING.cipher(RING.new_wrapped_data_key(1), 1)
    sealed = bytearray(cipher.seal_text("value", "f"))
    sealed[-1] ^= 0x01
    with pytest.raises(IntegrityViolation):
        cipher.open_text(bytes(sealed), "f")


def test_digests_are_stable_keyed_and_purpose_bound() -> None:
    assert RING.digest("phone", "+819012345678") == RING.digest("phone", "+819012345678")
    assert RING.digest("phone", "+819012345678") != RING.digest("person", "+819012345678")
    other = KeyRing("another-master-secret-0123456789abcdef")
    assert other.digest("phone", "+819012345678") != RING.digest("phone", "+819012345678")
    assert len(RING.digest("phone", "x")) == 64
