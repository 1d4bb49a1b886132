"""Regenerate ``src/tether/guards/tlds.txt`` from the Public Suffix List that ``tldextract``
bundles (run in ``.bench-venv``, which has it through Presidio)::

    .bench-venv/bin/python scripts/guards_tlds.py

The list's ICANN section gives every top-level domain; each Unicode one is also written in its
punycode (``xn--``) form. The file notes the list's version and license (MPL-2.0).
"""

from __future__ import annotations

import pkgutil
from pathlib import Path

OUT = Path(__file__).resolve().parent.parent / "src" / "tether" / "guards" / "tlds.txt"


def main() -> None:
    raw = pkgutil.get_data("tldextract", ".tld_set_snapshot")
    if raw is None:
        raise SystemExit("tldextract has no bundled suffix list")
    text = raw.decode("utf-8")
    version = next(line for line in text.splitlines() if line.startswith("// VERSION:"))
    icann = text.split("// ===BEGIN ICANN DOMAINS===")[1].split("// ===END ICANN DOMAINS===")[0]
    tlds: set[str] = set()
    for line in icann.splitlines():
        rule = line.strip()
        if rule and not rule.startswith("//"):
            tlds.add(rule.lstrip("!*.").rsplit(".", 1)[-1].lower())
    tlds |= {t.encode("idna").decode("ascii") for t in tlds if not t.isascii()}
    header = (
        "# Top-level domains: the ICANN section of the Public Suffix List\n"
        "# (https://publicsuffix.org/list/, Mozilla Public License 2.0),\n"
        f"# {version.removeprefix('// ').strip()}, as bundled in tldextract; Unicode TLDs also\n"
        "# in punycode. Regenerate with scripts/guards_tlds.py.\n"
    )
    OUT.write_text(header + "\n".join(sorted(tlds)) + "\n", encoding="utf-8")
    print(f"{OUT}: {len(tlds)} top-level domains")


if __name__ == "__main__":
    main()
