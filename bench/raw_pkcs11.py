"""Raw python-pkcs11 signing throughput on SoftHSM2: the ceiling the HTTP service can reach.

``raw_sign_rate`` runs N spawned processes; each logs in once, signs one fixed digest in a
tight loop for ``seconds`` (the loop starts on a shared barrier) and reports ops/s; the sum
is returned. No asyncio, no executor hop: only C_SignInit/C_Sign plus python-pkcs11's
wrapping. ``hsm_sign_rate`` measures the same through :class:`rssp.hsm.Hsm` for comparison.

Run ``python bench/raw_pkcs11.py [--seconds S]`` to create a temporary token with an
RSA-2048 and an EC P-256 key and print rates for 1 and 2 processes.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import multiprocessing as mp
import os
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make ``rssp`` importable from the repo
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from rssp.hsm import DEFAULT_MODULE, Hsm, KeySpec, SignMechanism, init_softhsm_instance
from rssp.hsm.plans import sign_plan
from rssp.hsm.types import HASH_LEN

LOGIN_ATTEMPTS = 20


def _login(lib: Any, label: str, pin: str) -> Any:
    """Log in with backoff: simultaneous logins of two processes to one token can fail.

    When two processes C_Initialize SoftHSM2 at the same moment, one can come up without the
    token in its slot list (NoSuchToken), and no retry on that initialised library finds it:
    re-initialise the library before each retry.
    """
    import pkcs11.exceptions as p11e

    delay = 0.05
    for attempt in range(LOGIN_ATTEMPTS):
        try:
            return lib.get_token(token_label=label).open(rw=True, user_pin=pin)
        except (p11e.PinIncorrect, p11e.PinLocked):
            raise
        except p11e.PKCS11Error:
            if attempt == LOGIN_ATTEMPTS - 1:
                raise
            time.sleep(delay * random.uniform(0.5, 1.5))
            delay = min(delay * 2, 1.0)
            with contextlib.suppress(p11e.PKCS11Error):
                lib.reinitialize()
    raise AssertionError("unreachable")


def _sign_loop(
    module: str,
    conf: str,
    label: str,
    pin: str,
    key_id: str,
    mechanism: SignMechanism,
    seconds: float,
    barrier: Any,
    results: Any,
) -> None:
    """One benchmark process: login, warm up, wait for the others, sign until the deadline."""
    os.environ["SOFTHSM2_CONF"] = conf
    import pkcs11
    from pkcs11 import ObjectClass

    session = _login(pkcs11.lib(module), label, pin)
    key = session.get_key(object_class=ObjectClass.PRIVATE_KEY, id=bytes.fromhex(key_id))
    plan = sign_plan(mechanism, key.key_type)
    data = plan.prepare(b"\x5a" * HASH_LEN[mechanism.hash])
    kwargs: dict[str, Any] = {"mechanism": plan.mechanism}
    if plan.param is not None:
        kwargs["mechanism_param"] = plan.param
    key.sign(data, **kwargs)
    barrier.wait()
    count, start = 0, time.perf_counter()
    deadline = start + seconds
    while True:
        key.sign(data, **kwargs)
        count += 1
        now = time.perf_counter()
        if now >= deadline:
            break
    results.put(count / (now - start))
    session.close()


def raw_sign_rate(
    module: str,
    conf: str,
    label: str,
    pin: str,
    key_id: str,
    mechanism: SignMechanism,
    seconds: float,
    processes: int,
) -> float:
    """Signatures per second summed over ``processes`` spawned processes signing concurrently.

    Spawn (not fork) so that no child inherits an initialised PKCS#11 library.
    """
    ctx = mp.get_context("spawn")
    barrier = ctx.Barrier(processes)
    results = ctx.Queue()
    args = (module, conf, label, pin, key_id, mechanism, seconds, barrier, results)
    workers = [ctx.Process(target=_sign_loop, args=args) for _ in range(processes)]
    for worker in workers:
        worker.start()
    rates = [results.get(timeout=seconds + 60) for _ in workers]
    for worker in workers:
        worker.join()
        if worker.exitcode != 0:
            raise RuntimeError(f"benchmark process failed with exit code {worker.exitcode}")
    return sum(rates)


async def hsm_sign_rate(
    hsm: Hsm, key_id: str, mechanism: SignMechanism, seconds: float, batch: int
) -> float:
    """Signatures per second through :class:`Hsm` in this process (``batch`` > 1: sign_many)."""
    digests = [bytes([i % 256]) * HASH_LEN[mechanism.hash] for i in range(batch)]
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        if batch == 1:
            await hsm.sign(key_id, mechanism, digests[0])
        else:
            await hsm.sign_many(key_id, mechanism, digests)
        count += batch
    return count / (time.perf_counter() - start)


CASES = [
    ("RSA-2048 PKCS#1 v1.5", "rsa-2048", SignMechanism("pkcs1v15", "sha256")),
    ("RSA-2048 PSS", "rsa-2048", SignMechanism("pss", "sha256", "sha256", 32)),
    ("ECDSA P-256", "ec-p256", SignMechanism("ecdsa", "sha256")),
]


async def _make_keys(conf: Path, label: str, pin: str, seconds: float) -> dict[str, str]:
    """Generate the benchmark keys and print the in-process Hsm rates for comparison."""
    async with Hsm(DEFAULT_MODULE, label, pin, str(conf)) as hsm:
        key_ids = {
            spec: (await hsm.generate_key_pair(KeySpec.parse(spec), spec)).key_id
            for spec in ("rsa-2048", "ec-p256")
        }
        for name, spec, mech in CASES:
            one = await hsm_sign_rate(hsm, key_ids[spec], mech, seconds, 1)
            many = await hsm_sign_rate(hsm, key_ids[spec], mech, seconds, 50)
            print(f"{name:22} Hsm.sign {one:9,.0f}/s   Hsm.sign_many(50) {many:9,.0f}/s")
    return key_ids


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0)
    args = parser.parse_args()
    label, pin = "bench", "123456"
    with tempfile.TemporaryDirectory(prefix="rssp-bench-") as tmp:
        conf = init_softhsm_instance(Path(tmp), label, "12345678", pin)
        key_ids = asyncio.run(_make_keys(conf, label, pin, args.seconds))
        for name, spec, mech in CASES:
            rates = [
                raw_sign_rate(DEFAULT_MODULE, str(conf), label, pin, key_ids[spec], mech,
                              args.seconds, n)
                for n in (1, 2)
            ]
            print(f"{name:22} raw 1 process {rates[0]:9,.0f}/s   2 processes {rates[1]:9,.0f}/s")


if __name__ == "__main__":
    main()
