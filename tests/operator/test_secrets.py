"""Token Secret checks, checksums and mirroring: precise reasons, the value never in a message."""

import base64
import hashlib

from higgs_operator.secrets import check_secret, mirrored_secret, token_checksum, token_ref

TOKEN = "hf_SuperSecretValue123"


def secret(data: dict[str, str]) -> dict:
    return {
        "metadata": {"name": "hf"},
        "data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()},
    }


def test_found_with_checksum():
    c = check_secret(secret({"hf_access_token": TOKEN}), "ns", "hf", "hf_access_token")
    assert c.ready and c.reason == "SecretFound"
    assert c.checksum == hashlib.sha256(TOKEN.encode()).hexdigest() == token_checksum(TOKEN.encode())


def test_rotation_changes_checksum():
    a = check_secret(secret({"k": TOKEN}), "ns", "hf", "k")
    b = check_secret(secret({"k": TOKEN + "x"}), "ns", "hf", "k")
    assert a.checksum != b.checksum


def test_not_found():
    c = check_secret(None, "ns", "hf", "k")
    assert (c.ready, c.reason) == (False, "SecretNotFound")
    assert "ns/hf" in c.message


def test_key_missing_lists_keys_not_values():
    c = check_secret(secret({"other": TOKEN}), "ns", "hf", "hf_access_token")
    assert (c.ready, c.reason) == (False, "SecretKeyMissing")
    assert "'other'" in c.message and TOKEN not in c.message


def test_empty_value():
    c = check_secret(secret({"k": "  \n"}), "ns", "hf", "k")
    assert (c.ready, c.reason) == (False, "SecretValueEmpty")


def test_string_data_accepted():
    c = check_secret({"metadata": {"name": "hf"}, "stringData": {"k": TOKEN}}, "ns", "hf", "k")
    assert c.ready


def test_messages_never_carry_the_token():
    for data in ({"k": TOKEN}, {"x": TOKEN}, {"k": ""}):
        assert TOKEN not in repr(check_secret(secret(data), "ns", "hf", "k").message)


def test_mirrored_copy_only_the_key():
    src = secret({"hf_access_token": TOKEN, "unrelated": "zzz"})
    out = mirrored_secret(src, "higgs-system", "hf_access_token", "x-hf-token", "team-a")
    assert out["metadata"] == {
        "name": "x-hf-token",
        "namespace": "team-a",
        "labels": {"audio.higgs.dev/mirrored-from": "higgs-system.hf"},
    }
    assert base64.b64decode(out["data"]["hf_access_token"]).decode() == TOKEN
    assert "unrelated" not in out["data"]


def test_token_ref_forms():
    assert token_ref({}, "x") is None
    r = token_ref({"hfToken": {"secretRef": {"name": "hf"}}}, "x")
    assert (r.name, r.key, r.mirror_from) == ("hf", "hf_access_token", None)
    r = token_ref({"hfToken": {"mirrorFrom": {"name": "shared", "key": "tok"}}}, "x")
    assert (r.name, r.key, r.mirror_from) == ("x-hf-token", "tok", "shared")
