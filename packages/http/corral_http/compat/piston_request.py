"""Reading a Piston v2 execute request: checked as Piston's own source (api/src/api/v2.js)
checks it, in its order and with its messages; every refusal is a PistonError, {"message": ...}.
"""

from __future__ import annotations

import base64
import binascii
import math
from typing import Any

from litestar.status_codes import HTTP_400_BAD_REQUEST

from corral_core.job import InputFile, Limits
from corral_core.policy import LimitRequest
from corral_core.submission import JobRequest
from corral_http.compat.languages import OfferedLanguage

MIB = 1024 * 1024


class PistonError(Exception):
    """An answer Piston gives as {"message": message}."""

    def __init__(self, status_code: int, message: str) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.message = message


def bad_request(message: str) -> PistonError:
    return PistonError(HTTP_400_BAD_REQUEST, message)


def _matches(version: str, selector: str) -> bool:
    """Whether a runtime's version satisfies a Piston version selector.

    Piston takes SemVer ranges; clients send an exact version, a wildcard ("*", "x") or a
    prefix ("3", "3.11", "3.x"). Those are understood; any other range matches nothing.
    """
    selector = selector.strip()
    if selector in {"*", "x", "X", ""}:
        return True
    wanted = selector.split(".")
    have = version.split(".")
    if len(wanted) > len(have):
        return False
    return all(part in {"*", "x", "X"} or part == have[index] for index, part in enumerate(wanted))


def _pick(languages: list[OfferedLanguage], language: str, version: str) -> OfferedLanguage | None:
    for lang in languages:  # newest version first per language
        aliases = lang.row.piston_aliases if lang.row else ()
        if (lang.runtime.language == language or language in aliases) and _matches(lang.runtime.version, version):
            return lang
    return None


def _decode_content(index: int, content: str, encoding: str) -> bytes:
    try:
        if encoding == "base64":
            return base64.b64decode(content, validate=True)
        if encoding == "hex":
            return bytes.fromhex(content)
    except (binascii.Error, ValueError):
        raise bad_request(f"files[{index}].content is not valid {encoding}") from None
    return content.encode("utf-8", "surrogatepass")


# Piston's limits in the order it checks them (the first wrong one is the one it names), each
# with the Corral limit it sets and, for the check, that limit's server maximum in Piston's units.
_LIMITS = (
    ("compile_memory_limit", "compile_memory_mb"),
    ("run_memory_limit", "memory_mb"),
    ("compile_timeout", "compile_wall_time_ms"),
    ("run_timeout", "wall_time_ms"),
    ("compile_cpu_time", "compile_cpu_time_ms"),
    ("run_cpu_time", "cpu_time_ms"),
)


LIMIT_NAMES = tuple(name for name, _ in _LIMITS)


def _skipped(value: Any) -> bool:
    """What Piston's `if (!value) continue` skips: absent, null, false, 0 and ""."""
    return value is None or value is False or value == "" or (isinstance(value, int | float) and value == 0)


def _limit(body: dict[str, Any], name: str, configured: int) -> int | None:
    value = body.get(name)
    if _skipped(value):
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise bad_request(f"If specified, {name} must be a number")
    if value == -1 and name.endswith("memory_limit"):
        # Piston's "no limit" (its default configuration's): the server's default here, never
        # unbounded.
        return None
    if value > configured:
        raise bad_request(f"{name} cannot exceed the configured limit of {configured}")
    if value < 0:
        raise bad_request(f"{name} must be non-negative")
    return math.ceil(value)


def _limits(body: dict[str, Any], maxima: Limits) -> LimitRequest:
    """Piston's limits as Corral's: milliseconds as they are; memory in bytes, which Piston
    hands to isolate in kilobytes of 1000 bytes, as mebibytes (at least 1)."""
    chosen: dict[str, int | None] = {}
    for name, field in _LIMITS:
        maximum = getattr(maxima, field)
        if name.endswith("memory_limit"):
            given = _limit(body, name, maximum * MIB)
            chosen[field] = None if given is None else max(1, math.ceil(given // 1000 / 1024))
        else:
            chosen[field] = _limit(body, name, maximum)
    return LimitRequest(**chosen)


def _files(files: list[Any]) -> tuple[str, tuple[InputFile, ...]]:
    """The code Piston runs (its first utf8 file) and the others, written beside it. An
    encoding Piston does not know is utf8 to it, but does not count as the utf8 file it wants."""
    for index, file in enumerate(files):
        for key in ("name", "encoding"):
            if file.get(key) is not None and not isinstance(file[key], str):
                raise bad_request(f"files[{index}].{key} must be a string")
    if not any(not file.get("encoding") or file.get("encoding") == "utf8" for file in files):
        raise bad_request("files must include at least one utf8 encoded file")
    encodings = [file.get("encoding") if file.get("encoding") in {"base64", "hex"} else "utf8" for file in files]
    names = [file.get("name") or f"file{index}.code" for index, file in enumerate(files)]
    main = encodings.index("utf8")
    inputs = tuple(
        InputFile(names[index], _decode_content(index, file["content"], encodings[index]))
        for index, file in enumerate(files)
        if index != main
    )
    return files[main]["content"], inputs


def _args(args: Any) -> tuple[str, ...]:
    """A program's arguments: strings, or numbers written as JavaScript writes them."""
    if not isinstance(args, list):
        raise bad_request("args must be an array of strings")
    written = []
    for arg in args:
        if isinstance(arg, float) and arg.is_integer() and abs(arg) < 1e21:
            arg = int(arg)
        if isinstance(arg, bool) or not isinstance(arg, str | int | float):
            raise bad_request("args must be an array of strings")
        written.append(arg if isinstance(arg, str) else str(arg))
    return tuple(written)


def to_request(body: Any, languages: list[OfferedLanguage], maxima: Limits) -> tuple[JobRequest, OfferedLanguage]:
    """The job a Piston execute request asks for, and the runtime it picked; checked in
    Piston's order, with its messages."""
    if not isinstance(body, dict):
        body = {}  # Piston reads the fields of whatever JSON it got: none are there
    language, version, files = body.get("language"), body.get("version"), body.get("files")
    if not language or not isinstance(language, str):
        raise bad_request("language is required as a string")
    if not version or not isinstance(version, str):
        raise bad_request("version is required as a string")
    if not isinstance(files, list):
        raise bad_request("files is required as an array")
    for index, file in enumerate(files):
        if not isinstance(file, dict) or not isinstance(file.get("content"), str):
            raise bad_request(f"files[{index}].content is required as a string")
    chosen = _pick(languages, language, version)
    if chosen is None:
        raise bad_request(f"{language}-{version} runtime is unknown")
    code, inputs = _files(files)
    limits = _limits(body, maxima)
    stdin = "" if body.get("stdin") is None else body["stdin"]
    if not isinstance(stdin, str):
        raise bad_request("stdin must be a string")
    args = _args([] if body.get("args") is None else body["args"])
    request = JobRequest(
        code=code,
        language=chosen.runtime.language,
        # Piston ends the input with a newline when it has none (an empty one too).
        stdin=stdin if stdin.endswith("\n") else stdin + "\n",
        args=args,
        files=inputs,
        limits=limits,
    )
    return request, chosen
