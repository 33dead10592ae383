"""The ceiling of `mnist serve`'s throughput on this machine: a bare FastAPI endpoint under
uvicorn that only parses the JSON body of a request and answers a constant.

    python -m bench.serve_ceiling -p PORT

`bench.serve_latency` loads it with the same client, body and settings as the real servers:
what no model, validation or prediction log costs.
"""

from __future__ import annotations

import argparse

import uvicorn
from fastapi import FastAPI, Request

app = FastAPI(title="ceiling")


@app.post("/predict")
async def predict(request: Request) -> dict:
    """Parse the body, answer a constant."""
    await request.json()
    return {"ok": True}


@app.get("/healthz")
async def healthz() -> dict:
    return {"status": "ok"}


def main() -> None:
    p = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    p.add_argument("-p", "--port", type=int, required=True)
    args = p.parse_args()
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
