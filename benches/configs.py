#!/usr/bin/env python3
"""Writes the gateway benches' two other configurations, derived from
conf/demo.yaml so that they never drift from it:

  limits.yaml    the demo, with every limit of the pro plan on and far from
                 reached (rpm, rpm by class, rph, daily messages, input TPM,
                 concurrency): each call goes through every counter.
  unbilled.yaml  the demo without accounts, plans, store, billing and admin:
                 its keys are a plain key ring and nothing is billed.

  python3 benches/configs.py OUTDIR
"""
import pathlib
import re
import sys

root = pathlib.Path(__file__).resolve().parent.parent
demo = (root / "conf" / "demo.yaml").read_text()
out = pathlib.Path(sys.argv[1])
out.mkdir(parents=True, exist_ok=True)

LIMITS = """    limits:
      rpm: 100000000
      rpm_by_class: { gpt: 100000000 }
      rph: { messages: 1000000000, responses: 1000000000 }
      daily_messages: 1000000000
      input_tpm: 1000000000000
      concurrent: 100000
"""
anchor = "    default_model: openai/gpt-5.5   # for seed 002's /chat without a model\n"
assert anchor in demo, "conf/demo.yaml's pro plan changed: update benches/configs.py"
(out / "limits.yaml").write_text(demo.replace(anchor, anchor + LIMITS, 1))


def drop_section(text: str, name: str) -> str:
    """Removes a top-level YAML section with everything indented under it."""
    return re.sub(rf"(?m)^{name}:\n(?:(?:[ #].*)?\n)*", "", text)


unbilled = demo
for section in ("plans", "accounts", "store", "billing", "admin"):
    unbilled = drop_section(unbilled, section)
unbilled = re.sub(r"(?m)^    account: demo\n", "", unbilled)
assert "accounts:" not in unbilled and "account: demo" not in unbilled
(out / "unbilled.yaml").write_text(unbilled)
