"""Call qembed's OpenAI-compatible server with the openai client (and with qembed's own client).

    python examples/serve_openai.py [--model MODEL]      # starts a server on a free local port
    python examples/serve_openai.py --url http://127.0.0.1:30000   # uses a running `qembed serve`

Needs the ``openai`` package (``pip install openai``).
"""

from __future__ import annotations

import argparse
import contextlib
import os

import numpy as np
import openai

import qembed
from qembed.server.testing import running_server

TEXTS = ["how do I reset my password", "my parcel has not arrived yet"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", "-m", default=os.environ.get("QEMBED_MODEL", qembed.DEFAULT_MODEL))
    parser.add_argument("--url", help="a running server (default: start one here)")
    args = parser.parse_args()

    local = None
    with contextlib.ExitStack() as stack:
        if args.url:
            url = args.url.rstrip("/")
        else:
            local = qembed.load_encoder(args.model)
            url = stack.enter_context(running_server(encoder=local))
            print(f"serving {local.name} at {url}")

        client = openai.Client(base_url=f"{url}/v1", api_key="EMPTY")
        served = client.models.list().data[0].id
        response = client.embeddings.create(model=served, input=TEXTS)
        vectors = np.array([d.embedding for d in response.data], dtype=np.float32)
        print(f"openai client: {len(vectors)} vectors of size {vectors.shape[1]} from {served!r}, "
              f"{response.usage.prompt_tokens} tokens")

        # qembed's own client speaks the same API and applies instructions on the client side.
        remote = qembed.load_encoder(f"{url}/v1", model=served)
        same = remote.encode(TEXTS)
        print(f"qembed client: lowest cosine to the openai client's vectors {np.min(np.sum(same * vectors, axis=1)):.4f}")
        if local is not None:
            here = local.encode(TEXTS)
            print(f"in process: lowest cosine to the served vectors {np.min(np.sum(here * vectors, axis=1)):.4f}")


if __name__ == "__main__":
    main()
