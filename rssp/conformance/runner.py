"""Running the profiles and printing the table: ``rssp conformance URL …``.

Exit status 0 when every step of every profile run passed, 1 otherwise. ``--json`` prints the
rows as JSON instead of the table.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass

import aiohttp

from rssp.conformance import profiles_eudi, profiles_v1
from rssp.conformance.session import OtpClock, Run, Step, StepFailed, Target


@dataclass(frozen=True)
class Profile:
    title: str
    run: Callable[[Run], Awaitable[None]]


PROFILES = {
    "pyhanko": Profile("pyHanko CSCSigner (CSC v1.0.4)", profiles_v1.pyhanko),
    "documenso": Profile("documenso (CSC v1.0.4, OAuth, base64url hashes, no credentials/authorize)",
                         profiles_v1.documenso),
    "csc-v2.0": Profile("CSC v2.0 explicit authorization (auth/login, credentials/authorize)", profiles_v1.csc_v2_0),
    "eudi-kotlin": Profile("EUDI rqes-csc Kotlin (CSC v2.2, PAR, RAR)", profiles_eudi.eudi_kotlin),
    "eudi-swift": Profile("EUDI rqes-csc Swift (CSC v2.2, snake_case signHash)", profiles_eudi.eudi_swift),
    "eudi-rp": Profile("EUDI relying party (CSC v2.2 credentials/create and delete)", profiles_eudi.eudi_rp_lifecycle),
}


async def run_profiles(target: Target, names: list[str], *, request_timeout: float = 120,
                       otp: OtpClock | None = None) -> list[Step]:
    """Run each named profile in order; a failed step ends its profile, not the run.

    One ``otp`` clock for all of them (and for anything else that uses the same TOTP seed in
    this process): the server accepts each time step once.
    """
    steps: list[Step] = []
    otp = otp or OtpClock()
    jar = aiohttp.CookieJar(unsafe=True)  # loopback servers keep their login cookies too
    async with aiohttp.ClientSession(cookie_jar=jar, timeout=aiohttp.ClientTimeout(total=request_timeout)) as http:
        for name in names:
            run = Run(http, target, steps, otp, profile=name)
            try:
                await PROFILES[name].run(run)
            except StepFailed:
                pass  # recorded by the step
            except (aiohttp.ClientError, TimeoutError, OSError) as exc:
                run.record("(connection)", False, f"{type(exc).__name__}: {exc}")
            except (KeyError, TypeError, ValueError, IndexError) as exc:
                run.record("(answer)", False, f"an answer the client cannot use: {type(exc).__name__}: {exc}")
            jar.clear()
    return steps


def table(steps: list[Step]) -> str:
    """One row per step: profile, method, PASS / FAIL / n/a, detail."""
    rows = [("profile", "method", "result", "detail")]
    for s in steps:
        result = "n/a" if s.ok is None else ("PASS" if s.ok else "FAIL")
        rows.append((s.profile, s.method + (" (setup)" if s.setup else ""), result, s.detail))
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    lines = [f"{r[0]:<{widths[0]}}  {r[1]:<{widths[1]}}  {r[2]:<{widths[2]}}  {r[3]}" for r in rows]
    lines.insert(1, "-" * min(160, sum(widths) + 40))
    failed = sum(1 for s in steps if s.ok is False)
    lines.append(f"\n{len(steps)} steps, {failed} failed")
    return "\n".join(lines)


def passed(steps: list[Step]) -> bool:
    return bool(steps) and all(s.ok is not False for s in steps)


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("conformance", help="run the request sequences of real CSC clients against a CSC server "
                                           "and print a pass/fail table (docs/conformance-kit.md)")
    p.add_argument("url", help="the server's root URL, e.g. https://rssp.example (methods under /csc/v1, /csc/v2)")
    p.add_argument("--user", required=True, help="the signer's user name")
    p.add_argument("--password", required=True, help="the signer's password")
    p.add_argument("--pin", help="the credential's PIN")
    p.add_argument("--totp-seed", help="the credential's TOTP seed (base32), for credentials that need an OTP")
    p.add_argument("--credential", help="the credential to sign with (default: the first listed)")
    p.add_argument("--client-id", help="an OAuth client registered with the server (OAuth profiles)")
    p.add_argument("--client-secret", help="its secret (confidential client)")
    p.add_argument("--redirect-uri", help="its registered redirect URI")
    p.add_argument("--certificate-policy", help="certificatePolicy for credentials/create (default: the EUDI "
                                                "client's 0.4.0.194112.1.2)")
    p.add_argument("--profile", action="append", choices=sorted(PROFILES), help="run only these (repeatable)")
    p.add_argument("--manual-oauth", action="store_true", help="sign in with a browser: print the URL, read the "
                                                                 "redirect URL from stdin")
    p.add_argument("--v1-path", default="/csc/v1")
    p.add_argument("--v2-path", default="/csc/v2")
    p.add_argument("--json", action="store_true", help="print the rows as JSON")
    p.set_defaults(func=_command)


async def _command(args: argparse.Namespace) -> int:
    target = Target(args.url, args.user, args.password, args.pin, args.totp_seed, args.credential, args.client_id,
                    args.client_secret, args.redirect_uri, args.certificate_policy, args.manual_oauth,
                    args.v1_path, args.v2_path)
    steps = await run_profiles(target, args.profile or list(PROFILES))
    if args.json:
        print(json.dumps([asdict(s) for s in steps], indent=2, ensure_ascii=False))
    else:
        for name in args.profile or list(PROFILES):
            print(f"{name}: {PROFILES[name].title}")
        print()
        print(table(steps))
    return 0 if passed(steps) else 1
