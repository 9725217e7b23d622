"""The cryptography-backed AES for tlslite-ng against tlslite's own pure-Python AES."""

from __future__ import annotations

import copy
import logging
import os
from collections.abc import Iterator

import pytest
import tlslite.recordlayer as recordlayer
import tlslite.utils.cipherfactory as cipherfactory
from tlslite.utils import python_aes

from rpyc_ipy.auth import aes

# chunk lengths fed one after the other through the same object: the CBC chain must
# carry across calls, including across empty calls
CHUNKINGS = [
    [16],
    [32, 16, 48],
    [0, 16, 0, 64],
    [16 * 7, 16, 16 * 33],
    [1024, 16384 + 32, 160],
]


@pytest.fixture(autouse=True)
def restore_fast_aes() -> Iterator[None]:
    yield
    aes.install()  # whatever a test did, leave the fast path in place


def ours(key: bytes, iv: bytes) -> aes.CryptographyAES:
    return aes.CryptographyAES(key, 2, iv)


@pytest.mark.parametrize("key_size", [16, 24, 32])
@pytest.mark.parametrize("chunks", CHUNKINGS)
def test_encrypt_and_decrypt_match_tlslite(key_size: int, chunks: list[int]) -> None:
    key, iv = os.urandom(key_size), os.urandom(16)
    data = [os.urandom(n) for n in chunks]
    enc_fast, enc_ref = ours(key, iv), python_aes.new(bytearray(key), 2, bytearray(iv))
    ciphertexts = []
    for block in data:
        expected = enc_ref.encrypt(bytearray(block))
        got = enc_fast.encrypt(bytearray(block))
        assert isinstance(got, bytearray)
        assert got == expected
        ciphertexts.append(bytes(got))
    dec_fast, dec_ref = ours(key, iv), python_aes.new(bytearray(key), 2, bytearray(iv))
    for block, ct in zip(data, ciphertexts, strict=True):
        expected = dec_ref.decrypt(bytearray(ct))
        got = dec_fast.decrypt(bytearray(ct))
        assert got == expected == bytearray(block)
    assert enc_fast.name == f"aes{key_size * 8}" and enc_fast.implementation == "openssl"


def test_one_object_shares_its_chain_between_directions_like_tlslite() -> None:
    key, iv = os.urandom(32), os.urandom(16)
    fast, ref = ours(key, iv), python_aes.new(bytearray(key), 2, bytearray(iv))
    for step, n in enumerate([32, 48, 16, 64]):
        block = bytearray(os.urandom(n))
        if step % 2:
            assert fast.decrypt(bytearray(block)) == ref.decrypt(bytearray(block))
        else:
            assert fast.encrypt(bytearray(block)) == ref.encrypt(bytearray(block))


def test_copies_are_independent() -> None:
    key, iv = os.urandom(16), os.urandom(16)
    a = ours(key, iv)
    a.encrypt(bytearray(32))
    b = copy.copy(a)
    block = bytearray(os.urandom(48))
    assert a.encrypt(bytearray(block)) == b.encrypt(bytearray(block))
    assert a.encrypt(bytearray(block)) == b.encrypt(bytearray(block))


def test_input_is_not_modified_and_partial_blocks_are_refused() -> None:
    key, iv = os.urandom(16), os.urandom(16)
    block = bytearray(os.urandom(64))
    saved = bytes(block)
    fast = ours(key, iv)
    fast.decrypt(fast.encrypt(block))
    assert bytes(block) == saved
    with pytest.raises(ValueError):
        fast.encrypt(bytearray(15))
    with pytest.raises(ValueError):
        fast.decrypt(bytearray(17))


def test_install_is_idempotent_and_patches_both_references() -> None:
    assert aes.install() is True
    factory = recordlayer.createAES
    assert aes.install() is True and aes.installed()
    assert recordlayer.createAES is factory is cipherfactory.createAES
    assert getattr(factory, "rpyc_ipy_fast_aes", False)
    made = factory(bytearray(16), bytearray(16), ["python"])  # what validated settings pass
    assert isinstance(made, aes.CryptographyAES)


def test_uninstall_restores_tlslite_until_install() -> None:
    aes.install()
    aes.uninstall()
    assert not aes.installed()
    assert not getattr(recordlayer.createAES, "rpyc_ipy_fast_aes", False)
    made = recordlayer.createAES(bytearray(16), bytearray(16), ["python"])
    assert made.implementation == "python"
    assert aes.ensure_installed() is False  # what handshakes call: the choice sticks
    assert not getattr(recordlayer.createAES, "rpyc_ipy_fast_aes", False)
    assert aes.install() is True and aes.ensure_installed() is True


def test_handshakes_install_it_on_their_own() -> None:
    aes.uninstall()
    aes._state.clear()  # as in a fresh process
    assert aes.ensure_installed() is True
    assert getattr(recordlayer.createAES, "rpyc_ipy_fast_aes", False)


def test_missing_cryptography_falls_back_with_one_warning(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    aes.uninstall()
    monkeypatch.setattr(aes, "Cipher", None)
    with caplog.at_level(logging.WARNING, logger="rpyc_ipy.auth"):
        assert aes.install() is False
        assert aes.install() is False
    warnings = [r for r in caplog.records if "pure-Python AES" in r.getMessage()]
    assert len(warnings) == 1
    assert not getattr(recordlayer.createAES, "rpyc_ipy_fast_aes", False)
    monkeypatch.undo()
