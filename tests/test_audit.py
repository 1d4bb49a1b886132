"""The audit log: decisions, policy loads and admin entries chained in the store; ``tether
audit verify`` finds each kind of tampering, on a real SQLite file and the real PostgreSQL;
two processes appending at once keep one chain."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from sqlalchemy import text

from fakes.cli import run_cli
from test_authz_agent import POLICIES, make_agent_dir
from tether import Agent
from tether.core import canonical_json
from tether.store import Store
from tether.store.audit import iter_audit
from tether.store.audit_verify import AuditReport, verify_audit
from tether.trace import AuditLog, writer_for


def record_entries(url: str, n: int) -> None:
    log = AuditLog(writer_for(url))
    for i in range(n):
        log.record("key_created", {"project": "default", "key_id": f"k{i}"}, {"role": "admin"})
    assert log.flush()


def verify(url: str, key: bytes | None = None) -> AuditReport:
    store = Store(url)
    try:
        with store.engine.connect() as conn:
            return verify_audit(conn, key)
    finally:
        store.close()


def tamper(url: str, *statements: str) -> None:
    store = Store(url)
    try:
        with store.engine.begin() as conn:
            for statement in statements:
                conn.execute(text(statement))
    finally:
        store.close()


def test_an_untouched_chain_verifies(store_url: str) -> None:
    record_entries(store_url, 5)
    report = verify(store_url)
    assert report.ok and report.entries == 5 and report.head_seq == 5


@pytest.mark.parametrize(
    ("statements", "kind", "seq"),
    [
        (
            ['UPDATE tether_audit SET details = \'{"role":"viewer"}\' WHERE seq = 3'],
            "edited",
            3,
        ),
        (["DELETE FROM tether_audit WHERE seq = 2"], "deleted", 2),
        (["DELETE FROM tether_audit WHERE seq = 5"], "deleted", 5),
        (
            [
                "INSERT INTO tether_audit (seq, entry_id, time_ns, kind, actor, details, alg, "
                "prev_hash, hash) SELECT 6, 'forged', time_ns, kind, actor, details, alg, hash, "
                "hash FROM tether_audit WHERE seq = 5"
            ],
            "inserted",
            6,
        ),
        (
            [
                "UPDATE tether_audit SET seq = 100 WHERE seq = 2",
                "UPDATE tether_audit SET seq = 2 WHERE seq = 3",
                "UPDATE tether_audit SET seq = 3 WHERE seq = 100",
            ],
            "reordered",
            2,
        ),
        (
            [
                "INSERT INTO tether_audit (seq, entry_id, time_ns, kind, actor, details, alg, "
                "prev_hash, hash) SELECT 0, 'forged', time_ns, kind, actor, details, alg, "
                "prev_hash, hash FROM tether_audit WHERE seq = 1"
            ],
            "inserted",
            0,
        ),
        (
            [
                "INSERT INTO tether_audit (seq, entry_id, time_ns, kind, actor, details, alg, "
                "prev_hash, hash) SELECT -7, 'forged', time_ns, kind, actor, details, alg, "
                "prev_hash, hash FROM tether_audit WHERE seq = 1"
            ],
            "inserted",
            -7,
        ),
    ],
    ids=["edit", "delete", "delete-last", "insert", "swap", "insert-at-0", "insert-below-0"],
)
def test_tampering_is_found_at_the_first_entry_touched(
    store_url: str, statements: list[str], kind: str, seq: int
) -> None:
    record_entries(store_url, 5)
    tamper(store_url, *statements)
    report = verify(store_url)
    assert report.problem is not None
    assert (report.problem.kind, report.problem.seq) == (kind, seq), report.problem.message


@pytest.mark.parametrize(
    ("statement", "seq", "says"),
    [
        ("UPDATE tether_audit SET time_ns = 'abc' WHERE seq = 3", 3, "time_ns is 'abc'"),
        ("UPDATE tether_audit SET time_ns = 1.5 WHERE seq = 3", 3, "time_ns is 1.5"),
        ("UPDATE tether_audit SET seq = 'abc' WHERE seq = 5", 5, "seq is 'abc'"),
        ("UPDATE tether_audit SET seq = 3.5 WHERE seq = 5", 4, "seq is 3.5"),
        ("UPDATE tether_audit_head SET seq = 'x'", 5, "the chain's head row"),
    ],
    ids=["time-text", "time-fraction", "seq-text", "seq-fraction", "head-text"],
)
def test_a_value_of_the_wrong_type_is_an_edit_not_a_crash(
    sqlite_url: str, statement: str, seq: int, says: str
) -> None:
    # SQLite keeps whatever a column is given: a BIGINT column can hold text or a fraction.
    record_entries(sqlite_url, 5)
    tamper(sqlite_url, statement)
    report = verify(sqlite_url)
    assert report.problem is not None
    assert (report.problem.kind, report.problem.seq) == ("edited", seq), report.problem.message
    assert says in report.problem.message
    commands = [("audit", "verify")] + ([("audit", "list")] if "head" not in statement else [])
    for command in commands:
        done = run_cli("--database-url", sqlite_url, *command)
        assert done.returncode == 1
        assert "unexpected error" not in done.stderr and says in done.stderr, done.stderr


def test_an_entry_inserted_mid_chain_with_a_valid_unkeyed_hash_is_found_with_a_key(
    sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TETHER_AUDIT_KEY", "s3cret")
    record_entries(sqlite_url, 3)
    # Someone with the database but not the key rewrites entry 3 with a SHA-256 they computed.
    store = Store(sqlite_url)
    with store.engine.begin() as conn:
        row = conn.execute(text("SELECT * FROM tether_audit WHERE seq = 3")).one()
        payload = {
            "seq": 3,
            "entry_id": row.entry_id,
            "time_ns": row.time_ns,
            "kind": row.kind,
            "actor": row.actor,
            "trace_id": None,
            "run_id": None,
            "span_id": None,
            "details": '{"role":"viewer"}',
            "alg": "sha256",
            "prev_hash": row.prev_hash,
        }
        digest = hashlib.sha256(canonical_json(payload).encode()).hexdigest()
        conn.execute(
            text(
                "UPDATE tether_audit SET details = '{\"role\":\"viewer\"}', alg = 'sha256', "
                "hash = :h WHERE seq = 3"
            ),
            {"h": digest},
        )
        conn.execute(text("UPDATE tether_audit_head SET hash = :h"), {"h": digest})
    store.close()
    report = verify(sqlite_url, b"s3cret")
    assert report.problem is not None and report.problem.seq == 3
    assert report.problem.kind == "edited"
    wrong = verify(sqlite_url, b"not the key")
    assert wrong.problem is not None and wrong.problem.seq == 1
    missing = verify(sqlite_url, None)
    assert missing.problem is not None and missing.problem.kind == "unverifiable"


def _rewrite_unkeyed(url: str, details: str) -> None:
    """What someone with the database and not the key can do: every entry rewritten (its
    details changed) and rehashed as SHA-256, chained anew, the head row set to match."""
    store = Store(url)
    try:
        with store.engine.begin() as conn:
            prev = "0" * 64
            rows = conn.execute(text("SELECT * FROM tether_audit ORDER BY seq")).all()
            for row in rows:
                payload = {
                    "seq": row.seq,
                    "entry_id": row.entry_id,
                    "time_ns": row.time_ns,
                    "kind": row.kind,
                    "actor": row.actor,
                    "trace_id": None,
                    "run_id": None,
                    "span_id": None,
                    "details": details,
                    "alg": "sha256",
                    "prev_hash": prev,
                }
                digest = hashlib.sha256(canonical_json(payload).encode()).hexdigest()
                conn.execute(
                    text(
                        "UPDATE tether_audit SET details = :d, alg = 'sha256', prev_hash = :p, "
                        "hash = :h WHERE seq = :s"
                    ),
                    {"d": details, "p": prev, "h": digest, "s": row.seq},
                )
                prev = digest
            conn.execute(text("UPDATE tether_audit_head SET hash = :h"), {"h": prev})
    finally:
        store.close()


def test_a_keyed_log_rewritten_whole_unkeyed_fails_verify_require_keyed(
    store_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TETHER_AUDIT_KEY", "s3cret")
    record_entries(store_url, 3)
    assert verify(store_url, b"s3cret").unkeyed == 0
    _rewrite_unkeyed(store_url, '{"role":"viewer"}')
    # The chain holds as an unkeyed one: nothing in it tells a rewrite from a log written
    # before the key was set. Verify says so, and --require-keyed refuses it.
    plain = run_cli("--database-url", store_url, "audit", "verify")
    assert plain.returncode == 0, plain.stderr
    assert "entries 1 to 3 are not keyed" in plain.stdout
    strict = run_cli("--database-url", store_url, "audit", "verify", "--require-keyed")
    assert strict.returncode == 1
    assert "unkeyed at entry 1" in strict.stderr and "3 entries are not" in strict.stderr
    as_json = run_cli("--database-url", store_url, "audit", "verify", "--require-keyed", "--json")
    assert as_json.returncode == 1
    body = json.loads(as_json.stdout)
    assert body["unkeyed"] == 3 and body["problem"]["kind"] == "unkeyed"
    monkeypatch.delenv("TETHER_AUDIT_KEY")
    keyless = run_cli("--database-url", store_url, "audit", "verify", "--require-keyed")
    assert keyless.returncode == 2 and "needs the key" in keyless.stderr


def test_cli_verify_and_list(sqlite_url: str, tmp_path: Path) -> None:
    record_entries(sqlite_url, 3)
    ok = run_cli("--database-url", sqlite_url, "audit", "verify", "--json")
    assert ok.returncode == 0, ok.stderr
    body = json.loads(ok.stdout)
    assert body.pop("head").startswith("3:")
    assert body == {"ok": True, "entries": 3, "unkeyed": 3}
    listed = run_cli("--database-url", sqlite_url, "audit", "list", "--json")
    entries = json.loads(listed.stdout)["entries"]
    assert [e["seq"] for e in entries] == [1, 2, 3]
    assert entries[1]["prev_hash"] == entries[0]["hash"]
    tamper(sqlite_url, "UPDATE tether_audit SET kind = 'key_revoked' WHERE seq = 2")
    bad = run_cli("--database-url", sqlite_url, "audit", "verify")
    assert bad.returncode == 1
    assert "edited at entry 2" in bad.stderr
    bad_json = run_cli("--database-url", sqlite_url, "audit", "verify", "--json")
    assert bad_json.returncode == 1
    assert json.loads(bad_json.stdout)["problem"]["kind"] == "edited"


def test_cli_verify_of_a_store_that_does_not_exist_fails(tmp_path: Path) -> None:
    """A mistyped path (or a TETHER_HOME the writers do not use) was read as an empty store
    and verified as "0 entries, chain intact" with exit 0, whatever the real log holds."""
    typo = tmp_path / "var" / "tehter.db"
    for extra in ((), ("--json",)):
        done = run_cli("--database-url", f"sqlite:///{typo}", "audit", "verify", *extra)
        assert done.returncode == 1, done.stdout
        said = json.loads(done.stdout)["error"] if extra else done.stderr
        assert f"no store at {typo}" in said and "chain intact" not in done.stdout
    assert not typo.parent.exists()  # nothing made there either


def test_cli_list_shows_one_line_per_entry_whatever_its_values_hold(sqlite_url: str) -> None:
    """A value may hold newlines (an approval's reason is free text, sent over the API by any
    developer key): listed raw, one could print a line that reads as another entry of the log.
    Each entry is one line; the newline is shown as ``\\n`` (``--json`` keeps the text)."""
    forged = "ok\n     9  approval       approver=ceo,via=cli  approved=True  0123456789ab"
    log = AuditLog(writer_for(sqlite_url))
    log.record("approval", {"approver": "mallory\nx", "via": "api"}, {"reason": forged})
    log.record("key_created", {"project": "default"}, {"role": "admin\tx"})
    assert log.flush()
    listed = run_cli("--database-url", sqlite_url, "audit", "list")
    assert listed.returncode == 0, listed.stderr
    lines = listed.stdout.splitlines()
    assert [line.split()[0] for line in lines] == ["1", "2"], listed.stdout
    assert "reason=ok\\n     9  approval" in lines[0] and "approver=mallory\\nx" in lines[0]
    assert "role=admin\tx" in lines[1]  # a tab breaks no line
    kept = json.loads(run_cli("--database-url", sqlite_url, "audit", "list", "--json").stdout)
    assert kept["entries"][0]["details"]["reason"] == forged


async def test_a_denied_tool_call_and_the_policy_load_are_audited(
    tmp_path: Path, sqlite_url: str
) -> None:
    agent = Agent.from_yaml(make_agent_dir(tmp_path), trace=sqlite_url)
    result = await agent.run("please refund 5000 on 7")
    assert writer_for(sqlite_url).flush()
    store = Store(sqlite_url)
    with store.engine.connect() as conn:
        entries = [e for e, _a, _d in iter_audit(conn)]
        assert verify_audit(conn, None).ok
    store.close()
    load, decision = entries
    assert load.kind == "policy_load"
    assert load.details["policies"] == [
        "refund-approval",
        "refund-limit",
        "small-refunds",
        "support-lookups",
    ]
    assert (
        load.details["content_hash"]
        == hashlib.sha256(canonical_json(POLICIES).encode()).hexdigest()
    )
    assert decision.kind == "decision"
    assert decision.run_id == result.run_id
    assert decision.details == {
        "control": "cedar_authorization",
        "hook": "before_tool",
        "verdict": "block",
        "reason": "tool 'issue_refund' denied by Cedar policy refund-limit",
        "tool": "issue_refund",
    }
    assert decision.actor["agent"] == "support" and decision.actor["project"] == "default"


RACER = textwrap.dedent(
    """
    import sys
    from tether.trace import AuditLog, writer_for
    url, name, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
    log = AuditLog(writer_for(url))
    for i in range(n):
        log.record("key_created", {"key_id": f"{name}{i}"}, {})
        if i % 10 == 0:
            log.flush()
    assert log.flush()
    """
)


def race_appends(url: str, each: int) -> None:
    """Two processes appending ``each`` entries at once (``RACER``); both end well."""
    children = [
        subprocess.Popen([sys.executable, "-c", RACER, url, name, str(each)]) for name in ("a", "b")
    ]
    for child in children:
        assert child.wait(timeout=120) == 0


def test_two_processes_appending_at_once_keep_one_chain(store_url: str) -> None:
    race_appends(store_url, 150)
    report = verify(store_url)
    assert report.ok, report.problem
    assert report.entries == 300


def test_verify_while_another_process_appends_finds_no_tampering(store_url: str) -> None:
    # verify read the entries, then the head row, apart: an entry appended in between read
    # as "entries N to M are missing from the end" (a false alarm, exit 1).
    record_entries(store_url, 1)
    writer = subprocess.Popen([sys.executable, "-c", RACER, store_url, "w", "100000"])
    store = Store(store_url)
    try:
        reports = []
        with store.engine.connect() as conn:
            start = verify_audit(conn, None).head_seq
        while len(reports) < 60 or reports[-1].head_seq < start + 200:
            assert writer.poll() is None, "the writer stopped before the verifies were done"
            with store.engine.connect() as conn:
                reports.append(verify_audit(conn, None))
    finally:
        writer.kill()
        writer.wait(timeout=60)
        store.close()
    assert reports[-1].head_seq > reports[0].head_seq  # the writer appended meanwhile
    problems = [r.problem for r in reports if r.problem is not None]
    assert problems == []


KILLED = textwrap.dedent(
    """
    import os, signal, sys
    from tether.trace import AuditLog, writer_for
    entry = AuditLog(writer_for(sys.argv[1])).record("key_revoked", {"key_id": "k1"}, {})
    print(entry.entry_id, flush=True)
    os.kill(os.getpid(), signal.SIGKILL)  # before the writer's thread has written it
    """
)


def test_an_entry_accepted_by_a_process_killed_at_once_is_written_once(sqlite_url: str) -> None:
    child = subprocess.run(
        [sys.executable, "-c", KILLED, sqlite_url], capture_output=True, text=True, timeout=60
    )
    assert child.returncode == -9
    entry_id = child.stdout.strip()
    assert writer_for(sqlite_url).flush()  # the next writer replays the dead one's journal
    store = Store(sqlite_url)
    with store.engine.connect() as conn:
        ids = [e.entry_id for e, _a, _d in iter_audit(conn)]
        assert verify_audit(conn, None).ok
    store.close()
    assert ids == [entry_id]


def test_admin_changes_join_the_audit_log(tmp_path: Path) -> None:
    """Projects made and keys made or revoked (here from the CLI) are audit entries, and the
    chain stays valid."""
    url = f"sqlite:///{tmp_path / 'admin.db'}"
    env = {**os.environ, "TETHER_HOME": str(tmp_path / "home")}
    assert run_cli("--database-url", url, "projects", "create", "shop", env=env).returncode == 0
    made = run_cli(
        "--database-url",
        url,
        "keys",
        "create",
        "--project",
        "shop",
        "--role",
        "viewer",
        "--json",
        env=env,
    )
    assert made.returncode == 0, made.stderr
    key_id = json.loads(made.stdout)["key_id"]
    assert run_cli("--database-url", url, "keys", "revoke", key_id, env=env).returncode == 0
    listed = run_cli("--database-url", url, "audit", "list", "--json", env=env)
    assert listed.returncode == 0, listed.stderr
    entries = json.loads(listed.stdout)
    entries = entries["entries"] if isinstance(entries, dict) else entries
    kinds = [e["kind"] for e in entries]
    assert kinds == ["project_created", "key_created", "key_revoked"]
    assert all(key_id not in json.dumps(e["actor"]) for e in entries)
    assert entries[1]["details"]["key_id"] == key_id and "tth_" not in json.dumps(entries)
    verified = run_cli("--database-url", url, "audit", "verify", env=env)
    assert verified.returncode == 0, verified.stdout + verified.stderr


def test_a_writer_session_killed_inside_its_audit_transaction_loses_nothing(pg_url: str) -> None:
    """PostgreSQL ends the writer's session while it waits inside its append transaction (the
    head row is held by another session): the writer reconnects and appends every entry once,
    after the other session's entry, and the chain stays valid."""
    import threading
    import time

    import psycopg

    Store(pg_url).close()
    conninfo = pg_url.replace("postgresql+psycopg://", "postgresql://").split("?")[0]
    schema = pg_url.rsplit("search_path%3D", 1)[1]
    log = AuditLog(writer_for(pg_url))
    holder = psycopg.connect(conninfo)
    try:
        holder.execute(f'SELECT seq FROM "{schema}".tether_audit_head WHERE id = 1 FOR UPDATE')
        entries = [log.record("key_created", {"key_id": f"k{i}"}, {"n": i}) for i in range(20)]
        with psycopg.connect(conninfo, autocommit=True) as admin:
            deadline = time.monotonic() + 30
            pids: list[int] = []
            while not pids and time.monotonic() < deadline:
                pids = [
                    row[0]
                    for row in admin.execute(
                        "SELECT pid FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                        "AND query ILIKE %s AND pid <> %s",
                        ("%tether_audit_head%", holder.info.backend_pid),
                    )
                ]
                time.sleep(0.05)
            assert pids, "the writer never waited on the audit head"
            for pid in pids:
                admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
        released = threading.Timer(0.5, holder.rollback)
        released.start()
        assert log.flush(60), getattr(log.sink, "last_error", None)
        released.join()
    finally:
        holder.close()
    store = Store(pg_url)
    try:
        with store.engine.connect() as conn:
            ids = [e.entry_id for e, _a, _d in iter_audit(conn)]
            report = verify_audit(conn, None)
    finally:
        store.close()
    assert report.ok, report.problem
    assert ids == [e.entry_id for e in entries if e is not None]


def test_an_anchor_finds_entries_cut_off_the_end_and_a_log_written_again(
    sqlite_url: str,
) -> None:
    """What the chain alone cannot show: the head row set back with the entries after it
    deleted, or a log rewritten whole. The head printed by an earlier verify, given back
    with ``--anchor``, shows both."""
    record_entries(sqlite_url, 4)
    first = run_cli("--database-url", sqlite_url, "audit", "verify", "--json")
    head = json.loads(first.stdout)["head"]
    seq, digest = head.split(":")
    assert seq == "4" and len(digest) == 64
    shown = run_cli("--database-url", sqlite_url, "audit", "verify")
    assert f"head {head}" in shown.stdout and f"--anchor {head}" in shown.stdout
    again = run_cli("--database-url", sqlite_url, "audit", "verify", "--anchor", head)
    assert again.returncode == 0, again.stderr

    # Entries 3 and 4 cut off and the head row set back to entry 2: the chain holds.
    store = Store(sqlite_url)
    try:
        with store.engine.begin() as conn:
            (hash2,) = conn.exec_driver_sql("SELECT hash FROM tether_audit WHERE seq = 2").one()
    finally:
        store.close()
    tamper(sqlite_url, "DELETE FROM tether_audit WHERE seq > 2")
    tamper(sqlite_url, f"UPDATE tether_audit_head SET seq = 2, hash = '{hash2}'")
    plain = run_cli("--database-url", sqlite_url, "audit", "verify")
    assert plain.returncode == 0  # what the chain cannot show
    cut = run_cli("--database-url", sqlite_url, "audit", "verify", "--anchor", head)
    assert cut.returncode == 1
    assert "cut at entry 4" in cut.stderr and "the log ends at entry 2" in cut.stderr
    as_json = run_cli("--database-url", sqlite_url, "audit", "verify", "--anchor", head, "--json")
    assert json.loads(as_json.stdout)["problem"]["kind"] == "cut"
    # An anchor on an entry still there, with another hash: written again up to it.
    other = run_cli("--database-url", sqlite_url, "audit", "verify", "--anchor", f"2:{'0' * 64}")
    assert other.returncode == 1 and "rewritten at entry 2" in other.stderr
    ok = run_cli("--database-url", sqlite_url, "audit", "verify", "--anchor", f"2:{hash2.upper()}")
    assert ok.returncode == 0, ok.stderr


@pytest.mark.parametrize(
    "anchor", ["4", "x:ab", "0:" + "a" * 64, "²:" + "a" * 64, "3:abc", "3:" + "g" * 64]
)
def test_a_malformed_anchor_is_a_usage_error(sqlite_url: str, anchor: str) -> None:
    record_entries(sqlite_url, 1)
    bad = run_cli("--database-url", sqlite_url, "audit", "verify", "--anchor", anchor)
    assert bad.returncode == 2 and "--anchor" in bad.stderr and "Traceback" not in bad.stderr


def test_an_entry_of_any_text_is_kept_and_verifies(store_url: str) -> None:
    """Values the columns cannot keep as given: a lone surrogate (JSON carries one:
    ``"\\ud800"``; UTF-8 cannot encode it), a kind past its 64 characters or holding a NUL,
    ids past their columns. Each entry is kept as stored and its hash covers that: the
    surrogates' entries were skipped ("cannot be serialized") while the log verified intact
    without them, and a long kind was clipped when stored but hashed whole, so an untouched
    log failed verify from that entry on."""
    log = AuditLog(writer_for(store_url))
    log.record("key_created", {"project": "default", "key_id": "k\udcff"}, {"note": "x\ud800"})
    log.record("k" * 70, {"project": "default"}, {"n": 1})
    log.record("key\x00revoked", {"project": "default"}, {"n": 2}, run_id="r" * 40)
    log.record("key_created", {"project": "default"}, {"n": 3})
    assert log.flush()
    store = Store(store_url)
    try:
        with store.engine.connect() as conn:
            entries = [e for e, _a, _d in iter_audit(conn)]
            report = verify_audit(conn, None)
    finally:
        store.close()
    assert report.ok, report.problem
    assert [e.kind for e in entries] == ["key_created", "k" * 64, "key\ufffdrevoked", "key_created"]
    assert entries[0].actor["key_id"] == "k\ufffd" and entries[0].details == {"note": "x\ufffd"}
    assert entries[2].run_id == "r" * 16 and entries[3].details == {"n": 3}


def test_verifying_a_long_log_holds_a_chunk_of_it_in_memory_not_all(tmp_path: Path) -> None:
    """A busy gateway's log holds millions of entries (every refusal is one): verify walks
    it a chunk at a time. It kept every entry read (about 1.7 kB each: 1.7 GB a million)."""
    import tracemalloc

    from tether.store.audit import append_audit
    from tether.store.records import AuditRecord

    url = f"sqlite:///{tmp_path / 'long.db'}"
    store = Store(url)
    try:
        with store.engine.begin() as conn:
            for part in range(4):
                append_audit(
                    conn,
                    [
                        AuditRecord(
                            entry_id=f"{part:04d}{i:028d}",
                            time_ns=i,
                            kind="decision",
                            actor={"project": "default", "end_user": f"user-{i}"},
                            details={"verdict": "block", "reason": "rate limit reached " * 8},
                        )
                        for i in range(10_000)
                    ],
                    None,
                )
        reports = []
        for edit in ("", "UPDATE tether_audit SET details = '{}' WHERE seq = 3"):
            if edit:  # a break the entries around it must tell: read again, not held
                tamper(url, edit)
            with store.engine.connect() as conn:
                tracemalloc.start()
                reports.append(verify_audit(conn, None))
                peak = tracemalloc.get_traced_memory()[1]
                tracemalloc.stop()
            assert peak < 24 * 2**20, f"verify held {peak / 2**20:.0f} MiB for 40,000 entries"
    finally:
        store.close()
    ok, moved = reports
    assert ok.ok and ok.entries == 40_000, ok.problem
    assert moved.problem is not None
    assert (moved.problem.kind, moved.problem.seq) == ("edited", 3), moved.problem


def test_a_key_of_bytes_that_are_not_utf8_keys_the_entries(
    sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``export TETHER_AUDIT_KEY=$(head -c 32 /dev/urandom | tr -d '\\0')``: Python holds such
    bytes as lone surrogates, which the key's UTF-8 encoding refused, so every entry was
    skipped ("cannot be serialized") and verify ended in "unexpected error"."""
    monkeypatch.setenv("TETHER_AUDIT_KEY", os.fsdecode(b"k\xff\xfe\x80ey"))
    record_entries(sqlite_url, 2)
    report = verify(sqlite_url, os.fsencode(os.environ["TETHER_AUDIT_KEY"]))
    assert report.ok and report.entries == 2 and report.unkeyed == 0, report.problem
    done = run_cli("--database-url", sqlite_url, "audit", "verify", "--require-keyed")
    assert done.returncode == 0, done.stderr
    assert "2 entries, chain intact" in done.stdout


def test_entries_appended_after_the_head_row_was_deleted_are_kept(store_url: str) -> None:
    """Someone deleted the chain's head row: every later append was refused by the store and
    its entry skipped (lost). The writer puts the row back from the last stored entry (once,
    whoever of two racing processes comes first), records that it did, and goes on."""
    record_entries(store_url, 3)
    tamper(store_url, "DELETE FROM tether_audit_head")
    race_appends(store_url, 40)
    report = verify(store_url)
    assert report.ok, report.problem
    store = Store(store_url)
    try:
        with store.engine.connect() as conn:
            entries = [e for e, _actor, _details in iter_audit(conn, after=None)]
    finally:
        store.close()
    kinds = [e.kind for e in entries]
    assert kinds.count("audit_head_restored") == 1
    assert kinds.count("key_created") == 3 + 80
    restored = entries[kinds.index("audit_head_restored")]
    assert restored.seq == 4 and restored.details["seq"] == 3
