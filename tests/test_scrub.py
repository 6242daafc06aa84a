"""Scrubbing (docs/privacy.md): each shipped rule on plain values (every rule line has a
case), the stream scrubber across chunk boundaries and on a 50 MB log in bounded memory, and
end to end on both backends: a minidump upload's annotations and log, a Sentry envelope's
event and attachments, feedback text; per-project rules; a bad rules file stops serve."""

from __future__ import annotations

import argparse
import io
import json
import random
import tomllib
import tracemalloc
import uuid
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from starlette.testclient import TestClient

from schemas.settings import DEFAULT_SCRUB_RULES, Settings
from server.cli.serve import cmd_serve, cmd_worker
from server.ingest.scrubbing import scrubbed_reader, sniffed_binary
from server.ingest.upload_parser import UploadPart
from storage.blobs import FSBlobStore
from triage.scrub import FILTERED, Rules, ScrubRulesError, explain, load_rules, parse_rules, scrub_fields, scrub_text
from triage.scrub_stream import TextScrubber

from conftest import Crashd, _crashd, make_settings
from dashboard_world import PASSWORD as USER_PASSWORD
from dashboard_world import create_user, csrf_of
from minidump_writer import small_dump
from uploads import multipart

RULES = load_rules(DEFAULT_SCRUB_RULES).default
JWT = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiIxMjM0NSIsIm5vbmNlIjoiYWJjIn0.c2lnbmF0dXJlX2J5dGVzX2hlcmU"
EMAIL = "alice.tester@example.com"
IPV4 = "203.0.113.77"
IPV6 = "2001:db8:85a3::8a2e:370:7334"
BEARER = "s3cr3tB34r3rT0k3n"
PASSWORD = "hunter2-pw-value"
SALT = "129390038577185583942388216820280642146"
WINUSER = "alicewin"
UNIXUSER = "bobunix"
APIKEY = "k-123-apikey-value"
SECRETS = [JWT, EMAIL, IPV4, IPV6, BEARER, PASSWORD, SALT, WINUSER, UNIXUSER, APIKEY]
LOG = (f"login {EMAIL} from {IPV4} and {IPV6}\nAuthorization: Bearer {BEARER}\njwt={JWT}\n"
       f"opened C:\\Users\\{WINUSER}\\AppData\\game.ini and /home/{UNIXUSER}/.config\n")


def assert_clean(text: str | bytes) -> None:
    data = text.encode() if isinstance(text, str) else text
    left = [s for s in SECRETS if s.encode() in data]
    assert not left, f"secrets left: {left}"


# -- rule by rule -----------------------------------------------------------------------------

# (path, value, expected, the rule line that decides it)
CASES = [
    ((), f"token {JWT} end", f"token {FILTERED} end", "jwt:pattern"),
    (("user_salt",), SALT, FILTERED, "zklogin:key_words=salt"),
    (("zkProof",), "0x1234", FILTERED, "zklogin:key_words=proof"),
    (("proofs",), "a,b", FILTERED, "zklogin:key_words=proofs"),
    (("proof_points",), "1 2 3", FILTERED, "zklogin:key_words=proof"),
    (("jwt",), "not-a-jwt", FILTERED, "zklogin:key_words=jwt"),
    (("jwt_randomness",), "991", FILTERED, "zklogin:key_words=jwt"),
    (("randomness",), "991", FILTERED, "zklogin:key_words=randomness"),
    (("ephemeralKeyPair",), "priv", FILTERED, "zklogin:key_names=ephemeral_*"),
    (("addressSeed",), "77", FILTERED, "zklogin:key_names=address_seed"),
    (("zkLoginInputs",), "{}", FILTERED, "zklogin:key_names=zk_login_inputs"),
    (("zk_login_signature",), "sig", FILTERED, "zklogin:key_names=zk_login_signature"),
    (("password",), PASSWORD, FILTERED, "secret_fields:key_words=password"),
    (("db_passwd",), "x1", FILTERED, "secret_fields:key_words=passwd"),
    (("MYSQL_PWD",), "x1", FILTERED, "secret_fields:key_words=pwd"),
    (("client_secret",), "x1", FILTERED, "secret_fields:key_words=secret"),
    (("id_token",), "x1", FILTERED, "secret_fields:key_words=token"),
    (("X-Auth-Token",), "x1", FILTERED, "secret_fields:key_words=token"),
    (("api_key",), APIKEY, FILTERED, "secret_fields:key_words=key"),
    (("publicKey",), "x1", FILTERED, "secret_fields:key_words=key"),
    (("Authorization",), "Basic abc", FILTERED, "secret_fields:key_words=authorization"),
    (("cookie",), "sid=1", FILTERED, "secret_fields:key_words=cookie"),
    (("request", "cookies"), "sid=1", FILTERED, "secret_fields:key_words=cookies"),
    (("aws_credentials",), "x1", FILTERED, "secret_fields:key_words=credentials"),
    (("wallet_passphrase",), "x1", FILTERED, "secret_fields:key_words=passphrase"),
    (("mnemonic",), "word word", FILTERED, "secret_fields:key_words=mnemonic"),
    (("APIKEY",), "x1", FILTERED, "secret_fields:key_words=apikey"),
    ((), f"Authorization: Bearer {BEARER}", f"Authorization: Bearer {FILTERED}", "bearer:pattern"),
    ((), f"mail {EMAIL}.", f"mail {FILTERED}.", "email:pattern"),
    ((), f"peer {IPV4}:443", f"peer {FILTERED}:443", "ipv4:pattern"),
    ((), f"peer [{IPV6}]:443 and fe80::1%eth0", f"peer [{FILTERED}]:443 and {FILTERED}%eth0", "ipv6:pattern"),
    ((), f"C:\\Users\\{WINUSER}\\AppData", f"C:\\Users\\{FILTERED}\\AppData", "windows_home:pattern"),
    ((), f'"C:\\\\Users\\\\{WINUSER}\\\\x"', f'"C:\\\\Users\\\\{FILTERED}\\\\x"', "windows_home:pattern"),
    ((), f"d:/users/{WINUSER}/x", f"d:/users/{FILTERED}/x", "windows_home:pattern"),
    ((), f"/home/{UNIXUSER}/.config", f"/home/{FILTERED}/.config", "unix_home:pattern"),
    ((), f"/Users/{UNIXUSER}/Library", f"/Users/{FILTERED}/Library", "unix_home:pattern"),
]

# Values that must come out as they went in.
KEPT = [
    (("keyboard_layout",), "en-US"), (("monkey",), "banana"), (("tokenizer",), "bpe"), (("hotkey",), "F5"),
    (("ver",), "1.2.3.4"), (("version",), "10.0.0.1"), (("sentry", "release"), "game@1.0.2.3"),
    (("build",), "1.2.3.4"), (("random_seed",), "42"), (("tester_id",), "tester-42"),
    ((), "std::vector<int>::push_back and Foo::Bar"), ((), "at 12:34:56 on aa:bb:cc:dd:ee:ff"),
    ((), "v1.2.3.4 and build 1.2.3.4000"), ((), "C:\\Program Files\\Game\\game.exe"), ((), "/usr/lib/x.so"),
    ((), "sha eyJ-alone and eyJabc.def"), ((), "user@localhost"),
]


@pytest.mark.parametrize("path, value, expected, rule", CASES, ids=[c[3] + f"-{i}" for i, c in enumerate(CASES)])
def test_rule_case(path: tuple[str, ...], value: str, expected: str, rule: str) -> None:
    assert explain(RULES, path, value)[:1] == [rule]
    scrubbed = scrub_fields(RULES, {".".join(path): value})[".".join(path)] if path else scrub_text(RULES, value)
    assert scrubbed == expected


@pytest.mark.parametrize("path, value", KEPT)
def test_kept(path: tuple[str, ...], value: str) -> None:
    assert scrub_fields(RULES, {".".join(path) or "text": value}) == {".".join(path) or "text": value}


def test_every_rule_line_has_a_case() -> None:
    """Each rule of the shipped file, and each entry of its key selectors, decides a case."""
    document = tomllib.loads(DEFAULT_SCRUB_RULES.read_text())
    every = set()
    for name, spec in document["rules"].items():
        every |= {f"{name}:pattern"} if "pattern" in spec else set()
        every |= {f"{name}:{field}={entry}" for field in ("key_words", "key_names", "paths") for entry in spec.get(field, [])}
    assert every - {case[3] for case in CASES} == set()


def test_scrubbing_is_idempotent_and_keeps_shapes() -> None:
    event = {"user": {"email": EMAIL, "ip_address": IPV4, "id": "t-1"}, "contexts": {"zklogin": {
        "salt": SALT, "proof_points": {"a": ["1", "2"], "n": 3, "ok": True}}},
        "request": {"headers": [["Authorization", f"Bearer {BEARER}"], ["Accept", "*/*"]]}}
    once = scrub_fields(RULES, event)
    assert once == scrub_fields(RULES, once)
    assert once["contexts"]["zklogin"]["proof_points"] == {"a": [FILTERED, FILTERED], "n": FILTERED, "ok": True}
    assert once["request"]["headers"] == [["Authorization", FILTERED], ["Accept", "*/*"]]
    assert once["user"] == {"email": FILTERED, "ip_address": FILTERED, "id": "t-1"}


def test_bad_rules_are_refused_with_where() -> None:
    bad: list[tuple[dict[str, Any], str]] = [({"rules": {"x": {"pattern": "("}}}, "[rules.x]: bad pattern"),
           ({"rules": {"x": {}}}, "needs a pattern"),
           ({"rules": {"x": {"key_words": ["apiKey"]}}}, "not one lower-case word"),
           ({"rules": {"x": {"patern": "a"}}}, "unknown field 'patern'"),
           ({"rulez": {}}, "unknown section"),
           ({"rules": {"x": {"pattern": "a"}}, "projects": {"p": {"disable": ["y"]}}}, "[projects.p]: disable")]
    for document, message in bad:
        with pytest.raises(ScrubRulesError, match=message.replace("[", r"\[").replace("]", r"\]")):
            parse_rules(document)


def test_per_project_rules() -> None:
    rules = parse_rules({"rules": {"email": {"pattern": "[a-z]+@[a-z]+\\.com"}},
                         "projects": {"arena": {"disable": ["email"], "rules": {
                             "player": {"key_names": ["player_name"]}}}}})
    assert scrub_fields(rules.for_project("arena"), {"player_name": "Zed", "m": "a@b.com"}) == {
        "player_name": FILTERED, "m": "a@b.com"}
    assert scrub_fields(rules.for_project("other"), {"player_name": "Zed", "m": "a@b.com"}) == {
        "player_name": "Zed", "m": FILTERED}


# -- streams -----------------------------------------------------------------------------------


def stream(rules: Rules, data: bytes, slices: list[int], chunk: int, overlap: int) -> bytes:
    scrubber, out, at = TextScrubber(rules, chunk_chars=chunk, overlap=overlap), [], 0
    for size in slices:
        out.append(scrubber.feed(data[at:at + size]))
        at += size
    out.append(scrubber.feed(data[at:]))
    return b"".join(out) + scrubber.finish()


def test_matches_across_chunk_boundaries_are_caught() -> None:
    """Small chunks, fed in random slices (UTF-8 characters cut in two): the same as
    scrubbing the whole text at once, at every offset of the secrets."""
    rng = random.Random(15)
    for shift in range(0, 90, 7):
        text = "é" * shift + LOG * 6 + "ünïcode \udcff end"
        data = text.encode("utf-8", "surrogateescape")
        slices = [rng.randint(1, 40) for _ in range(len(data) // 20)]
        assert stream(RULES, data, slices, chunk=64, overlap=200) == scrub_text(RULES, text).encode(
            "utf-8", "surrogateescape")


def test_a_secret_longer_than_a_chunk_is_caught_whole() -> None:
    """A secret longer than a chunk but within the overlap: the chunk is stretched to its end."""
    data = f"x {JWT}{'A' * 500} y\n".encode()
    assert stream(RULES, data, [10] * 60, chunk=32, overlap=700) == b"x [Filtered] y\n"


def test_binary_files_are_left_alone() -> None:
    png = b"\x89PNG\r\n\x1a\n" + EMAIL.encode()
    assert sniffed_binary(png, None) and sniffed_binary(b"a\x00b", "text/plain")
    assert sniffed_binary(b"text", "image/png") and not sniffed_binary(LOG.encode(), "application/octet-stream")
    assert scrubbed_reader(RULES, UploadPart("s", "s.png", None, io.BytesIO(png), len(png))) is None


def test_a_50_mb_log_is_scrubbed_in_bounded_memory(tmp_path: Path) -> None:
    """50 MB written to disk, scrubbed into the blob store: tracemalloc's peak stays under
    20 MB, and a secret every 300 KB (so at many chunk boundaries) is filtered."""
    line = b"12:00:00.123 [render] frame 12345 took 16.6ms in std::vector<int>::push_back v1.2.3\n"
    path, count = tmp_path / "big.log", 0
    with path.open("wb") as out:
        while out.tell() < 50 * 1024 * 1024:
            out.write(line * 3000)
            out.write(LOG.encode())
            count += 1
    size = path.stat().st_size
    store = FSBlobStore(tmp_path / "blobs")
    with path.open("rb") as source:
        tracemalloc.start()
        try:
            reader = scrubbed_reader(RULES, UploadPart("log", "big.log", "text/plain", source, size))
            assert reader is not None
            store.put_file("attachments/x/big.log", reader.as_file())
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
    assert peak < 20 * 1024 * 1024, peak
    stored = tmp_path / "blobs" / "attachments" / "x" / "big.log"
    assert reader.size == stored.stat().st_size
    filtered = 0
    with stored.open("rb") as handle:
        tail = b""
        while chunk := handle.read(1024 * 1024):
            window = tail + chunk
            assert_clean(window)
            filtered += chunk.count(b"[Filtered]")
            tail = window[-200:]
    assert filtered == count * 7  # LOG holds seven secrets


# -- end to end --------------------------------------------------------------------------------


def blobs_text(crashd: Crashd) -> bytes:
    return b"".join(p.read_bytes() for p in crashd.blob_files() if not p.name.endswith(".dmp"))


def dashboard(crashd: Crashd, monkeypatch: pytest.MonkeyPatch) -> TestClient:
    create_user(crashd, "scrub-admin", "admin", monkeypatch)
    client = TestClient(crashd.client.app)
    token = csrf_of(client.get("/login?next=/").text)
    response = client.post("/login", data={"username": "scrub-admin", "password": USER_PASSWORD,
                                           "csrf_token": token, "next": "/"}, follow_redirects=False)
    assert response.status_code == 303, response.text
    return client


def test_minidump_upload_annotations_and_log(crashd: Crashd, monkeypatch: pytest.MonkeyPatch) -> None:
    fields = {"prod": "Game", "ver": "1.2.3.4", "tester_id": "tester-42", "guid": "0f3c-guid",
              "keyboard_layout": "en-US", "user_salt": SALT, "zk_proof": json.dumps({"a": ["1", "2"]}),
              "password": PASSWORD, "api_key": APIKEY, "id_token": JWT, "client_ip": IPV4,
              "note": f"contact {EMAIL}, Bearer {BEARER}", "save_dir": f"C:\\Users\\{WINUSER}\\Saved"}
    body, ctype = multipart(fields, [("upload_file_minidump", "crash.dmp", small_dump(3), "application/octet-stream"),
                                     ("log", f"/home/{UNIXUSER}/game.log", LOG.encode(), "text/plain")])
    response = crashd.client.post(f"/api/{crashd.project.id}/minidump/?sentry_key={crashd.key}&ip={IPV6}",
                                  content=body, headers={"Content-Type": ctype})
    assert response.status_code == 200, response.text
    crash_id = response.text
    crashd.drain()
    detail = crashd.crash(crash_id)
    assert_clean(json.dumps(detail))
    annotations = detail["annotations"]
    assert (detail["build"], detail["tester_id"], detail["product"]) == ("1.2.3.4", "tester-42", "Game")
    assert annotations["keyboard_layout"] == "en-US" and annotations["guid"] == "0f3c-guid"
    assert annotations["user_salt"] == annotations["password"] == annotations["ip"] == FILTERED
    assert annotations["save_dir"] == f"C:\\Users\\{FILTERED}\\Saved"
    [log] = detail["attachments"]
    got = crashd.client.get(f"/api/crashes/{crash_id}/attachments/log", headers=crashd.admin)
    assert got.status_code == 200 and f"Bearer {FILTERED}" in got.text
    assert_clean(got.content)
    assert log["size"] == len(got.content)
    assert_clean(blobs_text(crashd))
    page = dashboard(crashd, monkeypatch).get(f"/crashes/{crash_id}")
    assert page.status_code == 200 and "tester-42" in page.text
    assert_clean(page.text)


def envelope(*items: tuple[dict, bytes], event_id: str) -> bytes:
    out = json.dumps({"event_id": event_id}).encode() + b"\n"
    for headers, payload in items:
        out += json.dumps({**headers, "length": len(payload)}).encode() + b"\n" + payload + b"\n"
    return out


def test_sentry_envelope_event_and_attachments(crashd: Crashd) -> None:
    event_id = uuid.uuid4().hex
    event = {"event_id": event_id, "level": "error", "platform": "python", "release": "game@1.2.3.4",
             "message": f"login failed for {EMAIL}", "user": {"id": "tester-9", "email": EMAIL, "ip_address": IPV4},
             "request": {"url": "https://game.example/api", "headers": [["Authorization", f"Bearer {BEARER}"]]},
             "extra": {"password": PASSWORD, "path": f"/home/{UNIXUSER}/game"},
             "tags": {"map": "dust", "keyboard_layout": "de"},
             "contexts": {"zklogin": {"salt": SALT, "proof_points": {"a": ["1"]}, "jwt": JWT}},
             "exception": {"values": [{"type": "AuthError", "value": f"bad token {JWT} from {IPV6}",
                                       "stacktrace": {"frames": [{"function": "login", "module": "game.auth",
                                                                  "abs_path": f"C:\\Users\\{WINUSER}\\game\\auth.py"}]}}]}}
    png = b"\x89PNG\r\n\x1a\n" + EMAIL.encode()
    body = envelope(({"type": "event"}, json.dumps(event).encode()),
                    ({"type": "attachment", "filename": "game.log", "content_type": "text/plain"}, LOG.encode()),
                    ({"type": "attachment", "filename": "state.json", "content_type": "application/json"},
                     json.dumps({"session": {"token": APIKEY}, "note": EMAIL}).encode()),
                    ({"type": "attachment", "filename": "shot.png", "content_type": "image/png"}, png),
                    event_id=event_id)
    response = crashd.client.post(f"/api/{crashd.project.id}/envelope/?sentry_key={crashd.key}", content=body,
                                  headers={"Content-Type": "application/x-sentry-envelope"})
    assert response.status_code == 200, response.text
    crashd.drain()
    with crashd.state.ctx.engine.connect() as conn:
        [crash_id] = conn.execute(text("SELECT crash_id FROM crashes")).scalars().all()
    detail = crashd.crash(crash_id)
    assert (detail["build"], detail["tester_id"]) == ("game@1.2.3.4", "tester-9")
    assert detail["processed"]["signature"] == "login"
    assert detail["annotations"]["sentry.tags.keyboard_layout"] == "de"
    assert_clean(json.dumps(detail))
    stored = {a["name"]: crashd.client.get(f"/api/crashes/{crash_id}/attachments/{a['name']}",
                                           headers=crashd.admin).content for a in detail["attachments"]}
    assert stored["shot.png"] == png  # binary: as received
    assert json.loads(stored["state.json"]) == {"session": {"token": FILTERED}, "note": FILTERED}
    assert_clean(b"".join(v for k, v in stored.items() if k != "shot.png"))
    assert_clean(b"".join(p.read_bytes() for p in crashd.blob_files() if not p.name.endswith(".png")
                          and b"\x89PNG" not in p.read_bytes()[:8]))


def test_feedback_text_is_scrubbed(crashd: Crashd) -> None:
    message = f"my account {EMAIL} from {IPV4} can't load C:\\Users\\{WINUSER}\\save.dat"
    response = crashd.client.post(f"/api/{crashd.project.id}/feedback/?key={crashd.key}",
                                  json={"message": message, "tester_id": "tester-5", "build": "1.2.3.4"})
    assert response.status_code == 200, response.text
    listed = crashd.client.get("/api/feedback", headers=crashd.admin)
    assert listed.status_code == 200
    assert_clean(listed.text)
    assert f"C:\\\\Users\\\\{FILTERED}\\\\save.dat" in listed.text and "1.2.3.4" in listed.text


@pytest.fixture
def arena(backend: str, services: tuple[str | None, str | None], tmp_path: Path):
    """crashd whose rules file gives the project "game" its own rule and keeps e-mail there."""
    rules = tmp_path / "scrub.toml"
    rules.write_text(DEFAULT_SCRUB_RULES.read_text() + '\n[projects.game]\ndisable = ["email"]\n'
                     '[projects.game.rules.player]\nkey_names = ["player_name"]\n')
    yield from _crashd(backend, make_settings(backend, tmp_path, *services, scrub_rules=rules))


def test_per_project_rules_on_upload(arena: Crashd) -> None:
    body, ctype = multipart({"player_name": "Zed", "contact": EMAIL, "password": PASSWORD},
                            [("upload_file_minidump", "crash.dmp", small_dump(4), "application/octet-stream")])
    response = arena.client.post(f"/api/{arena.project.id}/minidump/?sentry_key={arena.key}", content=body,
                                 headers={"Content-Type": ctype})
    assert response.status_code == 200, response.text
    annotations = arena.crash(response.text)["annotations"]
    assert (annotations["player_name"], annotations["contact"], annotations["password"]) == (FILTERED, EMAIL, FILTERED)


def test_a_bad_rules_file_stops_serve_and_worker(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "scrub.toml"
    bad.write_text('[rules.broken]\npattern = "(unclosed"\n')
    settings = Settings(data_dir=tmp_path / "data", scrub_rules=bad, redis_url="redis://127.0.0.1:6379/0")
    assert cmd_serve(settings, argparse.Namespace(host="127.0.0.1", port=0, log_level="info")) == 2
    assert cmd_worker(settings, argparse.Namespace(fork=False)) == 2
    err = capsys.readouterr().err
    assert f"{bad}: [rules.broken]: bad pattern" in err
    settings.scrub_rules = tmp_path / "missing.toml"
    assert cmd_serve(settings, argparse.Namespace(host="127.0.0.1", port=0, log_level="info")) == 2
    assert "cannot read" in capsys.readouterr().err
    with pytest.raises(ScrubRulesError):
        load_rules(bad)
