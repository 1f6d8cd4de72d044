"""Route support tickets to queues with no training: each ticket goes to the nearest label.

    python examples/classify_zero_shot.py [--model MODEL] [TICKET ...]

A label is a name, or ``name: description`` — the description is what gets embedded.
"""

from __future__ import annotations

import argparse
import os

import qembed

LABELS = [
    "billing: invoices, charges, card payments and refunds",
    "shipping: delivery, parcels, couriers and tracking",
    "login: passwords, sign-in and account access",
]
TICKETS = [
    "I was charged twice for the same order",
    "The courier left my parcel at the wrong house",
    "I cannot sign in since I changed my password",
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("tickets", nargs="*", default=TICKETS)
    parser.add_argument("--model", "-m", default=os.environ.get("QEMBED_MODEL", qembed.DEFAULT_MODEL))
    args = parser.parse_args()

    encoder = qembed.load_encoder(args.model)
    for ticket, result in zip(args.tickets, qembed.zero_shot(encoder, args.tickets, LABELS, top_k=2)):
        runner_up = result["labels"][1]
        print(f"{result['label']:9} {result['score']:.3f}  (next: {runner_up['label']} "
              f"{runner_up['score']:.3f})  {ticket}")


if __name__ == "__main__":
    main()
